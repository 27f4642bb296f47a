#!/usr/bin/env bash
# Sessions that work on one model at once: two fits, a drop during a
# prediction, DROP EXTENSION under a backend that has the model cached, and
# a fit against a drop. Each ends in a complete result or a clean ERROR,
# never a crash, a half-written row or a stale model.
#
# The overlaps are made with locks rather than timing: a "gate" session
# holds an advisory lock that the query of a fit or a prediction waits for,
# and every step waits until pg_blocking_pids shows the wait it needs.
. "$(dirname "$0")/lib.sh"

GATE=770077	# bigint advisory key of the gate (nnpg's name locks use int4 pairs)
WAIT_S=30	# longest wait for one session step

it_setup_db
it_make_data it_data 3000

log=$PGHOST/server.log
log_from=0
[ -r "$log" ] && log_from=$(stat -c %s "$log")

# ---------- sessions kept open, fed through FIFOs ----------

declare -A S_FD S_PID

# s_open NAME: a psql session that stays open in the background.
s_open() {
	local name=$1 fd
	mkfifo "$IT_TMP/$name.in"
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 \
		<"$IT_TMP/$name.in" >"$IT_TMP/$name.out" 2>&1 &
	exec {fd}>"$IT_TMP/$name.in"
	S_FD[$name]=$fd
	S_PID[$name]=$(s_run "$name" "SELECT pg_backend_pid()" | head -n 1)
}

# s_send NAME SQL: start one statement without waiting for it; a line
# "SQLSTATE xxxxx" follows its output (as it_run_sql).
s_send() {
	local sql=${2%"${2##*[![:space:];]}"}
	printf '%s;\n\\echo SQLSTATE :SQLSTATE\n' "$sql" >&"${S_FD[$1]}"
}

# s_wait NAME: wait until the session has run all it was sent; print its
# output since the previous s_wait. Each wait writes a unique marker line,
# so this works from a command substitution too.
s_wait() {
	local out=$IT_TMP/$1.out mark at
	mark="@@sync $(date +%s%N).$RANDOM@@"
	printf '\\echo %s\n' "$mark" >&"${S_FD[$1]}"
	for _ in $(seq 1 $((WAIT_S * 10))); do
		at=$(grep -nxF "$mark" "$out" | cut -d: -f1)
		if [ -n "$at" ]; then
			awk -v at="$at" 'NR < at && /^@@sync .*@@$/ { n = 0; split("", l); next }
				NR < at { l[++n] = $0 } NR == at { for (i = 1; i <= n; i++) print l[i]; exit }' "$out"
			return 0
		fi
		sleep 0.1
	done
	echo "session $1 did not finish within ${WAIT_S}s"
	return 1
}

# s_run NAME SQL: run one statement in the session and print its output.
s_run() {
	s_send "$1" "$2"
	s_wait "$1"
}

# s_blocked NAME BY: wait until NAME's backend waits for a lock that BY's
# backend holds.
s_blocked() {
	local q="SELECT ${S_PID[$2]} = ANY (pg_catalog.pg_blocking_pids(${S_PID[$1]}))"
	for _ in $(seq 1 $((WAIT_S * 10))); do
		[ "$(it_psql -d "$IT_ADMIN_DB" -c "$q")" = t ] && return 0
		sleep 0.1
	done
	return 1
}

# ---------- checks on captured output (it_run_sql format) ----------

# out_value WANT DESC OUT: OUT succeeded and printed exactly WANT.
out_value() {
	local state got
	state=$(printf '%s\n' "$3" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	got=$(printf '%s\n' "$3" | grep -v '^SQLSTATE ')
	if [ "$state" = 00000 ] && [ "$got" = "$1" ]; then
		it_pass "$2 (got \"$got\")"
	else
		it_fail "$2: expected \"$1\" and success, got SQLSTATE ${state:-none}"
		printf '%s\n' "$3" | sed 's/^/    | /'
	fi
}

# out_error STATE DESC OUT: OUT failed with SQLSTATE STATE.
out_error() {
	local state msg
	state=$(printf '%s\n' "$3" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	msg=$(printf '%s\n' "$3" | grep -m1 -E '(ERROR|FATAL):' | sed 's/^psql:[^ ]* //')
	if [ "$state" = "$1" ]; then
		it_pass "$2 ($1: ${msg#ERROR:  })"
	else
		it_fail "$2: expected SQLSTATE $1, got ${state:-none}"
		printf '%s\n' "$3" | sed 's/^/    | /'
	fi
}

# out_complete_or_error WANT STATE DESC OUT: either the complete result
# WANT or a clean ERROR with SQLSTATE STATE.
out_complete_or_error() {
	local state
	state=$(printf '%s\n' "$4" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	if [ "$state" = 00000 ]; then
		out_value "$1" "$3: complete result" "$4"
	else
		out_error "$2" "$3: clean error" "$4"
	fi
}

# gate_close / gate_open: take and release the gate.
gate_close() {
	out_value "" "the gate is closed" "$(s_run gate "SELECT pg_advisory_lock($GATE)")"
}
gate_open() {
	out_value t "the gate is opened" "$(s_run gate "SELECT pg_advisory_unlock($GATE)")"
}

# The training query, and the same waiting for the gate before its rows.
train_q="SELECT x, label FROM it_data"
gated_q="SELECT x, label FROM it_data, (SELECT pg_catalog.pg_advisory_xact_lock_shared($GATE)) g"

# fit_sql MODEL QUERY EPOCHS BATCH LR SEED: a fit printing "epoch loss accuracy" rows.
fit_sql() {
	printf "SELECT epoch || ' ' || loss || ' ' || accuracy FROM nn_fit('%s', '%s', epochs => %s, batch_size => %s, learning_rate => %s, seed => %s, verbose => false)" \
		"$1" "$2" "$3" "$4" "$5" "$6"
}

# epochs_of OUT: the epoch numbers a fit returned, and its SQLSTATE.
epochs_of() {
	printf '%s / %s\n' "$(printf '%s\n' "$1" | grep -v '^SQLSTATE ' | cut -d' ' -f1 | paste -sd' ')" \
		"$(printf '%s\n' "$1" | tail -n 1)"
}

# rows_of OUT: the rows of a fit's output on one line.
rows_of() {
	printf '%s\n' "$1" | grep -v '^SQLSTATE ' | paste -sd',' | sed 's/,/, /g'
}

# history MODEL VERSION: the stored epochs of a version, as rows_of prints.
history() {
	it_psql -c "SELECT string_agg(epoch || ' ' || loss || ' ' || accuracy, ', ' ORDER BY epoch)
		FROM nn_history('$1', $2)"
}

# settings MODEL VERSION: the recorded settings of a version.
settings() {
	it_psql -c "SELECT concat_ws(' ', training->>'epochs', training->>'batch_size',
		training->>'learning_rate', training->>'seed', training->>'from_version')
		FROM nnpg.models WHERE name = '$1' AND version = $2"
}

# A session open from start to end: a reset of the server would end it.
s_open watch
s_open gate
s_open fa
s_open fb
it_note "backends: watch ${S_PID[watch]}, gate ${S_PID[gate]}, fa ${S_PID[fa]}, fb ${S_PID[fb]}"

# ---------- 1. two fits of one model at once ----------

it_create_model fm || it_fail "nn_create fm"
gate_close
s_send fa "$(fit_sql fm "$gated_q" 3 50 0.002 1)"
it_check "fit A holds the name lock and waits at the gate" s_blocked fa gate
s_send fb "$(fit_sql fm "$train_q" 2 64 0.001 2)"
it_check "fit B waits for the name lock fit A holds" s_blocked fb fa
gate_open
out_a=$(s_wait fa)
out_b=$(s_wait fb)
it_check_eq "fit A returns epochs 1..3" "$(epochs_of "$out_a")" "1 2 3 / SQLSTATE 00000"
it_check_eq "fit B returns epochs 1..2" "$(epochs_of "$out_b")" "1 2 / SQLSTATE 00000"
it_check_eq "both fits stored a version: 1, 2, 3" "$(it_versions fm)" "3 3"
it_check_eq "version 2's history is fit A's epochs" \
	"$(history fm 2)" "$(rows_of "$out_a")"
it_check_eq "version 3's history is fit B's epochs" \
	"$(history fm 3)" "$(rows_of "$out_b")"
it_check_eq "version 2 records fit A's settings, from version 1" \
	"$(settings fm 2)" "3 50 0.002 1 1"
it_check_eq "version 3 records fit B's settings, from version 2" \
	"$(settings fm 3)" "2 64 0.001 2 2"

# A waiting fit in REPEATABLE READ cannot see the version stored meanwhile:
# it fails when it stores, and stores nothing.
gate_close
s_send fa "$(fit_sql fm "$gated_q" 1 50 0.001 3)"
it_check "fit A holds the name lock and waits at the gate" s_blocked fa gate
s_run fb "BEGIN ISOLATION LEVEL REPEATABLE READ" >/dev/null
s_send fb "$(fit_sql fm "$train_q" 1 50 0.001 4)"
it_check "fit B in REPEATABLE READ waits for the name lock" s_blocked fb fa
gate_open
out_a=$(s_wait fa)
out_b=$(s_wait fb)
it_check_eq "fit A stores version 4" "$(epochs_of "$out_a")" "1 / SQLSTATE 00000"
it_check_eq "version 4's history is fit A's epoch" \
	"$(history fm 4)" "$(rows_of "$out_a")"
out_error 40001 "fit B in REPEATABLE READ fails when it stores" "$out_b"
s_run fb "ROLLBACK" >/dev/null
it_check_eq "fit B stored nothing" "$(it_versions fm)" "4 4"

# ---------- 2. nn_drop while another session predicts ----------

s_open pr
it_create_model pm || it_fail "nn_create pm"
it_psql -c "SELECT count(*) FROM nn_fit('pm', '$train_q', epochs => 1, seed => 5, verbose => false)" >/dev/null

# Per row: row 1500 waits for the gate, after 1499 predictions.
row_q="SELECT count(p), md5(string_agg(p::text, ',' ORDER BY id))
FROM (SELECT id, nn_predict('pm', CASE WHEN id = 1500
        AND pg_catalog.pg_advisory_xact_lock_shared($GATE) IS NULL THEN NULL ELSE x END) AS p
      FROM (SELECT id, x FROM it_data ORDER BY id) d) s"
# Batches: the query waits for the gate at row 1500.
batch_q="SELECT count(prediction), md5(string_agg(prediction::text, ',' ORDER BY id))
FROM nn_predict_batch('pm', 'SELECT id, CASE WHEN id = 1500
        AND pg_catalog.pg_advisory_xact_lock_shared($GATE) IS NULL THEN NULL ELSE x END FROM it_data')"
# Per row and batch, waiting for the gate before the first prediction.
row_first_q="SELECT count(p), md5(string_agg(p::text, ',' ORDER BY id))
FROM (SELECT id, nn_predict(CASE WHEN id = 1
        AND pg_catalog.pg_advisory_xact_lock_shared($GATE) IS NULL THEN NULL ELSE 'pm' END, x) AS p
      FROM (SELECT id, x FROM it_data ORDER BY id) d) s"
batch_first_q="SELECT count(prediction), md5(string_agg(prediction::text, ',' ORDER BY id))
FROM nn_predict_batch(CASE WHEN pg_catalog.pg_advisory_xact_lock_shared($GATE) IS NULL
        THEN NULL ELSE 'pm' END, 'SELECT id, x FROM it_data')"
ref_row=$(it_psql -F ' ' -c "$row_q")
ref_batch=$(it_psql -F ' ' -c "$batch_q")
it_note "reference predictions: per row $ref_row, batch $ref_batch"
[ "${ref_row%% *}" = 3000 ] || it_fail "reference per-row prediction: $ref_row"
[ "${ref_batch%% *}" = 3000 ] || it_fail "reference batch prediction: $ref_batch"

# drop_during DESC QUERY REF: QUERY waits at the gate while pm is dropped.
drop_during() {
	gate_close
	s_send pr "$2"
	if ! s_blocked pr gate; then
		it_fail "$1: the prediction never reached the gate"
		s_wait pr | sed 's/^/    | /'
		gate_open
		return
	fi
	it_expect_value 2 "$1: nn_drop while it waits at the gate" -- "SELECT nn_drop('pm')"
	gate_open
	out_complete_or_error "$(echo "$3" | tr ' ' '|')" 42704 "$1" "$(s_wait pr)"
	out_error 42704 "$1: the next statement in that session no longer finds pm" \
		"$(s_run pr "SELECT nn_predict('pm', x) FROM it_data WHERE id = 1")"
	# put pm back as it was, for the next case
	it_create_model pm || it_fail "nn_create pm"
	it_psql -c "SELECT count(*) FROM nn_fit('pm', '$train_q', epochs => 1, seed => 5, verbose => false)" >/dev/null
	it_check_eq "pm rebuilt predicts as before" "$(it_psql -F ' ' -c "$row_q")" "$ref_row"
}
drop_during "per-row nn_predict, drop after 1499 rows" "$row_q" "$ref_row"
drop_during "per-row nn_predict, drop before the first row" "$row_first_q" "$ref_row"
drop_during "nn_predict_batch, drop after 1499 rows read" "$batch_q" "$ref_batch"
drop_during "nn_predict_batch, drop before it starts" "$batch_first_q" "$ref_batch"

# ---------- 3. nn_fit against nn_drop of the same model ----------

s_open dr

# The fit holds the name lock; the drop waits, then removes the new version too.
it_create_model fd1 || it_fail "nn_create fd1"
gate_close
s_send fa "$(fit_sql fd1 "$gated_q" 2 50 0.001 1)"
it_check "fit of fd1 holds the name lock and waits at the gate" s_blocked fa gate
s_send dr "SELECT nn_drop('fd1')"
it_check "nn_drop of fd1 waits for the fit's name lock" s_blocked dr fa
gate_open
it_check_eq "the fit of fd1 completes" "$(epochs_of "$(s_wait fa)")" "1 2 / SQLSTATE 00000"
out_value 2 "then nn_drop removes both versions, the fit's too" "$(s_wait dr)"
it_check_eq "fd1 is gone" "$(it_versions fd1)" "0 0"

# The drop holds the name lock and commits: the waiting fit finds no model.
it_create_model fd2 || it_fail "nn_create fd2"
s_run dr "BEGIN" >/dev/null
out_value 1 "nn_drop of fd2 in an open transaction" "$(s_run dr "SELECT nn_drop('fd2')")"
s_send fa "$(fit_sql fd2 "$train_q" 2 50 0.001 1)"
it_check "fit of fd2 waits for the drop's name lock" s_blocked fa dr
s_run dr "COMMIT" >/dev/null
out_error 42704 "the fit of fd2 then fails cleanly" "$(s_wait fa)"
it_check_eq "fd2 is gone, no version stored" "$(it_versions fd2)" "0 0"

# The drop rolls back: the waiting fit trains and stores version 2.
it_create_model fd3 || it_fail "nn_create fd3"
s_run dr "BEGIN" >/dev/null
s_run dr "SELECT nn_drop('fd3')" >/dev/null
s_send fa "$(fit_sql fd3 "$train_q" 2 50 0.001 1)"
it_check "fit of fd3 waits for the drop's name lock" s_blocked fa dr
s_run dr "ROLLBACK" >/dev/null
it_check_eq "the fit of fd3 completes" "$(epochs_of "$(s_wait fa)")" "1 2 / SQLSTATE 00000"
it_check_eq "fd3 has versions 1 and 2" "$(it_versions fd3)" "2 2"

# A DELETE straight on the table takes no name lock: it lands in the middle
# of the fit, which stores its version as the first of the name again.
it_create_model fd4 || it_fail "nn_create fd4"
gate_close
s_send fa "$(fit_sql fd4 "$gated_q" 2 50 0.001 1)"
it_check "fit of fd4 waits at the gate" s_blocked fa gate
it_expect_value 1 "DELETE of fd4's rows during its fit" -- \
	"WITH d AS (DELETE FROM nnpg.models WHERE name = 'fd4' RETURNING 1) SELECT count(*) FROM d"
gate_open
out_a=$(s_wait fa)
case "$(printf '%s\n' "$out_a" | tail -n 1)" in
"SQLSTATE 00000")
	it_check_eq "the fit of fd4 stores one version" "$(it_versions fd4)" "1 1"
	it_expect_value 1 "and it predicts" -- \
		"SELECT count(*) FROM it_data WHERE id = 1 AND nn_predict('fd4', x) IS NOT NULL"
	;;
*)
	out_error 42704 "the fit of fd4 fails cleanly" "$out_a"
	it_check_eq "fd4 has no version" "$(it_versions fd4)" "0 0"
	;;
esac

it_expect_value 0 "no stored version is incomplete (weights, params, history of every epoch run)" -- \
	"SELECT count(*) FROM nnpg.models
	 WHERE weights IS NULL OR params IS NULL
	    OR (training ? 'epochs_run' AND
	        coalesce(jsonb_array_length(history), -1) <> (training->>'epochs_run')::int)"

# ---------- 4. DROP EXTENSION under a backend with the model cached ----------

s_open old
one_q="SELECT nn_predict('em', x)::text FROM it_data WHERE id = 1"
# em_new SEED: em created afresh with SEED; print its prediction from a new backend.
em_new() {
	it_psql -c "SELECT nn_create('em', '$IT_LAYERS', input_shape => '{50}', seed => $1, replace => true)" >/dev/null &&
		it_psql -c "$one_q"
}

# must_differ OLD NEW: a model made anew must predict otherwise, or the
# checks that follow could not tell a stale model from the new one.
must_differ() {
	if [ -z "$2" ] || [ "$1" = "$2" ]; then
		it_fail "the new model should predict otherwise: \"$1\" / \"$2\""
	fi
}

# (a) The old backend is idle.
p1=$(em_new 11)
it_psql -c "CREATE VIEW it_model_names AS SELECT name FROM nn_models" >/dev/null
s_run old "PREPARE pp AS $one_q" >/dev/null
out_value "$p1" "the old backend predicts with em (cached)" "$(s_run old "$one_q")"
it_expect_error 2BP01 "DROP EXTENSION without CASCADE: a view depends on it" -- "DROP EXTENSION nnpg"
it_expect_value "" "DROP EXTENSION nnpg CASCADE while the old backend is idle" -- \
	"SET client_min_messages = warning; DROP EXTENSION nnpg CASCADE"
out_error 42883 "the old backend's next prediction: the function is gone" "$(s_run old "$one_q")"
out_error 42883 "its prepared statement fails the same way" "$(s_run old "EXECUTE pp")"
it_expect_value "" "CREATE EXTENSION nnpg again" -- "CREATE EXTENSION nnpg"
p2=$(em_new 12)
must_differ "$p1" "$p2"
out_value "$p2" "the old backend predicts with the new em" "$(s_run old "$one_q")"
out_value "$p2" "so does its prepared statement" "$(s_run old "EXECUTE pp")"

# (b) The old backend is idle in a transaction that read the model table:
# DROP EXTENSION waits for it, so the model cannot go from under it.
s_run old "BEGIN" >/dev/null
out_value "$p2" "the old backend predicts in an open transaction" "$(s_run old "$one_q")"
it_expect_error 55P03 "DROP EXTENSION waits for that transaction (lock_timeout)" -- \
	"SET lock_timeout = '300ms'; DROP EXTENSION nnpg"
s_send dr "DROP EXTENSION nnpg"
it_check "a DROP EXTENSION waits for the old backend's transaction" s_blocked dr old
out_value "$p2" "meanwhile the old backend still predicts with em" "$(s_run old "$one_q")"
s_run old "COMMIT" >/dev/null
out_value "" "DROP EXTENSION goes through when it commits" "$(s_wait dr)"
out_error 42883 "the old backend's next prediction: the function is gone" "$(s_run old "$one_q")"
it_expect_value "" "CREATE EXTENSION nnpg again" -- "CREATE EXTENSION nnpg"
p3=$(em_new 13)
must_differ "$p2" "$p3"
out_value "$p3" "the old backend predicts with the new em" "$(s_run old "$one_q")"

# (c) The old backend's REPEATABLE READ snapshot predates the reinstall: the
# new table's rows are not in it.
s_run old "BEGIN ISOLATION LEVEL REPEATABLE READ" >/dev/null
s_run old "SELECT 1" >/dev/null
it_expect_value "" "DROP and CREATE EXTENSION while it holds a snapshot" -- \
	"DROP EXTENSION nnpg; CREATE EXTENSION nnpg"
p4=$(em_new 14)
must_differ "$p3" "$p4"
out_error 42704 "the old snapshot does not see the new em" "$(s_run old "$one_q")"
s_run old "ROLLBACK" >/dev/null
out_value "$p4" "after it, the old backend predicts with the new em" "$(s_run old "$one_q")"

# (d) All in one transaction of the old backend: models of the same name,
# version and transaction, each the first row of a new table.
create_sd() {
	printf "SELECT nn_create('sd', '%s', input_shape => '{50}', seed => %s)" "$IT_LAYERS" "$1"
}
sd_q="SELECT nn_predict('sd', x)::text FROM it_data WHERE id = 1"
s_run old "BEGIN" >/dev/null
s_run old "DROP EXTENSION nnpg" >/dev/null
s_run old "CREATE EXTENSION nnpg" >/dev/null
s_run old "$(create_sd 21)" >/dev/null
q1=$(s_run old "$sd_q" | head -n 1)
s_run old "DROP EXTENSION nnpg" >/dev/null
s_run old "CREATE EXTENSION nnpg" >/dev/null
s_run old "$(create_sd 22)" >/dev/null
q2_same=$(s_run old "$sd_q")
out_value "" "the transaction commits" "$(s_run old "COMMIT")"
q2=$(it_psql -c "$sd_q")
must_differ "$q1" "$q2"
it_note "sd of seed 21 predicted $q1 in that transaction"
out_value "$q2" "after DROP and CREATE EXTENSION in one transaction, no stale model" "$q2_same"

# ---------- the server ----------

out_value "${S_PID[watch]}" "a session open throughout was never reset" \
	"$(s_run watch "SELECT pg_backend_pid()")"
if [ -r "$log" ]; then
	crash=$(tail -c +$((log_from + 1)) "$log" |
		grep -E 'server process .*(terminated|exited)|all server processes terminated|PANIC|TRAP:')
	if [ -z "$crash" ]; then
		it_pass "server.log: no backend crashed during the test"
	else
		it_fail "server.log reports a crash"
		printf '%s\n' "$crash" | sed 's/^/    log: /'
	fi
else
	it_note "no readable $log: skipping the server log check"
fi

it_finish

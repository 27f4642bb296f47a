#!/usr/bin/env bash
# nn_progress: a running fit is visible from another session, updated while
# it runs, to its own role and to superusers and pg_read_all_stats only;
# nothing is left behind when a fit ends, fails, is cancelled or its
# backend is terminated.  Without nnpg in shared_preload_libraries (a
# second throwaway cluster) the view is an ERROR with a hint and nn_fit
# still works.
. "$(dirname "$0")/lib.sh"

it_setup_db
it_make_data it_data 20000
it_psql -c "GRANT SELECT ON it_data TO PUBLIC" >/dev/null
for r in nnpg_pr_alice nnpg_pr_bob nnpg_pr_stats; do
	it_psql -d "$IT_ADMIN_DB" -c "DROP ROLE IF EXISTS $r" -c "CREATE ROLE $r LOGIN" >/dev/null
	IT_CLEANUP+=("$PGBIN/psql -X -q -d $IT_ADMIN_DB -c 'DROP ROLE IF EXISTS $r'")
done
it_psql -c "GRANT pg_read_all_stats TO nnpg_pr_stats" >/dev/null
it_create_model pr_m nnpg_pr_alice || { it_fail "nn_create as alice"; it_finish; }

# start_fit APP SQL [ROLE]: run SQL in the background as application APP;
# its output and last SQLSTATE go to $IT_TMP/APP.out.
start_fit() {
	PGAPPNAME=$1 "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 ${3:+-U "$3"} -f - \
		>"$IT_TMP/$1.out" 2>&1 <<EOF &
$2;
\echo FIT :SQLSTATE
EOF
}
# rows_as ROLE: the nn_progress rows that ROLE sees.
rows_as() {
	it_psql -U "$1" -c "SELECT count(*) FROM nn_progress"
}

app=nnpg_pr_fit_$$
start_fit "$app" "$(it_long_fit pr_m)" nnpg_pr_alice
bg=$!
pid=$(it_wait_active "$app" 2) || { it_fail "the fit did not start"; it_finish; }
it_expect_value "$pid|nnpg_pr_alice|pr_m|training|1000|20000" \
	"another session sees the fit: its pid, role, model, phase, epochs and rows per epoch" -- \
	"SELECT pid, usename, model, phase, epochs, rows_total FROM nn_progress"
it_expect_value "t|t|t|t|t" "rows done, loss, rate, elapsed time and eta are there" -- \
	"SELECT rows_done > 0, loss > 0, rows_per_second > 0, elapsed > 0, eta > 0 FROM nn_progress"
a=$(it_psql -c "SELECT epoch * 100000 + rows_done FROM nn_progress")
sleep 1.2
b=$(it_psql -c "SELECT epoch * 100000 + rows_done FROM nn_progress")
if [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ]; then
	it_pass "it moves on within a second (epoch and rows $a, then $b)"
else
	it_fail "it did not move on within a second ($a, then $b)"
fi
it_check_eq "alice sees her fit" "$(rows_as nnpg_pr_alice)" 1
it_check_eq "bob does not" "$(rows_as nnpg_pr_bob)" 0
it_check_eq "a pg_read_all_stats member does" "$(rows_as nnpg_pr_stats)" 1
it_expect_value t "pg_cancel_backend stops it" -- "SELECT pg_cancel_backend($pid)"
wait "$bg"
it_check_eq "the fit ended with 57014" "$(sed -n 's/^FIT //p' "$IT_TMP/$app.out")" 57014
it_check_eq "and left nothing in nn_progress" "$(rows_as "$PGUSER")" 0

app=nnpg_pr_term_$$
start_fit "$app" "$(it_long_fit pr_m)"
bg=$!
pid=$(it_wait_active "$app" 1) || { it_fail "the second fit did not start"; it_finish; }
it_check_eq "a second fit is shown" "$(rows_as "$PGUSER")" 1
it_expect_value t "pg_terminate_backend ends its backend" -- "SELECT pg_terminate_backend($pid)"
wait "$bg"
for _ in $(seq 1 50); do
	[ "$(rows_as "$PGUSER")" = 0 ] && break
	sleep 0.1
done
it_check_eq "and left nothing in nn_progress" "$(rows_as "$PGUSER")" 0

# A fit that reads slowly shows the reading phase, then fails on a NaN.
app=nnpg_pr_read_$$
start_fit "$app" "SELECT count(*) FROM nn_fit('pr_m', 'SELECT x, label FROM it_data
	UNION ALL SELECT ARRAY[''NaN''::real], 0 FROM pg_sleep(3)', epochs => 2, verbose => false)"
bg=$!
pid=$(it_wait_active "$app" 1) || { it_fail "the third fit did not start"; it_finish; }
it_expect_value "reading|20000|" "a fit still reading its rows says so, with the rows read" -- \
	"SELECT phase, rows_done, rows_total FROM nn_progress"
wait "$bg"
it_check_eq "that fit failed (22000 class)" "$(sed -n 's/^FIT //p' "$IT_TMP/$app.out" | cut -c1-2)" 22
it_check_eq "and left nothing in nn_progress" "$(rows_as "$PGUSER")" 0
it_expect_value 1 "a fit that ends normally" -- \
	"SELECT count(*) FROM nn_fit('pr_m', 'SELECT x, label FROM it_data LIMIT 100', epochs => 1,
	                             verbose => false)"
it_check_eq "leaves nothing either" "$(rows_as "$PGUSER")" 0

# A verbose fit's epoch NOTICE has the validation figures and an ETA (not
# after the last epoch).
out=$(it_psql -c "SET client_min_messages = notice" \
	-c "SELECT count(*) FROM nn_fit('pr_m', 'SELECT x, label FROM it_data LIMIT 400',
	epochs => 2, validation_split => 0.25, verbose => true)" 2>&1)
if grep -Eq '^NOTICE:  epoch 1/2: loss=[0-9.]+ accuracy=[0-9.]+ val_loss=[0-9.]+ val_accuracy=[0-9.]+ \([0-9.]+ s, eta [0-9]+ s\)$' <<<"$out" &&
	grep -Eq '^NOTICE:  epoch 2/2: .* \([0-9.]+ s\)$' <<<"$out"; then
	it_pass "verbose NOTICEs give the validation figures and an ETA"
else
	it_fail "verbose NOTICEs"
	printf '%s\n' "$out" | sed 's/^/    | /'
fi

# ---------- without shared_preload_libraries ----------
np_port=$((${PGPORT:-5432} + 3))
np=(bash "$(dirname "$0")/../../scripts/cluster.sh" -p "$np_port")
if NNPG_PRELOAD=0 "${np[@]}" start >"$IT_TMP/np.log" 2>&1; then
	IT_CLEANUP+=("${np[*]} stop")
	np_host=$("${np[@]}" env | sed -n 's/^export PGHOST=//p')
	it_expect_error 55000 "without the preload nn_progress is an error with a hint" \
		-h "$np_host" -p "$np_port" -d postgres -- \
		"CREATE EXTENSION nnpg; SELECT * FROM nn_progress"
	it_expect_value $'1\n1' "and nn_create and nn_fit work there" \
		-h "$np_host" -p "$np_port" -d postgres -- \
		"SELECT nn_create('m', '[{\"type\": \"dense\", \"units\": 1}]', '{1}', 1);
		 SELECT count(*) FROM nn_fit('m', 'SELECT 1.0, 2.0', epochs => 1, verbose => false)"
else
	it_fail "a cluster without the preload did not start"
	sed 's/^/    | /' "$IT_TMP/np.log"
fi
it_finish

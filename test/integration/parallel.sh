#!/usr/bin/env bash
# Data-parallel nn_fit (options workers) seen from outside: its parallel
# workers in pg_stat_activity while it trains; the verbose NOTICE naming
# rounds and replicas; a cancel that stops the fit and its workers and
# stores nothing; a parallel worker terminated by an administrator, whose
# error reaches the caller and stores nothing.
. "$(dirname "$0")/lib.sh"

it_setup_db
it_make_data it_data 20000
it_create_model it_m || { it_fail "nn_create"; it_finish; }

fit_sql="SELECT count(*) FROM nn_fit('it_m', 'SELECT x, label FROM it_data',
	epochs => 1000, batch_size => 32, options => '{\"workers\": 2, \"sync_rows\": 2048}',
	verbose => false)"

# start_fit TAG: a long parallel fit in the background (its output in
# $IT_TMP/TAG.out, the job in $bg); $pid: its backend once it has run 2 s.
start_fit() {
	printf '%s;\n\\echo FIT :SQLSTATE\nSELECT %s;\n' "$fit_sql" "'USABLE ' || 41 + 1" |
		PGAPPNAME=nnpg_it_par_$1_$$ "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 -f - \
			>"$IT_TMP/$1.out" 2>&1 &
	bg=$!
	pid=$(it_wait_active "nnpg_it_par_$1_$$" 2)
}

# workers_of PID: the parallel workers of that leader running nn_train.
workers_of() {
	it_psql -d "$IT_ADMIN_DB" -c "SELECT count(*) FROM pg_stat_activity
		WHERE leader_pid = $1 AND backend_type = 'parallel worker'
		  AND query LIKE '%nnpg.nn_train%'"
}

# wait_workers PID N: wait (10 s at most) until the leader has N workers.
wait_workers() {
	for _ in $(seq 1 200); do
		[ "$(workers_of "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# 1. Two parallel workers train while the leader waits for them.
it_run_sql -- "SET client_min_messages = notice;
SELECT count(*) FROM nn_fit('it_m', 'SELECT x, label FROM it_data', epochs => 1,
	options => '{\"workers\": 2, \"sync_rows\": 5000}', verbose => true)" >"$IT_TMP/verbose.out"
it_check "the verbose NOTICE names 4 rounds and 2 replicas" \
	grep -q 'epoch 1/1: .* \[4 rounds, 2 replicas\]' "$IT_TMP/verbose.out"
it_check_eq "that fit stored version 2" "$(it_versions it_m)" "2 2"

start_fit cancel || { it_fail "the fit did not start"; cat "$IT_TMP/cancel.out"; it_finish; }
it_check "pg_stat_activity shows its 2 parallel workers running nn_train" wait_workers "$pid" 2
it_check_eq "the leader is the client backend" \
	"$(it_psql -d "$IT_ADMIN_DB" -c "SELECT backend_type FROM pg_stat_activity WHERE pid = $pid")" \
	"client backend"

# 2. A cancel stops the leader and its workers; nothing is stored.
it_expect_value t "pg_cancel_backend($pid)" -- "SELECT pg_cancel_backend($pid)"
wait "$bg"
sed 's/^/    | /' "$IT_TMP/cancel.out"
it_check_eq "the fit ended with 57014" "$(sed -n 's/^FIT //p' "$IT_TMP/cancel.out")" 57014
it_check_eq "its session still works" "$(sed -n 's/^USABLE //p' "$IT_TMP/cancel.out")" 42
it_check "no parallel worker of it is left" wait_workers "$pid" 0
it_check_eq "no new version" "$(it_versions it_m)" "2 2"

# 3. A parallel worker terminated mid-round: the fit fails, nothing stored.
start_fit term || { it_fail "the second fit did not start"; it_finish; }
# between rounds a leader has no workers: try until one is terminated
done_=f
for _ in $(seq 1 200); do
	done_=$(it_psql -d "$IT_ADMIN_DB" -c "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
		FROM pg_stat_activity WHERE leader_pid = $pid AND backend_type = 'parallel worker'")
	[ "$done_" = t ] && break
	sleep 0.05
done
it_check_eq "pg_terminate_backend of one of its parallel workers" "$done_" t
wait "$bg"
sed 's/^/    | /' "$IT_TMP/term.out"
it_check_eq "the fit ended with 57P01" "$(sed -n 's/^FIT //p' "$IT_TMP/term.out")" 57P01
it_check "the error names the parallel worker" grep -q "parallel worker" "$IT_TMP/term.out"
it_check_eq "that session still works" "$(sed -n 's/^USABLE //p' "$IT_TMP/term.out")" 42
it_check "no parallel worker of it is left" wait_workers "$pid" 0
it_check_eq "still no new version" "$(it_versions it_m)" "2 2"

it_finish

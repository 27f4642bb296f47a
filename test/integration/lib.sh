# shellcheck shell=bash
# Helpers for the integration tests in this folder: sourced, never run.
#
# Each test runs against a running cluster named by the PG* variables (as
# `eval "$(scripts/cluster.sh env)"` sets them; PGUSER must be a superuser),
# in a database of its own that it creates with the extension and drops at
# exit. It prints one "ok -" or "not ok -" line per check and exits non-zero
# when any check failed. Clients (psql) run as the invoking OS user.

set -uo pipefail

: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${PGHOST:?set the PG* variables first: eval \"\$(scripts/cluster.sh env)\"}"
export PGHOST PGPORT PGUSER

IT_NAME=$(basename "$0" .sh)
IT_DB=nnpg_it_${IT_NAME//[^a-zA-Z0-9]/_}
IT_TMP=$(mktemp -d "/tmp/nnpg-it-$IT_NAME.XXXXXX")
IT_CHECKS=0
IT_FAILED=0
IT_CLEANUP=()	# commands run at exit, after the database is dropped
IT_ADMIN_DB=${PGDATABASE:-postgres}	# where CREATE/DROP DATABASE run

# A small dense classifier over 50 features, for data from it_make_data.
IT_LAYERS='[{"type": "dense", "units": 128, "activation": "relu"},
 {"type": "dense", "units": 128, "activation": "relu"},
 {"type": "dense", "units": 2, "activation": "softmax"}]'

# it_psql ARGS...: psql that stops at the first error, unaligned output.
it_psql() {
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# it_note TEXT: an informational line.
it_note() {
	printf '# %s\n' "$*"
}

# it_pass DESC / it_fail DESC: record one check.
it_pass() {
	IT_CHECKS=$((IT_CHECKS + 1))
	printf 'ok - %s\n' "$*"
}
it_fail() {
	IT_CHECKS=$((IT_CHECKS + 1))
	IT_FAILED=$((IT_FAILED + 1))
	printf 'not ok - %s\n' "$*"
}

# it_check_eq DESC ACTUAL EXPECTED: pass when the two strings are equal.
it_check_eq() {
	if [ "$2" = "$3" ]; then
		it_pass "$1 (got \"$2\")"
	else
		it_fail "$1: expected \"$3\", got \"$2\""
	fi
}

# it_check DESC COMMAND...: pass when COMMAND succeeds.
it_check() {
	local desc=$1
	shift
	if "$@"; then
		it_pass "$desc"
	else
		it_fail "$desc"
	fi
}

# it_run_sql [PSQL OPTIONS...] -- SQL: run SQL in one session without
# stopping at errors; print its output (stdout and stderr together), then a
# last line "SQLSTATE xxxxx" with the state of its last statement.
it_run_sql() {
	local opts=()
	while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	shift
	# one terminating semicolon, so the statement runs before the \echo
	local sql=${1%"${1##*[![:space:];]}"}
	printf '%s;\n\\echo SQLSTATE :SQLSTATE\n' "$sql" |
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 "${opts[@]}" -f - 2>&1
}

# it_expect_error STATE DESC [PSQL OPTIONS...] -- SQL: SQL must fail with
# SQLSTATE STATE.
it_expect_error() {
	local want=$1 desc=$2 out got msg
	shift 2
	out=$(it_run_sql "$@")
	got=$(printf '%s\n' "$out" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	msg=$(printf '%s\n' "$out" | grep -m1 -E '(ERROR|FATAL):' | sed 's/^psql:[^ ]* //')
	if [ "$got" = "$want" ]; then
		it_pass "$desc ($want: ${msg#ERROR:  })"
	else
		it_fail "$desc: expected SQLSTATE $want, got ${got:-none}"
		printf '%s\n' "$out" | sed 's/^/    | /'
	fi
}

# it_expect_value EXPECTED DESC [PSQL OPTIONS...] -- SQL: SQL must succeed
# and print exactly EXPECTED.
it_expect_value() {
	local want=$1 desc=$2 out got state
	shift 2
	out=$(it_run_sql "$@")
	state=$(printf '%s\n' "$out" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	got=$(printf '%s\n' "$out" | grep -v '^SQLSTATE ')
	if [ "$state" = 00000 ] && [ "$got" = "$want" ]; then
		it_pass "$desc (got \"$got\")"
	else
		it_fail "$desc: expected \"$want\" and success, got SQLSTATE ${state:-none}"
		printf '%s\n' "$out" | sed 's/^/    | /'
	fi
}

# it_cleanup: drop the test database (ending its sessions) and run the
# registered cleanups; kill background jobs this test left.
it_cleanup() {
	local pids
	pids=$(jobs -p)
	# shellcheck disable=SC2086 # one pid per word
	[ -z "$pids" ] || kill $pids 2>/dev/null
	"$PGBIN/psql" -X -q -d "$IT_ADMIN_DB" \
		-c "DROP DATABASE IF EXISTS $IT_DB WITH (FORCE)" >/dev/null 2>&1
	local c
	for c in "${IT_CLEANUP[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	rm -rf "$IT_TMP"
}

# it_setup_db: a fresh database with the extension, made the default for
# every psql that follows.
it_setup_db() {
	trap it_cleanup EXIT
	trap 'exit 130' INT TERM
	it_psql -d "$IT_ADMIN_DB" -c "DROP DATABASE IF EXISTS $IT_DB WITH (FORCE)" \
		-c "CREATE DATABASE $IT_DB" ||
		{ echo "could not create database $IT_DB"; exit 1; }
	export PGDATABASE=$IT_DB
	it_psql -c "CREATE EXTENSION nnpg" ||
		{ echo "CREATE EXTENSION nnpg failed"; exit 1; }
	it_note "$IT_NAME: database $IT_DB on $PGHOST port ${PGPORT:-5432}"
}

# it_make_data TABLE ROWS: ROWS rows of (id int, x real[50], label int) from
# a fixed seed; label = x[1] + x[2] > x[3] + x[4].
it_make_data() {
	it_psql -c "SELECT setseed(0.42)" -c "
CREATE TABLE $1 AS
SELECT id, x, (x[1] + x[2] > x[3] + x[4])::int AS label
FROM (SELECT i AS id,
             ARRAY(SELECT random()::real FROM generate_series(1, 50)
                   WHERE i IS NOT NULL) AS x  -- correlated: new per row
      FROM generate_series(1, $2) AS i) AS s" >/dev/null ||
		{ echo "could not create table $1"; exit 1; }
}

# it_create_model NAME [ROLE]: version 1 of the small dense classifier.
it_create_model() {
	it_psql ${2:+-U "$2"} -c "SELECT nn_create('$1', '$IT_LAYERS',
		input_shape => '{50}', seed => 7)" >/dev/null
}

# it_versions NAME: "COUNT MAX" of the model's versions the superuser sees.
it_versions() {
	it_psql -F ' ' -c "SELECT count(*), coalesce(max(version), 0)
		FROM nnpg.models WHERE name = '$1'"
}

# it_long_fit NAME: the SQL of a fit that runs for minutes unless stopped.
it_long_fit() {
	printf "SELECT count(*) FROM nn_fit('%s', 'SELECT x, label FROM it_data', epochs => 1000, batch_size => 32, verbose => false)" "$1"
}

# it_wait_active APPNAME SECONDS: wait until a session with that
# application_name has run its current statement for SECONDS; print its pid
# (the client backend's: its parallel workers show the same name).
it_wait_active() {
	local pid
	for _ in $(seq 1 600); do
		pid=$(it_psql -d "$IT_ADMIN_DB" -c "SELECT pid FROM pg_stat_activity
			WHERE application_name = '$1' AND state = 'active'
			  AND backend_type = 'client backend'
			  AND now() - query_start >= interval '$2 seconds'")
		if [ -n "$pid" ]; then
			echo "$pid"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# it_now: seconds since the epoch, with fractions.
it_now() {
	date +%s.%N
}

# it_since START: seconds from START (an it_now value) to now, 2 decimals.
it_since() {
	awk -v a="$1" -v b="$(it_now)" 'BEGIN { printf "%.2f\n", b - a }'
}

# it_finish: the summary line and the exit code.
it_finish() {
	echo "$IT_NAME: $IT_CHECKS checks, $IT_FAILED failed"
	[ "$IT_FAILED" = 0 ]
	exit
}

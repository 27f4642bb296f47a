#!/usr/bin/env bash
# A fit stopped by statement_timeout: SQLSTATE 57014, no new model version,
# the session still works, and eight cancelled fits in one session do not
# make the backend's memory keep growing.
. "$(dirname "$0")/lib.sh"

ROUNDS=8
TIMEOUT=${NNPG_IT_TIMEOUT:-3s}
# Private memory (RssAnon) may grow by at most this much from the fourth
# round to the last: the first fits warm up thread pools and glibc's
# malloc, which raises its mmap threshold as big blocks are freed and then
# keeps such blocks in its heap (a one-time step of a few MB was seen at
# round 4 of 5).  The training data alone (20000 x 50 floats) is 4 MB, so a
# leak of it per fit would show as 16 MB.
BASE_ROUND=4
LEAK_KB=${NNPG_IT_LEAK_KB:-4096}
# Memory contexts (pg_backend_memory_contexts) count every palloc'd byte,
# the core's included, whatever malloc does: from the second round on they
# may grow by at most this much (catalog and plan caches settle).
CTX_LEAK_BYTES=${NNPG_IT_CTX_LEAK_BYTES:-262144}

it_setup_db
it_make_data it_data 20000
it_create_model it_m || { it_fail "nn_create"; it_finish; }
it_check_eq "versions before the cancelled fits" "$(it_versions it_m)" "1 1"

# One session: per round, a fit cut off by the timeout, a query proving the
# session works, the model's versions and the backend's memory from /proc.
script=$IT_TMP/session.sql
{
	echo "SELECT pg_backend_pid() AS pid \\gset"
	echo "\\setenv NNPG_IT_PID :pid"
	echo "\\echo PID :pid"
	for r in $(seq 1 "$ROUNDS"); do
		echo "SET statement_timeout = '$TIMEOUT';"
		echo "$(it_long_fit it_m);"
		echo "\\echo FIT $r :SQLSTATE"
		echo "RESET statement_timeout;"
		echo "SELECT 'USABLE $r ' || 41 + 1;"
		echo "SELECT 'VERSIONS $r ' || count(*) || ' ' || max(version) FROM nnpg.models WHERE name = 'it_m';"
		echo "SELECT 'CTX $r ' || sum(total_bytes) FROM pg_catalog.pg_backend_memory_contexts;"
		echo "\\! awk -v r=$r 'BEGIN {printf \"MEM %s\", r} /^(VmRSS|VmHWM|RssAnon):/ {printf \" %s %s\", \$1, \$2} END {print \"\"}' /proc/\$NNPG_IT_PID/status"
	done
} >"$script"

start=$(it_now)
out=$("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 -f "$script" 2>&1)
elapsed=$(it_since "$start")
printf '%s\n' "$out" | sed 's/^/    | /'
it_note "$ROUNDS rounds took ${elapsed}s (timeout $TIMEOUT each)"

for r in $(seq 1 "$ROUNDS"); do
	it_check_eq "round $r: fit ends with 57014" \
		"$(printf '%s\n' "$out" | sed -n "s/^FIT $r //p")" 57014
	it_check_eq "round $r: session still usable" \
		"$(printf '%s\n' "$out" | sed -n "s/^USABLE $r //p")" 42
	it_check_eq "round $r: no new version" \
		"$(printf '%s\n' "$out" | sed -n "s/^VERSIONS $r //p")" "1 1"
done

# Memory: RssAnon of round BASE_ROUND against the last round; VmRSS and
# VmHWM (which include shared buffers touched) are shown for the record.
mem() {	# mem ROUND FIELD
	printf '%s\n' "$out" | awk -v r="$1" -v f="$2:" '$1 == "MEM" && $2 == r {
		for (i = 3; i < NF; i += 2) if ($i == f) print $(i + 1) }'
}
first=$(mem "$BASE_ROUND" RssAnon)
last=$(mem "$ROUNDS" RssAnon)
if [ -z "$first" ] || [ -z "$last" ]; then
	it_fail "backend memory could not be read from /proc"
else
	for r in $(seq 1 "$ROUNDS"); do
		it_note "round $r: VmRSS $(mem "$r" VmRSS) kB, VmHWM $(mem "$r" VmHWM) kB, RssAnon $(mem "$r" RssAnon) kB"
	done
	growth=$((last - first))
	if [ "$growth" -le "$LEAK_KB" ]; then
		it_pass "backend RssAnon grew ${growth} kB from round $BASE_ROUND to $ROUNDS (limit $LEAK_KB kB)"
	else
		it_fail "backend RssAnon grew ${growth} kB from round $BASE_ROUND to $ROUNDS (limit $LEAK_KB kB): a leak"
	fi
fi

ctx() {	# ctx ROUND
	printf '%s\n' "$out" | sed -n "s/^CTX $1 //p"
}
cfirst=$(ctx 2)
clast=$(ctx "$ROUNDS")
if [ -z "$cfirst" ] || [ -z "$clast" ]; then
	it_fail "memory contexts could not be read"
else
	for r in $(seq 1 "$ROUNDS"); do
		it_note "round $r: memory contexts $(ctx "$r") bytes"
	done
	cgrowth=$((clast - cfirst))
	if [ "$cgrowth" -le "$CTX_LEAK_BYTES" ]; then
		it_pass "memory contexts grew ${cgrowth} bytes from round 2 to $ROUNDS (limit $CTX_LEAK_BYTES)"
	else
		it_fail "memory contexts grew ${cgrowth} bytes from round 2 to $ROUNDS (limit $CTX_LEAK_BYTES): a leak"
	fi
fi

# The control: without the timeout the same model does train, so the
# checks above could have seen a new version.
it_expect_value 1 "a short fit after the cancels succeeds" -- \
	"SELECT count(*) FROM nn_fit('it_m', 'SELECT x, label FROM it_data', epochs => 1, batch_size => 256, verbose => false)"
it_check_eq "that fit stored version 2" "$(it_versions it_m)" "2 2"

it_finish

#!/usr/bin/env bash
# pg_cancel_backend() from another session stops a running fit within a
# second or two, with SQLSTATE 57014 and no new model version.
. "$(dirname "$0")/lib.sh"

MAX_S=${NNPG_IT_CANCEL_MAX_S:-2.5}	# from the cancel to the fit's end

it_setup_db
it_make_data it_data 20000
it_create_model it_m || { it_fail "nn_create"; it_finish; }
it_check_eq "versions before the fit" "$(it_versions it_m)" "1 1"

app=nnpg_it_cancel_$$
PGAPPNAME=$app "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 -f - \
	>"$IT_TMP/fit.out" 2>&1 <<EOF &
$(it_long_fit it_m);
\echo FIT :SQLSTATE
SELECT 'USABLE ' || 41 + 1;
EOF
bg=$!

if ! pid=$(it_wait_active "$app" 2); then
	it_fail "the fit did not start"
	cat "$IT_TMP/fit.out"
	it_finish
fi
it_note "fit running in backend $pid for 2 s; cancelling it"
start=$(it_now)
it_expect_value t "pg_cancel_backend($pid) from a second session" -- \
	"SELECT pg_cancel_backend($pid)"

# Wait until that backend is no longer running the fit (at most 60 s).
for _ in $(seq 1 1200); do
	busy=$(it_psql -c "SELECT count(*) FROM pg_stat_activity
		WHERE pid = $pid AND state = 'active' AND query LIKE '%nn_fit%'")
	[ "$busy" = 0 ] && break
	sleep 0.05
done
elapsed=$(it_since "$start")
wait "$bg"
sed 's/^/    | /' "$IT_TMP/fit.out"

if awk -v e="$elapsed" -v m="$MAX_S" 'BEGIN { exit !(e <= m) }'; then
	it_pass "the fit stopped ${elapsed}s after the cancel (limit ${MAX_S}s)"
else
	it_fail "the fit stopped ${elapsed}s after the cancel (limit ${MAX_S}s)"
fi
it_check_eq "the fit ended with 57014" "$(sed -n 's/^FIT //p' "$IT_TMP/fit.out")" 57014
it_check_eq "its session still works" "$(sed -n 's/^USABLE //p' "$IT_TMP/fit.out")" 42
it_check_eq "no new version" "$(it_versions it_m)" "1 1"

it_finish

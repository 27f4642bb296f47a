#!/usr/bin/env bash
# kill -9 of a backend in the middle of a fit: the server recovers by itself
# and the stored models are intact and usable.
. "$(dirname "$0")/lib.sh"

RECOVERY_S=${NNPG_IT_RECOVERY_S:-120}

it_setup_db
it_make_data it_data 20000
it_create_model it_m || { it_fail "nn_create"; it_finish; }
it_expect_value 1 "a short fit stores version 2" -- \
	"SELECT count(*) FROM nn_fit('it_m', 'SELECT x, label FROM it_data', epochs => 1, batch_size => 256, verbose => false)"
it_check_eq "versions before the crash" "$(it_versions it_m)" "2 2"

predict="SELECT nn_predict('it_m', x)::text, nn_classify('it_m', x) FROM it_data WHERE id = 1"
before=$(it_psql -F ' ' -c "$predict")
[ -n "$before" ] || it_fail "nn_predict before the crash returned nothing"
it_note "prediction before the crash: $before"

# A canary session: the postmaster ends it when it resets after the crash,
# so its end tells the reset has begun (a connection made before that could
# succeed and then be cut).
"$PGBIN/psql" -X -q -At -c "SELECT pg_sleep(3600)" >"$IT_TMP/canary.out" 2>&1 &
canary=$!

app=nnpg_it_kill9_$$
PGAPPNAME=$app "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=0 \
	-c "$(it_long_fit it_m)" >"$IT_TMP/fit.out" 2>&1 &
bg=$!
if ! pid=$(it_wait_active "$app" 2); then
	it_fail "the fit did not start"
	cat "$IT_TMP/fit.out"
	it_finish
fi
it_note "fit running in backend $pid for 2 s; kill -9"
it_check "kill -9 $pid" kill -9 "$pid"
wait "$bg"
sed 's/^/    | /' "$IT_TMP/fit.out"

# The postmaster ends every session and replays the WAL; wait for it.
start=$(it_now)
for _ in $(seq 1 $((RECOVERY_S * 5))); do
	kill -0 "$canary" 2>/dev/null || break
	sleep 0.2
done
if kill -0 "$canary" 2>/dev/null; then
	it_fail "the other sessions were not reset within ${RECOVERY_S}s"
else
	it_pass "the postmaster reset the other sessions too (canary: $(head -n 1 "$IT_TMP/canary.out"))"
fi
up=0
for _ in $(seq 1 $((RECOVERY_S * 5))); do
	if it_psql -c "SELECT 1" >/dev/null 2>&1; then
		up=1
		break
	fi
	sleep 0.2
done
if [ "$up" = 1 ]; then
	it_pass "the server accepts connections again after $(it_since "$start")s"
else
	it_fail "the server did not come back within ${RECOVERY_S}s"
	it_finish
fi
log=$PGHOST/server.log
if [ -r "$log" ]; then
	grep -E 'terminated by signal 9|all server processes terminated|database system is ready' "$log" |
		tail -n 3 | sed 's/^/    log: /'
fi

it_check_eq "versions after recovery" "$(it_versions it_m)" "2 2"
it_expect_value 2 "nn_models still lists both versions" -- \
	"SELECT count(*) FROM nn_models WHERE name = 'it_m'"
it_check_eq "nn_predict/nn_classify give the same answer" \
	"$(it_psql -F ' ' -c "$predict")" "$before"
it_check_eq "the same with version => 2" \
	"$(it_psql -F ' ' -c "SELECT nn_predict('it_m', x, version => 2)::text, nn_classify('it_m', x, version => 2) FROM it_data WHERE id = 1")" \
	"$before"
it_expect_value 1 "training continues after recovery" -- \
	"SELECT count(*) FROM nn_fit('it_m', 'SELECT x, label FROM it_data', epochs => 1, batch_size => 256, verbose => false)"
it_check_eq "and stores version 3" "$(it_versions it_m)" "3 3"

it_finish

#!/usr/bin/env bash
# Smoke test of the Citus cluster of scripts/citus.sh: does a distributed
# table spread over both workers, and does a custom aggregate with a
# combinefunc run as partial aggregates on the workers, combined on the
# coordinator? (What data-parallel training over Citus needs.)
#
# usage: test/citus/smoke.sh
# Starts nothing: run `scripts/citus.sh start` first (same NNPG_CITUS_PORT).
# Works in database nnpg of the coordinator, in a schema nnpg_citus_smoke of
# its own that it drops at the start and at exit. Prints one "ok -" or "not ok -"
# line per check and a summary; exits non-zero when a check failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
eval "$(bash "$root/scripts/citus.sh" env)" || exit 1
export PGHOST PGPORT PGUSER PGDATABASE
# shellcheck source=test/integration/lib.sh
. "$root/test/integration/lib.sh"

IT_NAME=citus_smoke
S=nnpg_citus_smoke
ROWS=1000

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	it_psql -c "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1
	rm -rf "$IT_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

version=$(it_psql -c "SELECT citus_version()" 2>&1)
if [[ "$version" != "Citus 12.1."* ]]; then
	it_fail "Citus 12.1 on the coordinator ($PGHOST, port $PGPORT): $version"
	it_note "is the cluster running? scripts/citus.sh start"
	it_finish
fi
it_pass "coordinator on $PGHOST port $PGPORT runs ${version%% on *}"

# 1. Two active workers, and nnpg on every node at the coordinator's version.
it_expect_value 2 "two active primary workers in pg_dist_node" -- \
	"SELECT count(*) FROM pg_dist_node
	 WHERE groupid <> 0 AND noderole = 'primary' AND isactive"
it_expect_value 3 "nnpg installed on all 3 nodes at the coordinator's version" -- \
	"SELECT count(*) FROM run_command_on_all_nodes(
	   \$\$SELECT extversion FROM pg_extension WHERE extname = 'nnpg'\$\$)
	 WHERE success AND result = (SELECT extversion FROM pg_extension
	                             WHERE extname = 'nnpg')"

# 2. A distributed table: rows on both workers, read from the shards there.
it_psql -c "DROP SCHEMA IF EXISTS $S CASCADE" -c "CREATE SCHEMA $S" \
	-c "CREATE TABLE $S.t (id int PRIMARY KEY, v float8[] NOT NULL)" \
	-c "SELECT create_distributed_table('$S.t', 'id', shard_count => 4)" \
	-c "INSERT INTO $S.t SELECT i, ARRAY[i, 1, i * i]::float8[]
	    FROM generate_series(1, $ROWS) AS i" >/dev/null ||
	{ it_fail "create and fill the distributed table $S.t"; it_finish; }
it_pass "create_distributed_table('$S.t', 'id', shard_count => 4) and $ROWS rows"
it_expect_value $ROWS "the coordinator counts $ROWS rows" -- "SELECT count(*) FROM $S.t"

total=0
nodes=0
while IFS='|' read -r host port shards; do
	[ -n "$host" ] || continue
	nodes=$((nodes + 1))
	n=$(it_psql -h "$host" -p "$port" -c "SELECT 0 $(for s in $shards; do
		printf '+ (SELECT count(*) FROM %s) ' "$s"; done)" 2>&1)
	if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ]; then
		it_pass "worker $host:$port holds $n rows in its shards ($shards)"
		total=$((total + n))
	else
		it_fail "worker $host:$port: no rows in its shards ($shards): $n"
	fi
done < <(it_psql -c "SELECT s.nodename, s.nodeport, string_agg(s.shard_name, ' ')
	FROM citus_shards s JOIN pg_dist_node n USING (nodename, nodeport)
	WHERE s.table_name = '$S.t'::regclass AND n.groupid <> 0
	GROUP BY 1, 2 ORDER BY 2")
it_check_eq "workers holding shards" "$nodes" 2
it_check_eq "rows in the workers' shards together" "$total" $ROWS

# 3. A custom aggregate with a combinefunc and a non-internal state type: an
# element-wise float8[] sum, in SQL. Citus creates the functions and the
# aggregate on the workers too.
it_psql -c "
CREATE FUNCTION $S.f8_add(a float8[], b float8[]) RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS \$\$
  SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a
         ELSE ARRAY(SELECT x + y FROM unnest(a, b) WITH ORDINALITY AS u(x, y, k)
                    ORDER BY k) END
\$\$" -c "
CREATE AGGREGATE $S.vsum(float8[]) (
  sfunc = $S.f8_add, stype = float8[], combinefunc = $S.f8_add,
  parallel = safe)" >/dev/null ||
	{ it_fail "create the aggregate $S.vsum(float8[])"; it_finish; }
it_expect_value 2 "the aggregate exists on both workers" -- \
	"SELECT count(*) FROM run_command_on_workers(
	   \$\$SELECT count(*) FROM pg_aggregate
	     WHERE aggfnoid = '$S.vsum(float8[])'::regprocedure\$\$)
	 WHERE success AND result = '1'"
# sums of i, 1 and i^2 for i = 1..ROWS
want=$(awk -v n=$ROWS 'BEGIN { printf "{%d,%d,%d}", n * (n + 1) / 2, n, n * (n + 1) * (2 * n + 1) / 6 }')
it_expect_value "$want" "$S.vsum(v) over the distributed table" -- \
	"SELECT $S.vsum(v) FROM $S.t"
plan=$(it_psql -c "EXPLAIN (VERBOSE) SELECT $S.vsum(v) FROM $S.t" 2>&1)
printf '%s\n' "$plan" > "$IT_TMP/plan.txt"
for f in worker_partial_agg coord_combine_agg; do
	if grep -q "$f" "$IT_TMP/plan.txt"; then
		it_pass "EXPLAIN (VERBOSE) shows $f"
	else
		it_fail "EXPLAIN (VERBOSE) does not show $f"
		sed 's/^/    | /' "$IT_TMP/plan.txt"
	fi
done

it_finish

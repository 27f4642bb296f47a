#!/usr/bin/env bash
# Data-parallel nn_fit on a Citus distributed table: every shard trains a
# replica on its worker node and the coordinator merges them.  Checks the
# plan (worker_partial_agg on the shards, coord_combine_agg on the
# coordinator), a fit that stores its version with one replica per shard
# and learns about as well as one backend on the same rows, a bad row on a
# worker node whose error reaches the caller, and a cancelled fit that
# leaves no query running on the workers and stores nothing.
#
# usage: test/citus/train.sh
# Starts nothing: `scripts/citus.sh start` and `test/citus/load_fashion.sh`
# first (Fashion-MNIST in fashion_train and fashion_test, 4 shards).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
eval "$(bash "$root/scripts/citus.sh" env)" || exit 1
export PGHOST PGPORT PGUSER PGDATABASE
# shellcheck source=test/integration/lib.sh
. "$root/test/integration/lib.sh"
IT_NAME=citus_train
trap 'rm -rf "$IT_TMP"' EXIT

mlp='[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "dense", "units": 32, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}]'
shards=$(it_psql -c "SELECT count(*) FROM citus_shards WHERE table_name = 'fashion_train'::regclass")
it_note "fashion_train has $shards shards"
it_psql -c "SELECT nn_drop(name) FROM (SELECT DISTINCT name FROM nn_models WHERE name LIKE 'ct_%') m" >/dev/null 2>&1
it_psql -c "DROP TABLE IF EXISTS ct_local, ct_bad" >/dev/null 2>&1

# 1. The round statement's plan.
it_psql -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT nnpg.nn_train(
	CASE WHEN nnpg.nn_replica_wants(1) THEN NULL::bytea END, NULL, '{}', ROW(q.*))
	FROM (SELECT img, label FROM fashion_train) AS q" >"$IT_TMP/plan.txt"
it_check "the shards run worker_partial_agg of nnpg.nn_train" \
	grep -q "worker_partial_agg('nnpg.nn_train(bytea,bytea,jsonb,record)'" "$IT_TMP/plan.txt"
it_check "the coordinator runs coord_combine_agg" grep -q "coord_combine_agg" "$IT_TMP/plan.txt"

# 2. A fit over the distributed table, and the same on one backend.
it_psql -c "SELECT nn_create('ct_par', '$mlp', input_shape => '{784}', seed => 3),
	nn_create('ct_one', '$mlp', input_shape => '{784}', seed => 3)" >/dev/null
it_expect_value 2 "nn_fit with workers over the distributed table" -- \
	"SELECT count(*) FROM nn_fit('ct_par', 'SELECT img, label FROM fashion_train',
	   epochs => 2, batch_size => 32, seed => 1, options => '{\"workers\": 2}',
	   verbose => false)"
it_expect_value "2|$shards|60000|2" "version 2: one replica per shard, every row, 2 epochs" -- \
	"SELECT version, training->'parallel'->>'replicas', training->>'rows',
	        jsonb_array_length(history)
	 FROM nnpg.models WHERE name = 'ct_par' ORDER BY version DESC LIMIT 1"
it_psql -c "CREATE TABLE ct_local AS SELECT img, label FROM fashion_train" >/dev/null
it_expect_value 2 "the same fit on one backend, over a local copy" -- \
	"SELECT count(*) FROM nn_fit('ct_one', 'SELECT img, label FROM ct_local',
	   epochs => 2, batch_size => 32, seed => 1, verbose => false)"
par=$(it_psql -c "SELECT value FROM nn_evaluate('ct_par', 'SELECT img, label FROM fashion_test') WHERE metric = 'accuracy'")
one=$(it_psql -c "SELECT value FROM nn_evaluate('ct_one', 'SELECT img, label FROM fashion_test') WHERE metric = 'accuracy'")
it_note "test accuracy: $shards replicas $par, one backend $one"
it_check "the replicas' model learned (test accuracy $par above 0.8)" \
	awk -v a="$par" 'BEGIN { exit !(a > 0.8) }'
it_check "within 2 points of one backend's ($one)" \
	awk -v a="$par" -v b="$one" 'BEGIN { exit !(a > b - 0.02) }'

# 3. A bad row on a worker node: its error, with the row, reaches the caller.
it_psql -c "CREATE TABLE ct_bad (id int PRIMARY KEY, img bytea, label int)" \
	-c "SELECT create_distributed_table('ct_bad', 'id', colocate_with => 'fashion_train')" \
	-c "INSERT INTO ct_bad SELECT id, img, label FROM fashion_train WHERE id <= 5000" \
	-c "INSERT INTO ct_bad VALUES (5001, '\\x0102', 3)" >/dev/null
it_run_sql -- "SELECT count(*) FROM nn_fit('ct_par', 'SELECT img, label FROM ct_bad',
	epochs => 1, options => '{\"workers\": 2}', verbose => false)" >"$IT_TMP/bad.out"
sed 's/^/    | /' "$IT_TMP/bad.out"
it_check_eq "a short image fails with 22000" "$(sed -n 's/^SQLSTATE //p' "$IT_TMP/bad.out")" 22000
it_check "the message says what is wrong" grep -q 'expected 784 features, not 2' "$IT_TMP/bad.out"
it_check "the context shows the failing row" grep -q 'row ("\\\\x0102",3) of this replica' "$IT_TMP/bad.out"
it_psql -c "UPDATE ct_bad SET img = NULL WHERE id = 5001" >/dev/null
it_run_sql -- "SELECT count(*) FROM nn_fit('ct_par', 'SELECT img, label FROM ct_bad',
	epochs => 1, options => '{\"workers\": 2}', verbose => false)" >"$IT_TMP/null.out"
it_check_eq "a NULL image fails with 22004" "$(sed -n 's/^SQLSTATE //p' "$IT_TMP/null.out")" 22004
it_check "the message names the query's column" grep -q 'null value in column "img"' "$IT_TMP/null.out"
it_check_eq "nothing stored" "$(it_versions ct_par)" "2 2"

# 4. A cancelled fit: no query of it left on the workers, nothing stored.
it_run_sql -- "SET statement_timeout = '3s';
SELECT count(*) FROM nn_fit('ct_par', 'SELECT img, label FROM fashion_train',
	epochs => 1000, options => '{\"workers\": 2}', verbose => false)" >"$IT_TMP/cancel.out"
it_check_eq "statement_timeout cancels it with 57014" "$(sed -n 's/^SQLSTATE //p' "$IT_TMP/cancel.out")" 57014
left=1
for _ in $(seq 1 100); do
	left=$(it_psql -c "SELECT sum(result::int) FROM run_command_on_workers(
		\$\$SELECT count(*) FROM pg_stat_activity
		  WHERE state = 'active' AND query LIKE '%nn_train%' AND pid <> pg_backend_pid()\$\$)")
	[ "$left" = 0 ] && break
	sleep 0.1
done
it_check_eq "no shard query of it still runs on the workers" "$left" 0
it_check_eq "still nothing stored" "$(it_versions ct_par)" "2 2"

it_psql -c "DROP TABLE ct_local, ct_bad" -c "SELECT nn_drop(name) FROM (SELECT DISTINCT name FROM nn_models WHERE name LIKE 'ct_%') m" >/dev/null
it_finish

#!/usr/bin/env bash
# Load Fashion-MNIST into the Citus cluster of scripts/citus.sh and
# distribute it over the workers.
#
# usage: test/citus/load_fashion.sh [--shards N] [--limit N] [--prefix NAME]
#   --shards N     shards of each table (default: 2 per active worker node,
#                  so 4 on the cluster of scripts/citus.sh)
#   --limit N      load at most N rows of each split (default: all, 60,000
#                  train and 10,000 test rows)
#   --prefix NAME  table name prefix (default: fashion)
#
# Starts nothing: run `scripts/citus.sh start` first (same NNPG_CITUS_PORT).
# scripts/load_fashion.py fills NAME_train and NAME_test in the bytea layout
# (id int primary key, img bytea, label int) on the coordinator, in database
# nnpg; then both become distributed tables by hash of id with N shards,
# the test table colocated with the train table, and the coordinator's
# local copy of the rows is dropped. Running it again drops and reloads
# both tables (load_fashion.py drops distributed tables like any other).
#
# Why the shard count matters: in data-parallel training over Citus every
# shard trains one replica of the model on its own rows (one partial
# aggregate per shard on the workers), and the coordinator combines the
# replicas. So N is the number of replicas. With 2 per worker node each
# worker trains two replicas at once, in two backends (Citus's executor
# opens a connection per shard), so a worker's 2 cores both work.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

shards=
limit=()
prefix=fashion
while [ "$#" -gt 0 ]; do
	case "$1" in
	--shards)
		shards=${2:?--shards needs a number}
		shift 2
		;;
	--limit)
		limit=(--limit "${2:?--limit needs a number}")
		shift 2
		;;
	--prefix)
		prefix=${2:?--prefix needs a name}
		shift 2
		;;
	-h | --help)
		nnpg_usage "$0"
		exit 0
		;;
	*) nnpg_die "unrecognized option \"$1\" (try --help)" ;;
	esac
done
[[ -z "$shards" || "$shards" =~ ^[1-9][0-9]*$ ]] || nnpg_die "bad --shards \"$shards\""
[[ "$prefix" =~ ^[a-z_][a-z0-9_]*$ ]] || nnpg_die "bad --prefix \"$prefix\" (lower-case letters, digits, _)"

eval "$(bash "$root/scripts/citus.sh" env)"
export PGHOST PGPORT PGUSER PGDATABASE

q() {
	PGOPTIONS="-c client_min_messages=warning" \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

version=$(q -c "SELECT citus_version()") ||
	nnpg_die "no Citus coordinator at $PGHOST port $PGPORT (run scripts/citus.sh start)"
workers=$(q -c "SELECT count(*) FROM pg_dist_node
	WHERE groupid <> 0 AND noderole = 'primary' AND isactive")
[ "$workers" -gt 0 ] || nnpg_die "no active worker node in pg_dist_node"
: "${shards:=$((2 * workers))}"

t0=$SECONDS
nnpg_log "loading ${prefix}_train and ${prefix}_test into the coordinator (${version%% on *}, $PGHOST port $PGPORT)"
/usr/bin/python3 "$root/scripts/load_fashion.py" --layouts bytea --jobs 1 --prefix "$prefix" "${limit[@]}"
t1=$SECONDS

nnpg_log "distributing them by id: $shards shards over $workers workers"
for split in train test; do
	t=${prefix}_$split
	# the test table takes the train table's shard count and placement
	how="shard_count => $shards"
	[ "$split" = test ] && how="colocate_with => '${prefix}_train'"
	q -c "SELECT create_distributed_table('$t', 'id', $how)" \
		-c "SELECT truncate_local_data_after_distributing_table('$t')" \
		-c "ANALYZE $t" >/dev/null
done
t2=$SECONDS

q -F ' ' -c "SELECT s.table_name, s.nodename, s.nodeport, count(*),
		pg_size_pretty(sum(s.shard_size))
	FROM citus_shards s
	WHERE s.table_name IN ('${prefix}_train'::regclass, '${prefix}_test'::regclass)
	GROUP BY 1, 2, 3 ORDER BY 1, 3" |
	while read -r t host port n size; do
		printf '%-16s %s (port %s): %s shards, %s\n' "$t" "$host" "$port" "$n" "$size"
	done
for split in train test; do
	printf '%-16s %s rows\n' "${prefix}_$split" "$(q -c "SELECT count(*) FROM ${prefix}_$split")"
done
nnpg_log "done: load $((t1 - t0)) s, distribute $((t2 - t1)) s"

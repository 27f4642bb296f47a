#!/usr/bin/env bash
# Data-parallel nn_fit against one backend, in one run.  The seed CNN (the
# README's demo CNN) trains --epochs epochs (default 5) on the 60,000
# Fashion-MNIST training rows, batch 32, seed 1, from the same initial
# weights, in each of these ways:
#   1-thread    one backend, nnpg.threads = 1
#   2-threads   one backend, nnpg.threads = 2
#   workers     options workers => 2: two parallel workers, one thread each
#   citus       (with --citus) options workers => 2 on a Citus coordinator
#               with two worker nodes on this machine (scripts/citus.sh),
#               the table distributed over --shards shards (default 2: one
#               replica per node)
# Test accuracy moves by about half a point from one shuffling seed to the
# next, as much as the targets allow between the ways, and these shared
# machines' speed drifts from minute to minute; so the ways run
# interleaved, once per seed (nn_fit's seed 1..--seeds, default 3; the
# initial weights are the same), and are compared by their median seconds
# (with the range) and mean accuracy.  For each fit: wall seconds,
# samples/s (rows x epochs / wall seconds), test accuracy on the 10,000
# test rows, and for the data-parallel ones where the rounds' time went
# (nn_models.training -> 'parallel').  The rows are loaded in file order
# (one COPY), so the runs share one table.  Citus runs after the others,
# on its own cluster: its accuracy is compared, not its speed (its three
# servers share the two cores).  Run as root; uses the installed build
# (and Citus: bash scripts/citus.sh build).
#
# usage: bash test/bench/parallel.sh [--port N] [--epochs N] [--seeds N]
#            [--sync-rows N] [--citus] [--shards N] [--only LIST]
#   --only LIST  comma-separated subset of 1-thread,2-threads,workers,citus
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5486
epochs=5
seeds=3
sync=
citus=0
shards=2
only=1-thread,2-threads,workers
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--seeds) seeds=$2; shift 2 ;;
	--sync-rows) sync=$2; shift 2 ;;
	--citus) citus=1; shift ;;
	--shards) shards=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	-h | --help) nnpg_usage "$0"; exit 0 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
[ "$citus" = 1 ] && only=$only,citus

q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
cnn='[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "reshape", "shape": [28, 28, 1]},
  {"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense", "units": 64, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}]'
opts='{"workers": 2'${sync:+, \"sync_rows\": $sync}'}'

# run NAME THREADS OPTIONS SEED: train a fresh copy of the seed CNN; prints
# "seconds accuracy parallel-json".
run() {
	local t0 t1 acc par
	q -c "SELECT nn_create('$1', '$cnn', input_shape => '{784}', seed => 42)" >/dev/null
	t0=$(date +%s.%N)
	q -c "SET nnpg.threads = $2" -c "SELECT count(*) FROM nn_fit('$1',
	    'SELECT img, label FROM fashion_train', epochs => $epochs,
	    batch_size => 32, seed => $4, options => '$3', verbose => false)" >/dev/null
	t1=$(date +%s.%N)
	acc=$(q -c "SELECT value FROM nn_evaluate('$1', 'SELECT img, label FROM fashion_test')
	            WHERE metric = 'accuracy'")
	par=$(q -c "SELECT coalesce(training -> 'parallel', 'null') FROM nn_models
	            WHERE name = '$1' ORDER BY version DESC LIMIT 1")
	printf '%s %s %s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$acc" "$par"
}

# fit NAME THREADS OPTIONS SEED: one fit, reported; its seconds and
# accuracy appended to the lists of NAME.
declare -A secs accs
fit() {
	local name=$1 s a p
	read -r s a p <<<"$(run "${name//-/_}_$4" "$2" "$3" "$4")"
	secs[$name]+="$s "
	accs[$name]+="$a "
	printf '%-10s seed %d %7.1f s %8.0f samples/s  test accuracy %.4f\n' \
		"$name" "$4" "$s" \
		"$(awk -v s="$s" -v n=$((60000 * epochs)) 'BEGIN { print n / s }')" "$a"
	[ "$p" = null ] || printf '           rounds: %s\n' "$p"
}

median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mean() { printf '%s\n' $1 | awk '{ s += $1 } END { print s / NR }'; }
range() { printf '%s\n' $1 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }

# summary NAME: the median seconds (range), samples/s and mean accuracy.
summary() {
	local m
	m=$(median "${secs[$1]}")
	printf '%-10s median %6.1f s (%s) %8.0f samples/s  mean test accuracy %.4f\n' \
		"$1" "$m" "$(range "${secs[$1]}")" \
		"$(awk -v s="$m" -v n=$((60000 * epochs)) 'BEGIN { print n / s }')" \
		"$(mean "${accs[$1]}")"
}

wants() { [[ ",$only," == *",$1,"* ]]; }

# capacity: how much faster two CPU-bound processes (sha256sum of 256 MB
# in memory) get through twice the work than one gets through once: 2.0
# when this shared machine gives both its cores, less when it does not.
capacity() {
	local f=/dev/shm/nnpg_bench_$$ t0 t1 t2
	head -c 256M /dev/urandom >"$f"
	sha256sum "$f" >/dev/null
	t0=$(date +%s.%N)
	sha256sum "$f" >/dev/null
	t1=$(date +%s.%N)
	sha256sum "$f" >/dev/null &
	sha256sum "$f" >/dev/null
	wait
	t2=$(date +%s.%N)
	rm -f "$f"
	awk -v a="$t0" -v b="$t1" -v c="$t2" \
		'BEGIN { printf "machine capacity: 2 processes did %.2fx the work of 1 in the same time\n", 2 * (b - a) / (c - b) }'
}
capacity

if wants 1-thread || wants 2-threads || wants workers; then
	nnpg_bench_cluster "$port"
	q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
	/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea --jobs 1 >/dev/null
	for seed in $(seq 1 "$seeds"); do
		wants 1-thread && fit 1-thread 1 '{}' "$seed"
		wants workers && fit workers 1 "$opts" "$seed"
		wants 2-threads && fit 2-threads 2 '{}' "$seed"
	done
	"${NNPG_BENCH_CLUSTER[@]}" stop >/dev/null
	trap - EXIT
fi
if wants citus; then
	bash "$NNPG_ROOT/scripts/citus.sh" build >/dev/null
	bash "$NNPG_ROOT/scripts/citus.sh" stop >/dev/null 2>&1 || true
	bash "$NNPG_ROOT/scripts/citus.sh" start >/dev/null 2>&1
	trap 'bash "$NNPG_ROOT/scripts/citus.sh" stop >/dev/null 2>&1' EXIT
	eval "$(bash "$NNPG_ROOT/scripts/citus.sh" env)"
	export PGHOST PGPORT PGUSER PGDATABASE
	bash "$NNPG_ROOT/test/citus/load_fashion.sh" --shards "$shards" >/dev/null 2>&1
	for seed in $(seq 1 "$seeds"); do
		fit citus 1 "$opts" "$seed"
	done
fi

capacity
for w in 1-thread workers 2-threads citus; do
	[ -n "${secs[$w]:-}" ] && summary "$w"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
points() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", 100 * (a - b) }'; }
if [ -n "${secs[workers]:-}" ] && [ -n "${secs[1-thread]:-}" ]; then
	echo "workers => 2 vs one backend, 1 thread: $(ratio "$(median "${secs[1-thread]}")" "$(median "${secs[workers]}")")x samples/s (target >= 1.7), accuracy $(points "$(mean "${accs[workers]}")" "$(mean "${accs[1-thread]}")") points (target within 0.5)"
fi
if [ -n "${secs[workers]:-}" ] && [ -n "${secs[2-threads]:-}" ]; then
	echo "workers => 2 vs one backend, 2 threads: $(ratio "$(median "${secs[2-threads]}")" "$(median "${secs[workers]}")")x samples/s"
fi
if [ -n "${secs[citus]:-}" ] && [ -n "${secs[1-thread]:-}" ]; then
	echo "citus, 2 nodes vs one backend, 1 thread: accuracy $(points "$(mean "${accs[citus]}")" "$(mean "${accs[1-thread]}")") points (target within 0.5)"
fi

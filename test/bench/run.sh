#!/usr/bin/env bash
# The Fashion-MNIST benchmark: nnpg against PyTorch, in one command.
#
# usage: bash test/bench/run.sh [--port N] [--no-setup] [--keep] [BENCH OPTIONS]
#   --port N    port of the throwaway cluster (default 5488, or NNPG_BENCH_PORT)
#   --no-setup  skip scripts/setup.sh --bench (packages, build, install)
#   --keep      leave the cluster running afterwards (default: remove it)
# Every other option goes to test/bench/fashion_bench.py, e.g.
#   --quick         smoke run: 1 epoch on 5,000 training rows
#   --epochs N      epochs per fit (default 5)
#   --repeat N      interleaved rounds, medians and ranges (default 1)
#   --json PATH     where the figures go (default test/bench/results.json)
#   --no-torch      nnpg only
# Run as root from anywhere: it installs what is missing (python3-torch,
# python3-psycopg2, ...), builds and installs nnpg, starts a private cluster
# (scripts/cluster.sh), loads Fashion-MNIST (scripts/load_fashion.py), runs
# the benchmark with Debian's /usr/bin/python3 and removes the cluster.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=${NNPG_BENCH_PORT:-5488}
setup=1
keep=0
bench_args=()
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=${2:?--port needs a number}; shift 2 ;;
	--no-setup) setup=0; shift ;;
	--keep) keep=1; shift ;;
	-h | --help)
		sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) bench_args+=("$1"); shift ;;
	esac
done
[[ "$port" =~ ^[0-9]+$ ]] || nnpg_die "--port must be a number"
export NNPG_PORT=$port
cluster=(bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port")

if [ "$setup" = 1 ]; then
	bash "$NNPG_ROOT/scripts/setup.sh" --bench
fi

if "${cluster[@]}" status >/dev/null 2>&1; then
	nnpg_die "a cluster already runs on port $port; stop it (scripts/cluster.sh -p $port stop) or pick --port"
fi
cleanup() {
	if [ "$keep" = 0 ]; then
		"${cluster[@]}" stop || true
	else
		nnpg_log "cluster kept: eval \"\$(scripts/cluster.sh -p $port env)\"; psql"
	fi
}
trap cleanup EXIT
"${cluster[@]}" start
eval "$("${cluster[@]}" env)"
export PGHOST PGPORT PGUSER PGDATABASE

nnpg_log "loading Fashion-MNIST"
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py"

nnpg_log "benchmark (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE on both sides)"
/usr/bin/python3 "$NNPG_ROOT/test/bench/fashion_bench.py" "${bench_args[@]}"

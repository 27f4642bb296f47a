# shellcheck shell=bash
# Shared settings for the nnpg scripts: sourced by setup.sh, cluster.sh,
# demo.sh, test.sh and the benchmarks, never run on its own.
#
# Everything can be overridden from the environment:
#   PG_CONFIG          pg_config of the server to build against
#   NNPG_PORT          port (and socket name) of the throwaway cluster
#   NNPG_CLUSTER_DIR   where that cluster lives (data dir, socket, log)
#   NNPG_OS_USER       unprivileged OS user the server runs as when we are root

# OpenBLAS on these AMD EPYC machines: pin the kernel and the L2 size (older
# OpenBLAS builds miscompute there otherwise) in the build, the tests and the
# server, and give both sides of a benchmark the same setting.
: "${OPENBLAS_CORETYPE:=Haswell}"
: "${OPENBLAS_L2_SIZE:=512}"
export OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

: "${PG_CONFIG:=/usr/lib/postgresql/15/bin/pg_config}"
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
export PG_CONFIG PGBIN

: "${NNPG_PORT:=5499}"
: "${NNPG_OS_USER:=nnpg}"

# The repository root: the parent of the folder holding this file.
NNPG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# nnpg_log MESSAGE: one progress line on stderr, easy to spot in CI logs.
nnpg_log() {
	printf '==> %s\n' "$*" >&2
}

# nnpg_usage SCRIPT: print the comment block at the top of SCRIPT.
nnpg_usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

# nnpg_die MESSAGE: report and stop.
nnpg_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# nnpg_bench_cluster PORT: a throwaway cluster on PORT for a benchmark,
# stopped and removed when the script exits, with the PG* variables set.
nnpg_bench_cluster() {
	NNPG_BENCH_CLUSTER=(bash "$NNPG_ROOT/scripts/cluster.sh" -p "$1")
	"${NNPG_BENCH_CLUSTER[@]}" start >/dev/null
	trap '"${NNPG_BENCH_CLUSTER[@]}" stop >/dev/null' EXIT
	eval "$("${NNPG_BENCH_CLUSTER[@]}" env)"
	export PGHOST PGPORT PGUSER PGDATABASE
}

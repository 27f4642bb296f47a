#!/usr/bin/env bash
# Install what nnpg needs on a Debian 12 machine, then build and install the
# extension. Run as root from anywhere; safe to run again (apt is asked only
# for what is missing, and `apt-get update` only runs when something is).
#
# usage: scripts/setup.sh [--bench] [--no-build]
#   --bench     also install PyTorch, NumPy and psycopg2 for the benchmarks,
#               and oneDNN for test/bench/bench_qgemm.c
#   --no-build  install packages only; skip `make` and `make install`
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench=0
build=1
for arg in "$@"; do
	case "$arg" in
	--bench) bench=1 ;;
	--no-build) build=0 ;;
	-h | --help)
		nnpg_usage "$0"
		exit 0
		;;
	*) nnpg_die "unrecognized option \"$arg\" (try --help)" ;;
	esac
done

# What a fresh Debian 12 lacks for building, testing and the demo.
packages=(
	build-essential gcc make			# compiler and make for PGXS
	postgresql-15 postgresql-server-dev-15		# server, pg_config, PGXS, pg_regress
	libopenblas-dev					# CBLAS for the math core
	libcmocka-dev					# unit tests
	clang libclang-rt-14-dev			# ASan/UBSan and libFuzzer runtimes
	libomp-dev					# omp.h and libomp for clang -fopenmp
	sqlsmith					# random SQL for test/fuzz/sqlsmith.sh
	dataset-fashion-mnist				# /usr/share/datasets/fashion-mnist
	python3						# Debian's /usr/bin/python3 for the loader
	libxml2-dev					# test_plot reads its SVG back
	protobuf-c-compiler libprotobuf-c-dev		# ONNX import and export (protoc-c)
	libonnx-dev					# onnx.proto, compiled at build time
	python3-onnx					# onnx.checker on exported models
	chromium					# test/integration/plot_render.sh
)
if [ "$bench" = 1 ]; then
	packages+=(python3-torch python3-numpy python3-psycopg2 libdnnl-dev)
fi

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	[ "$(id -u)" = 0 ] || nnpg_die "missing packages (${missing[*]}); run this as root"
	nnpg_log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	nnpg_log "all ${#packages[@]} packages already installed"
fi

[ -x "$PG_CONFIG" ] || nnpg_die "pg_config not found at $PG_CONFIG"

if [ "$build" = 1 ]; then
	[ -f "$NNPG_ROOT/Makefile" ] || nnpg_die "no Makefile in $NNPG_ROOT: nothing to build"
	nnpg_log "building nnpg against $("$PG_CONFIG" --version)"
	make -C "$NNPG_ROOT" -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
	nnpg_log "installing nnpg into $("$PG_CONFIG" --pkglibdir)"
	make -C "$NNPG_ROOT" install PG_CONFIG="$PG_CONFIG"
fi
nnpg_log "setup done"

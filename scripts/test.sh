#!/usr/bin/env bash
# Every nnpg test, as CI runs it (`bash scripts/test.sh` from .ci/run).
#
# Steps, each counted as one test that passes or fails:
#   setup          scripts/setup.sh: packages, `make`, `make install`
#   unit/check     make -C test/unit check        core unit tests (cmocka)
#   unit/asan      make -C test/unit check-asan   the same under ASan+UBSan
#   unit/onnx-check make -C test/unit onnx-check  nnpg's ONNX exports through
#                  onnx.checker (Debian's python3-onnx)
#   unit/fuzz      make -C test/unit fuzz-smoke   a bounded libFuzzer run
#   cluster        scripts/cluster.sh start: a throwaway server (port 5498
#                  or NNPG_TEST_PORT), run as an unprivileged OS user
#   installcheck   make installcheck (pg_regress) against that server
#   integration/X  test/integration/X.sh against that server
#   fuzz/sqlsmith  test/fuzz/sqlsmith.sh: 2000 random queries (sqlsmith)
#                  against that server, whose log must show no crash or leak
#   citus/*        data-parallel training on Citus: scripts/citus.sh builds
#                  (cached) and starts a coordinator and two worker nodes,
#                  test/citus/smoke.sh, load_fashion.sh and train.sh run
#                  against them.  Run when Citus 12.1 is installed or a
#                  source tarball is given (--citus-tarball PATH, or
#                  NNPG_CITUS_TARBALL); otherwise skipped, saying so.
# The servers are stopped and removed at the end, also on failure or Ctrl-C.
# The last line is "N passed, N failed"; the exit code is non-zero on a failure.
# Run as root on a fresh Debian 12 machine; the repository need not be
# readable by the server's OS user (clients run as the caller).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NNPG_ROOT" || exit 1

citus_tarball=${NNPG_CITUS_TARBALL:-}
while [ "$#" -gt 0 ]; do
	case "$1" in
	--citus-tarball) citus_tarball=${2:?--citus-tarball needs a path}; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\" (see the top of $0)" ;;
	esac
done

NNPG_PORT=${NNPG_TEST_PORT:-5498}
export NNPG_PORT
cluster=(bash "$NNPG_ROOT/scripts/cluster.sh" -p "$NNPG_PORT")

passed=0
failed=0
results=()
cluster_up=0
built=0

# record NAME RC SECONDS: count one step and remember its result line.
record() {
	local line
	if [ "$2" = 0 ]; then
		passed=$((passed + 1))
		line=$(printf 'PASS  %-32s %6ss' "$1" "$3")
	else
		failed=$((failed + 1))
		line=$(printf 'FAIL  %-32s %6ss  (exit %s)' "$1" "$3" "$2")
	fi
	results+=("$line")
	printf '%s\n' "$line"
}

# step NAME COMMAND...: run COMMAND with its output shown, and record it.
step() {
	local name=$1 rc t0
	shift
	printf '\n======== %s: %s\n' "$name" "$*"
	t0=$SECONDS
	"$@"
	rc=$?
	record "$name" "$rc" $((SECONDS - t0))
	return "$rc"
}

# fail_without NAME REASON: a step whose prerequisite failed counts as failed.
fail_without() {
	printf '\n======== %s: not run, %s\n' "$1" "$2"
	record "$1" 1 0
}

citus_up=0
stop_cluster() {
	if [ "$cluster_up" = 1 ]; then
		cluster_up=0
		"${cluster[@]}" stop
	fi
	if [ "$citus_up" = 1 ]; then
		citus_up=0
		bash scripts/citus.sh stop
	fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

installcheck() {
	local rc
	make installcheck PG_CONFIG="$PG_CONFIG"
	rc=$?
	if [ "$rc" != 0 ] && [ -f regression.diffs ]; then
		echo "---- regression.diffs (first 400 lines) ----"
		head -n 400 regression.diffs
		echo "---- end of regression.diffs ----"
	fi
	return "$rc"
}

# 1. Packages and the build.
step setup bash scripts/setup.sh && built=1

# 2. Core unit tests: they need no server.
step unit/check make -C test/unit check
step unit/onnx-check make -C test/unit onnx-check
step unit/asan make -C test/unit check-asan
step unit/fuzz make -C test/unit fuzz-smoke

# 3. A throwaway server, and what runs against it.
if [ "$built" = 1 ]; then
	"${cluster[@]}" stop >/dev/null 2>&1	# a leftover of a killed run
	step cluster "${cluster[@]}" start && cluster_up=1
fi
eval "$("${cluster[@]}" env)"
export PGHOST PGPORT PGUSER PGDATABASE

integration=()
for f in test/integration/*.sh; do
	[ "$(basename "$f")" = lib.sh ] || integration+=("$f")
done
if [ "$cluster_up" = 1 ]; then
	step installcheck installcheck
	for f in "${integration[@]}"; do
		step "integration/$(basename "$f" .sh)" bash "$f"
	done
	step fuzz/sqlsmith env NNPG_FUZZ_QUERIES=2000 NNPG_FUZZ_SEED=1 \
		NNPG_FUZZ_SECONDS=100 bash test/fuzz/sqlsmith.sh
else
	why="the build failed"
	[ "$built" = 1 ] && why="the cluster did not start"
	fail_without installcheck "$why"
	for f in "${integration[@]}"; do
		fail_without "integration/$(basename "$f" .sh)" "$why"
	done
	fail_without fuzz/sqlsmith "$why"
fi
stop_cluster

# 4. Citus, when it is there or can be built.
citus_steps=(citus/smoke citus/load citus/train)
if [ -z "$citus_tarball" ] && [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
	printf '\n======== citus: skipped: Citus is not installed and no source tarball was given (--citus-tarball PATH)\n'
elif [ "$built" != 1 ]; then
	for s in citus/build citus/start "${citus_steps[@]}"; do
		fail_without "$s" "the build failed"
	done
else
	[ -n "$citus_tarball" ] && export NNPG_CITUS_TARBALL=$citus_tarball
	if step citus/build bash scripts/citus.sh build &&
		{ bash scripts/citus.sh stop >/dev/null 2>&1; step citus/start bash scripts/citus.sh start; }; then
		citus_up=1
		step citus/smoke bash test/citus/smoke.sh
		step citus/load bash test/citus/load_fashion.sh
		step citus/train bash test/citus/train.sh
	else
		for s in "${citus_steps[@]}"; do
			fail_without "$s" "Citus did not build or start"
		done
	fi
	stop_cluster
fi

printf '\n======== summary\n'
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

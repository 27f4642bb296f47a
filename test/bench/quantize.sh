#!/usr/bin/env bash
# int8 against float on Fashion-MNIST, side by side in one run: the seed
# CNN, the seed MLP and the wide MLP (784-512-512-10) trained --epochs
# epochs, then nn_quantize'd weight-only and calibrated (on 1,000 training
# rows).  For each: test accuracy (target: within 0.5 points of float),
# stored bytes against the float weights alone (version 1; target: at most
# 30%), nn_predict_batch over the 10,000 test rows and per-row nn_classify
# over 2,000 of them (each after a warm-up in its session, so the model is
# cached; medians of --rounds alternating runs; targets:
# calibrated batch >= 2x float for the wide MLP and >= 1.5x for the CNN,
# per row >= 1.5x).  Run as root; uses the installed build.
#
# usage: bash test/bench/quantize.sh [--port N] [--epochs N] [--rounds N] [--threads N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5479
epochs=5
rounds=3
threads=2
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
nnpg_bench_cluster "$port"
export PGOPTIONS="-c nnpg.threads=$threads -c client_min_messages=warning"

q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea >/dev/null

rescale='{"type": "rescale", "scale": 0.00392156862745098}'
declare -A LAYERS=(
	[cnn]="[$rescale, {\"type\": \"reshape\", \"shape\": [28, 28, 1]},
  {\"type\": \"conv2d\", \"filters\": 32, \"kernel_size\": 3, \"activation\": \"relu\"},
  {\"type\": \"maxpool2d\", \"pool_size\": 2},
  {\"type\": \"conv2d\", \"filters\": 64, \"kernel_size\": 3, \"activation\": \"relu\"},
  {\"type\": \"maxpool2d\", \"pool_size\": 2},
  {\"type\": \"conv2d\", \"filters\": 64, \"kernel_size\": 3, \"activation\": \"relu\"},
  {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 64, \"activation\": \"relu\"},
  {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]"
	[mlp]="[$rescale, {\"type\": \"dense\", \"units\": 128, \"activation\": \"relu\"},
  {\"type\": \"dropout\", \"rate\": 0.2}, {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]"
	[wide]="[$rescale, {\"type\": \"dense\", \"units\": 512, \"activation\": \"relu\"},
  {\"type\": \"dense\", \"units\": 512, \"activation\": \"relu\"},
  {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]"
)
declare -A BATCH=([cnn]=64 [mlp]=32 [wide]=128)

acc() {	# acc MODEL VERSION
	q -c "SELECT round(value::numeric, 4) FROM nn_evaluate('$1',
	      'SELECT img, label FROM fashion_test', $2) WHERE metric = 'accuracy'"
}
size() {	# size MODEL VERSION
	q -c "SELECT size_bytes FROM nn_models WHERE name = '$1' AND version = $2"
}
# ms SQL: milliseconds of a run of SQL after a warm-up run in the same
# session (which loads the version into the session's model cache)
ms() {
	q -c '\timing on' -c "$1" -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-5s %-12s %8s %8s %6s %12s %9s %12s %9s\n' model version accuracy bytes bytes% \
	batch_ms speedup row_ms speedup
for m in cnn mlp wide; do
	q -c "SELECT nn_create('$m', '${LAYERS[$m]}', input_shape => '{784}', seed => 1)" >/dev/null
	q -c "SELECT count(*) FROM nn_fit('$m', 'SELECT img, label FROM fashion_train',
	      epochs => $epochs, batch_size => ${BATCH[$m]}, seed => 1, verbose => false)" >/dev/null
	q -c "SELECT nn_quantize('$m', NULL, 2)" >/dev/null	# 3: weight-only
	q -c "SELECT nn_quantize('$m', 'SELECT img FROM fashion_train WHERE id <= 1000', 2)" >/dev/null	# 4
	declare -A bt=() rt=()
	for r in $(seq 1 "$rounds"); do
		for v in 2 3 4; do
			bt[$v]+="$(ms "SELECT count(*) FROM nn_predict_batch('$m', 'SELECT id, img FROM fashion_test', $v)") "
			rt[$v]+="$(ms "SELECT count(nn_classify('$m', img, $v)) FROM fashion_test WHERE id <= 2000") "
		done
	done
	fb=$(median ${bt[2]})
	fr=$(median ${rt[2]})
	for v in 2 3 4; do
		b=$(median ${bt[$v]})
		r=$(median ${rt[$v]})
		printf '%-5s %-12s %8s %8s %5.1f%% %12s %8.2fx %12s %8.2fx\n' "$m" \
			"$([ $v = 2 ] && echo float || { [ $v = 3 ] && echo weight-only || echo calibrated; })" \
			"$(acc "$m" "$v")" "$(size "$m" "$v")" \
			"$(awk -v a="$(size "$m" "$v")" -v b="$(size "$m" 1)" 'BEGIN { print 100 * a / b }')" \
			"$b" "$(awk -v a="$fb" -v b="$b" 'BEGIN { print a / b }')" \
			"$r" "$(awk -v a="$fr" -v b="$r" 'BEGIN { print a / b }')"
	done
	unset bt rt
done

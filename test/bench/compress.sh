#!/usr/bin/env bash
# Smaller models on Fashion-MNIST: the wide MLP (784-512-512-10, batch 128)
# trained --epochs epochs on the 60,000 training rows, then pruned to 80%
# sparsity with nn_prune and fine-tuned 2 epochs; test accuracy of each,
# and the stored bytes of the pruned version (no optimizer state) against
# the unpruned weights alone (version 1: weights, no optimizer state).
# Targets: accuracy within 1 point of the unpruned model's, bytes at most
# 35%.  Run as root; uses the installed build and a throwaway cluster.
#
# usage: bash test/bench/compress.sh [--port N] [--epochs N] [--threads N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5480
epochs=5
threads=2
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
nnpg_bench_cluster "$port"
export PGOPTIONS="-c nnpg.threads=$threads -c client_min_messages=warning"

q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea >/dev/null

q -c "SELECT nn_create('wide', '[{\"type\": \"rescale\", \"scale\": 0.00392156862745098},
  {\"type\": \"dense\", \"units\": 512, \"activation\": \"relu\"},
  {\"type\": \"dense\", \"units\": 512, \"activation\": \"relu\"},
  {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]',
  input_shape => '{784}', seed => 1)" >/dev/null
fit() {	# fit EPOCHS: train the latest version, print the seconds
	q -c "SELECT round(sum(seconds)::numeric, 1) FROM nn_fit('wide',
	      'SELECT img, label FROM fashion_train', epochs => $1, batch_size => 128,
	      seed => 1, verbose => false)"
}
acc() {	# acc VERSION: test accuracy
	q -c "SELECT round(value::numeric, 4) FROM nn_evaluate('wide',
	      'SELECT img, label FROM fashion_test', $1) WHERE metric = 'accuracy'"
}
size() {	# size VERSION: stored bytes
	q -c "SELECT size_bytes FROM nn_models WHERE name = 'wide' AND version = $1"
}

secs=$(fit "$epochs")
printf 'wide MLP, %s epochs (%s s): test accuracy %s\n' "$epochs" "$secs" "$(acc 2)"
v=$(q -c "SELECT nn_prune('wide', 0.8)")
printf 'pruned to 80%% (version %s): sparsity %s, test accuracy %s before fine-tuning\n' \
	"$v" "$(q -c "SELECT round(sparsity::numeric, 4) FROM nn_models WHERE name = 'wide' AND version = $v")" \
	"$(acc "$v")"
secs=$(fit 2)
printf 'fine-tuned 2 epochs (%s s): test accuracy %s (unpruned %s, target: within 0.01)\n' \
	"$secs" "$(acc $((v + 1)))" "$(acc 2)"
printf 'bytes: unpruned weights alone %s, pruned %s (%.1f%%, target at most 35%%), fine-tuned with Adam state %s\n' \
	"$(size 1)" "$(size "$v")" \
	"$(awk -v a="$(size "$v")" -v b="$(size 1)" 'BEGIN { print 100 * a / b }')" \
	"$(size $((v + 1)))"

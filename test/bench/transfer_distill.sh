#!/usr/bin/env bash
# Transfer learning and knowledge distillation on Fashion-MNIST, 3 seeds.
#
# Transfer: the seed CNN (5-way head) trained on every training row of classes 0-4
# (--base-epochs epochs); then, on the first --rows training rows of
# classes 5-9 (as labels 0-4), --epochs epochs of
#   transfer  its frozen convolutions (base_layers 8: up to the flatten)
#             followed by a new dense 64 relu + dense 5 softmax head, and
#   scratch   the same architecture, every layer freshly initialised;
# accuracy on the test rows of classes 5-9.
#
# Distillation: the seed CNN trained on all 60,000 rows for --teacher-epochs
# epochs is the teacher; a 784-32-10 MLP trained for --student-epochs
# epochs with it (temperature 4, distill_alpha 0.1) and without it, on the
# same rows with the same seeds; accuracy on the 10,000 test rows.
#
# Run as root; uses the installed build and a throwaway cluster.
#
# usage: bash test/bench/transfer_distill.sh [--port N] [--rows N]
#            [--epochs N] [--base-epochs N] [--teacher-epochs N]
#            [--student-epochs N] [--threads N] [--only transfer|distill]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5485
rows=500
epochs=20
base_epochs=5
teacher_epochs=5
student_epochs=5
threads=2
only=
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--base-epochs) base_epochs=$2; shift 2 ;;
	--teacher-epochs) teacher_epochs=$2; shift 2 ;;
	--student-epochs) student_epochs=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
nnpg_bench_cluster "$port"
export PGOPTIONS="-c nnpg.threads=$threads -c client_min_messages=warning"

q() { "$PGBIN/psql" -X -q -At -F ' ' -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea >/dev/null

convs='{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "reshape", "shape": [28, 28, 1]},
  {"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"}'
head5='{"type": "dense", "units": 64, "activation": "relu"},
  {"type": "dense", "units": 5, "activation": "softmax"}'
head10='{"type": "dense", "units": 64, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}'
mlp='[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "dense", "units": 32, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}]'

# accuracy MODEL QUERY
accuracy() {
	q -c "SELECT round(value::numeric, 4) FROM nn_evaluate('$1', \$\$$2\$\$)
	      WHERE metric = 'accuracy'"
}

# ---------- transfer ----------
transfer() {
few="SELECT img, label - 5 FROM fashion_train WHERE label >= 5 ORDER BY id LIMIT $rows"
test_hi="SELECT img, label - 5 FROM fashion_test WHERE label >= 5"
t0=$SECONDS
q -c "SELECT nn_create('td_base', '[$convs, $head5]', input_shape => '{784}', seed => 1,
                       replace => true)" >/dev/null
q -c "SELECT count(*) FROM nn_fit('td_base', 'SELECT img, label FROM fashion_train WHERE label < 5',
                                  epochs => $base_epochs, batch_size => 64, seed => 1,
                                  verbose => false)" >/dev/null
printf 'base: classes 0-4, %s epochs, %ss; test accuracy on classes 0-4: %s\n' \
	"$base_epochs" $((SECONDS - t0)) \
	"$(accuracy td_base "SELECT img, label FROM fashion_test WHERE label < 5")"
printf '%-10s %4s %9s\n' variant seed test_acc
for seed in 1 2 3; do
	q -c "SELECT nn_create('td_transfer', '[$head5]', base => 'td_base', base_layers => 8,
	                       seed => $seed, replace => true)" >/dev/null
	q -c "SELECT nn_create('td_scratch', '[$convs, $head5]', input_shape => '{784}',
	                       seed => $seed, replace => true)" >/dev/null
	for variant in transfer scratch; do
		q -c "SELECT count(*) FROM nn_fit('td_$variant', \$\$$few\$\$, epochs => $epochs,
		                                  batch_size => 32, seed => $seed,
		                                  verbose => false)" >/dev/null
		printf '%-10s %4s %9s\n' "$variant" "$seed" "$(accuracy "td_$variant" "$test_hi")"
	done
done

}

# ---------- distillation ----------
distill() {
all="SELECT img, label FROM fashion_train"
test_all="SELECT img, label FROM fashion_test"
t0=$SECONDS
q -c "SELECT nn_create('td_teacher', '[$convs, $head10]', input_shape => '{784}', seed => 1,
                       replace => true)" >/dev/null
q -c "SELECT count(*) FROM nn_fit('td_teacher', '$all', epochs => $teacher_epochs,
                                  batch_size => 64, seed => 1, verbose => false)" >/dev/null
printf 'teacher: seed CNN, %s epochs, %ss; test accuracy %s\n' "$teacher_epochs" \
	$((SECONDS - t0)) "$(accuracy td_teacher "$test_all")"
printf '%-10s %4s %9s %8s\n' student seed test_acc seconds
for seed in 1 2 3; do
	for variant in distilled labels; do
		opts='{}'
		[ "$variant" = distilled ] && opts='{"teacher": "td_teacher"}'
		q -c "SELECT nn_create('td_$variant', '$mlp', input_shape => '{784}', seed => $seed,
		                       replace => true)" >/dev/null
		t0=$SECONDS
		q -c "SELECT count(*) FROM nn_fit('td_$variant', '$all', epochs => $student_epochs,
		                                  batch_size => 64, seed => $seed,
		                                  options => '$opts', verbose => false)" >/dev/null
		printf '%-10s %4s %9s %8s\n' "$variant" "$seed" \
			"$(accuracy "td_$variant" "$test_all")" $((SECONDS - t0))
	done
done
}

[ "$only" = distill ] || transfer
[ "$only" = transfer ] || distill

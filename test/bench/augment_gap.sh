#!/usr/bin/env bash
# Does augmentation narrow the gap between training and test accuracy?
# The seed CNN trained for 20 epochs on the first 2,000 Fashion-MNIST
# training rows, with and without random_flip + random_translation (0.1) +
# random_rotation (0.05) in front of its convolutions, for 3 seeds each;
# accuracy on those 2,000 rows and on the 10,000 test rows.  Run as root;
# uses the installed build and a throwaway cluster.
#
# usage: bash test/bench/augment_gap.sh [--port N] [--epochs N] [--rows N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5486
epochs=20
rows=2000
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
nnpg_bench_cluster "$port"

"$PGBIN/psql" -X -q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea >/dev/null

cnn='{"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense", "units": 64, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}'
head='{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "reshape", "shape": [28, 28, 1]}'
aug='{"type": "random_flip"},
  {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1},
  {"type": "random_rotation", "factor": 0.05}'

printf '%-10s %4s %9s %9s %6s\n' variant seed train_acc test_acc gap
for variant in plain augmented; do
	layers="[$head, $cnn]"
	[ "$variant" = augmented ] && layers="[$head, $aug, $cnn]"
	for seed in 1 2 3; do
		"$PGBIN/psql" -X -q -At -F ' ' -v ON_ERROR_STOP=1 <<SQL | {
SET client_min_messages = warning;
SELECT nn_create('gap', '$layers', input_shape => '{784}', seed => $seed,
                 replace => true);
SELECT count(*) FROM nn_fit('gap', 'SELECT img, label FROM fashion_train WHERE id <= $rows',
                            epochs => $epochs, batch_size => 64, seed => $seed,
                            verbose => false);
SELECT tr, te, tr - te
FROM (SELECT (SELECT value FROM nn_evaluate('gap', 'SELECT img, label FROM fashion_train WHERE id <= $rows')
              WHERE metric = 'accuracy') AS tr,
             (SELECT value FROM nn_evaluate('gap', 'SELECT img, label FROM fashion_test')
              WHERE metric = 'accuracy') AS te) a;
SQL
			read -r _ && read -r _ && read -r tr te gap
			printf '%-10s %4s %9.4f %9.4f %6.4f\n' "$variant" "$seed" "$tr" "$te" "$gap"
		}
	done
done

#!/usr/bin/env bash
# nnpg in one command: install, start a private server, load Fashion-MNIST,
# train the example CNN inside PostgreSQL and evaluate it on the test set.
#
# usage: scripts/demo.sh [--epochs N] [--rows N] [--port N]
#   --epochs N  training epochs (default 5)
#   --rows N    load only the first N rows of each split, for a quick run
#   --port N    the cluster's port (default 5499)
# Installing packages, building and starting the server print one line per
# step; their full output goes to a log file (build/demo.log in the
# repository, or NNPG_DEMO_LOG), whose name and last lines are printed if a
# step fails. The server keeps running afterwards; the last lines say how to
# connect to it with psql and how to stop it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

epochs=5
rows=
while [ "$#" -gt 0 ]; do
	case "$1" in
	--epochs) epochs=${2:?--epochs needs a number}; shift 2 ;;
	--rows) rows=${2:?--rows needs a number}; shift 2 ;;
	--port) NNPG_PORT=${2:?--port needs a number}; shift 2 ;;
	-h | --help)
		nnpg_usage "$0"
		exit 0
		;;
	*) nnpg_die "unrecognized option \"$1\" (try --help)" ;;
	esac
done
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || nnpg_die "--epochs must be a positive number"
[[ -z "$rows" || "$rows" =~ ^[1-9][0-9]*$ ]] || nnpg_die "--rows must be a positive number"
export NNPG_PORT
cluster=(bash "$NNPG_ROOT/scripts/cluster.sh" -p "$NNPG_PORT")

# The log of the quiet steps: a fresh one per run.
log=${NNPG_DEMO_LOG:-$NNPG_ROOT/build/demo.log}
if ! { mkdir -p "$(dirname "$log")" && : >"$log"; } 2>/dev/null; then
	log=$(mktemp /tmp/nnpg-demo.XXXXXX.log)
fi
printf '# scripts/demo.sh, %s\n' "$(date)" >>"$log"

# quietly CMD...: run CMD with all its output in the log, showing only its
# progress lines ("==> ...", from nnpg_log); if it fails, show where the
# log is and how it ends, and stop.
quietly() {
	local rc
	printf '\n#### %s\n' "$*" >>"$log"
	set +e
	"$@" 2>&1 | tee -a "$log" | { grep --line-buffered '^==> ' || true; } >&2
	rc=${PIPESTATUS[0]}
	set -e
	if [ "$rc" != 0 ]; then
		printf '\nerror: "%s" failed (exit %s); the last 30 lines of its log %s:\n\n' \
			"$*" "$rc" "$log" >&2
		tail -n 30 "$log" | sed 's/^/    /' >&2
		printf '\n' >&2
		nnpg_die "the demo stopped; the full output is in $log"
	fi
}

nnpg_log "installing, building and starting the server (output: $log)"
quietly bash "$NNPG_ROOT/scripts/setup.sh"
quietly "${cluster[@]}" start
eval "$("${cluster[@]}" env)"
export PGHOST PGPORT PGUSER PGDATABASE

nnpg_log "loading Fashion-MNIST${rows:+ (first $rows rows of each split)}"
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" ${rows:+--limit "$rows"}

psql=("$PGBIN/psql" -X -v ON_ERROR_STOP=1)

nnpg_log "creating the model and training it for $epochs epochs (one NOTICE per epoch)"
"${psql[@]}" <<EOF
CREATE EXTENSION IF NOT EXISTS nnpg;
\\echo
\\echo The pixels are stored as bytes (bytea), so the model starts by scaling them to [0, 1].
SELECT nn_create('fashion_cnn', '[
  {"type": "rescale",   "scale": 0.00392156862745098},
  {"type": "reshape",   "shape": [28, 28, 1]},
  {"type": "conv2d",    "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense",     "units": 64, "activation": "relu"},
  {"type": "dense",     "units": 10, "activation": "softmax"}
]', input_shape => '{784}', seed => 42, replace => true);

SELECT * FROM nn_summary('fashion_cnn');

\\timing on
SELECT epoch, round(loss::numeric, 4) AS loss, round(accuracy::numeric, 4) AS accuracy,
       round(val_loss::numeric, 4) AS val_loss,
       round(val_accuracy::numeric, 4) AS val_accuracy,
       round(seconds::numeric, 1) AS seconds
FROM nn_fit('fashion_cnn', 'SELECT img, label FROM fashion_train',
            epochs => $epochs, batch_size => 64, optimizer => 'adam',
            learning_rate => 0.001, seed => 42,
            validation_query => 'SELECT img, label FROM fashion_test');
\\timing off

\\echo Evaluation on the test set:
SELECT metric,
       CASE WHEN metric = 'n' THEN value::bigint::text
            ELSE round(value::numeric, 4)::text END AS value
FROM nn_evaluate('fashion_cnn', 'SELECT img, label FROM fashion_test');

\\echo Confusion matrix on the test set (rows: true class, columns: predicted class):
WITH cm AS (
    SELECT * FROM nn_confusion_matrix('fashion_cnn',
                                      'SELECT img, label FROM fashion_test')
), classes(k, name) AS (
    VALUES (0, 'T-shirt/top'), (1, 'Trouser'), (2, 'Pullover'), (3, 'Dress'),
           (4, 'Coat'), (5, 'Sandal'), (6, 'Shirt'), (7, 'Sneaker'),
           (8, 'Bag'), (9, 'Ankle boot')
)
SELECT c.k AS actual, c.name,
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 0), 0) AS "0",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 1), 0) AS "1",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 2), 0) AS "2",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 3), 0) AS "3",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 4), 0) AS "4",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 5), 0) AS "5",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 6), 0) AS "6",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 7), 0) AS "7",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 8), 0) AS "8",
       coalesce(sum(cm.count) FILTER (WHERE cm.predicted = 9), 0) AS "9"
FROM classes AS c LEFT JOIN cm ON cm.actual = c.k
GROUP BY c.k, c.name
ORDER BY c.k;

\\echo A few test images and their predicted class:
SELECT id, label AS actual, nn_classify('fashion_cnn', img) AS predicted
FROM fashion_test ORDER BY id LIMIT 5;
EOF

port_opt=
[ "$NNPG_PORT" = 5499 ] || port_opt=" -p $NNPG_PORT"
cat <<EOF

The server is still running. To connect to it with psql:

$("${cluster[@]}" env | sed 's/^/    /')
    psql

or, from the repository root:  eval "\$(scripts/cluster.sh$port_opt env)"; psql
Try: SELECT * FROM nn_models;  SELECT * FROM nn_history('fashion_cnn');
Save the learning curves as an image to open in a browser:
    psql -Atc "SELECT nn_plot('fashion_cnn')" > curves.svg
Watch a running fit from another session:  SELECT * FROM nn_progress;

To stop it and delete its data:  scripts/cluster.sh$port_opt stop
EOF

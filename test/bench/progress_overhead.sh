#!/usr/bin/env bash
# What does nn_progress tracking cost a fit?  The seed MLP (rescale,
# flatten, dense 128 relu, dropout 0.2, dense 10 softmax; batch 32) trains
# one epoch on the 60,000 Fashion-MNIST training rows (cached bytea),
# alternately with nnpg.track_progress on and off, --rounds times each
# (after one warm-up epoch each), in one session per epoch on a cluster
# that preloads nnpg.  Prints every epoch's seconds (nn_fit's own figure),
# the medians and their ratio.  Run as root; uses the installed build.
#
# usage: bash test/bench/progress_overhead.sh [--port N] [--rounds N] [--threads N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=5484
rounds=7
threads=2
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) nnpg_die "unrecognized option \"$1\"" ;;
	esac
done
nnpg_bench_cluster "$port"

q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS nnpg" >/dev/null
[ "$(q -c "SHOW shared_preload_libraries")" = nnpg ] ||
	nnpg_die "the cluster does not preload nnpg"
/usr/bin/python3 "$NNPG_ROOT/scripts/load_fashion.py" --layouts bytea \
	--splits train >/dev/null
q -c "SELECT nn_create('po', '[{\"type\": \"rescale\", \"scale\": 0.00392156862745098},
  {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 128, \"activation\": \"relu\"},
  {\"type\": \"dropout\", \"rate\": 0.2},
  {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]',
  input_shape => '{784}', seed => 1)" >/dev/null

# epoch on|off: one epoch's seconds with tracking on or off.
epoch() {
	q -c "SET nnpg.threads = $threads" -c "SET nnpg.track_progress = $1" \
		-c "SELECT seconds FROM nn_fit('po', 'SELECT img, label FROM fashion_train',
		    epochs => 1, batch_size => 32, seed => 1, verbose => false)"
}
epoch on >/dev/null
epoch off >/dev/null
on=()
off=()
printf '%5s %10s %10s\n' round on_s off_s
for r in $(seq 1 "$rounds"); do
	a=$(epoch on)
	b=$(epoch off)
	on+=("$a")
	off+=("$b")
	printf '%5s %10.3f %10.3f\n' "$r" "$a" "$b"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_on=$(median "${on[@]}")
m_off=$(median "${off[@]}")
printf 'median epoch: tracking on %.3f s, off %.3f s, ratio on/off %.3f\n' \
	"$m_on" "$m_off" "$(awk -v a="$m_on" -v b="$m_off" 'BEGIN { print a / b }')"

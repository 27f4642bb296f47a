#!/usr/bin/env bash
# Memory of the per-backend model cache (nnpg.model_cache_mb) under load:
# BACKENDS concurrent sessions each predict with MODELS models in turn, one
# statement per model, for ROUNDS rounds; once with a large cache and once
# with a small bound. Prints every backend's peak memory, the median and
# maximum per setting, and whether both settings predicted the same.
#
# usage: bash test/bench/cache_memory.sh [--port N] [--keep] [OPTIONS]
#   --port N       port of the throwaway cluster (default 5487, or NNPG_BENCH_PORT)
#   --keep         leave the cluster running afterwards (default: remove it)
#   --backends N   concurrent sessions (default 20)
#   --models N     models each session uses in turn (default 5)
#   --rounds N     rounds over the models (default 5)
#   --rows N       rows predicted per statement (default 16)
#   --hidden LIST  hidden layer widths of the 784-input, 10-class MLPs
#                  (default 1024,1024,512: 2.38M parameters; 512,512 is 0.67M)
#   --large MB     the generous setting of nnpg.model_cache_mb (default 4096)
#   --small MB     the bound (default 16)
# Each model is made with nn_create (its own seed) and one epoch of nn_fit
# with Adam on random rows, so its stored bytes include the optimizer state.
# Uses the installed build (scripts/setup.sh installs it). Run as root: it
# reads /proc/<backend pid>/status of the server's backends.
#
# Columns, per backend, in MB: vm_hwm is VmHWM, the peak resident set read
# at the end of the session's work (it includes the shared buffers the
# backend touched, mostly the model bytes it read); shmem_end is RssShmem
# then (shared pages stay mapped, so it bounds that part of the peak);
# anon_peak is the largest RssAnon (private memory) seen by sampling every
# 0.05 s and at the end; cache_end is what the model cache holds at the
# end (its memory contexts). The exit code is non-zero when a session
# failed or the two settings did not predict bit for bit the same.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

port=${NNPG_BENCH_PORT:-5487}
keep=0
backends=20
models=5
rounds=5
rows=16
hidden=1024,1024,512
large=4096
small=16
while [ "$#" -gt 0 ]; do
	case "$1" in
	--port) port=${2:?--port needs a number}; shift 2 ;;
	--keep) keep=1; shift ;;
	--backends) backends=${2:?}; shift 2 ;;
	--models) models=${2:?}; shift 2 ;;
	--rounds) rounds=${2:?}; shift 2 ;;
	--rows) rows=${2:?}; shift 2 ;;
	--hidden) hidden=${2:?}; shift 2 ;;
	--large) large=${2:?}; shift 2 ;;
	--small) small=${2:?}; shift 2 ;;
	-h | --help) nnpg_usage "$0"; exit 0 ;;
	*) nnpg_die "unknown option $1 (see --help)" ;;
	esac
done
for v in "$port" "$backends" "$models" "$rounds" "$rows" "$large" "$small"; do
	[[ "$v" =~ ^[0-9]+$ ]] || nnpg_die "\"$v\" is not a number"
done
[[ "$hidden" =~ ^[0-9]+(,[0-9]+)*$ ]] || nnpg_die "--hidden takes widths like 512,512"
[ "$(id -u)" = 0 ] || nnpg_die "run as root: the backends' /proc files are read"

export NNPG_PORT=$port
cluster=(bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port")
if "${cluster[@]}" status >/dev/null 2>&1; then
	nnpg_die "a cluster already runs on port $port; stop it (scripts/cluster.sh -p $port stop) or pick --port"
fi
tmp=$(mktemp -d /tmp/nnpg-cache-memory.XXXXXX)
cleanup() {
	local pids
	pids=$(jobs -p)
	# shellcheck disable=SC2086 # one pid per word
	[ -z "$pids" ] || kill $pids 2>/dev/null
	wait 2>/dev/null
	if [ "$keep" = 0 ]; then
		"${cluster[@]}" stop >/dev/null 2>&1 || true
	else
		nnpg_log "cluster kept: eval \"\$(scripts/cluster.sh -p $port env)\"; psql"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${cluster[@]}" start || nnpg_die "the cluster did not start"
eval "$("${cluster[@]}" env)"
export PGHOST PGPORT PGUSER PGDATABASE
psql_q() {
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# The models: 784 inputs, the hidden widths, 10 softmax outputs.
layers=$(awk -v h="$hidden" 'BEGIN {
	n = split(h, w, ",")
	s = "["
	for (i = 1; i <= n; i++)
		s = s sprintf("{\"type\": \"dense\", \"units\": %d, \"activation\": \"relu\"}, ", w[i])
	print s "{\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]"
}')
nnpg_log "making $models models ($hidden hidden units) on 256 random rows"
psql_q -c "CREATE EXTENSION nnpg" >/dev/null || nnpg_die "CREATE EXTENSION nnpg failed"
psql_q >/dev/null <<EOF || nnpg_die "could not make the models"
CREATE TABLE bench_rows AS
SELECT i AS id,
       ARRAY(SELECT ((hashint8(i * 1000 + j) & 255) / 255.0)::real
             FROM generate_series(1, 784) j WHERE i IS NOT NULL) AS x,
       i % 10 AS y
FROM generate_series(1, 256) i;
SELECT nn_create('bench_m' || k, '$layers', '{784}', k) FROM generate_series(1, $models) k;
SELECT count(*) FROM generate_series(1, $models) k,
       LATERAL nn_fit('bench_m' || k, 'SELECT x, y FROM bench_rows', epochs => 1,
                      batch_size => 32, optimizer => 'adam', seed => k, verbose => false);
EOF
read -r params stored < <(psql_q -F ' ' -c "SELECT max(params), round(avg(pg_column_size(weights)) / 1048576.0, 1)
	FROM nnpg.models WHERE version = 2")
nnpg_log "each model: $params parameters, $stored MB stored (weights and Adam state)"

# session SETTING MB I: the psql script of backend I. It reports its pid,
# one "digest ROUND MODEL MD5" line per statement, the cache's bytes, and
# copies its /proc status while the backend is still alive.
session() {
	local s=$1 mb=$2 i=$3 r k
	cat <<EOF
SET nnpg.threads = 1;
SET nnpg.model_cache_mb = $mb;
SELECT pg_backend_pid() AS pid \\gset
\\setenv NNPG_BENCH_PID :pid
\\! echo "\$NNPG_BENCH_PID" > $tmp/$s.$i.pid
EOF
	for r in $(seq 1 "$rounds"); do
		for k in $(seq 1 "$models"); do
			echo "SELECT 'digest', $r, $k, md5(string_agg(nn_predict('bench_m$k', x)::text, ';' ORDER BY id)) FROM bench_rows WHERE id <= $rows;"
		done
	done
	cat <<EOF
SELECT 'cache', coalesce(sum(total_bytes), 0) FROM pg_backend_memory_contexts WHERE name = 'nnpg cached model';
\\! cat /proc/\$NNPG_BENCH_PID/status > $tmp/$s.$i.status.part && mv $tmp/$s.$i.status.part $tmp/$s.$i.status
EOF
}

# sample_anon SETTING: the largest RssAnon (kB) of each backend still
# working, every 0.05 s until SETTING.done appears; writes SETTING.anon.
sample_anon() {
	local s=$1 i p kb files
	local -A pid=() who=() peak=()
	while [ ! -e "$tmp/$s.done" ]; do
		files=()
		for ((i = 1; i <= backends; i++)); do
			if [ -z "${pid[$i]:-}" ] && [ -s "$tmp/$s.$i.pid" ]; then
				read -r p <"$tmp/$s.$i.pid"
				pid[$i]=$p
				who[$p]=$i
			fi
			[ -n "${pid[$i]:-}" ] && [ ! -e "$tmp/$s.$i.status" ] &&
				files+=("/proc/${pid[$i]}/status")
		done
		if [ "${#files[@]}" -gt 0 ]; then
			# "/proc/PID/status:RssAnon:   KB kB"; a backend may just have gone
			while IFS=$': \t' read -r f _ kb _; do
				p=${f#/proc/}
				i=${who[${p%/status}]}
				[ "$kb" -gt "${peak[$i]:-0}" ] && peak[$i]=$kb
			done < <(grep -H '^RssAnon:' "${files[@]}" 2>/dev/null)
		fi
		sleep 0.05
	done
	for i in "${!peak[@]}"; do
		echo "$i ${peak[$i]}"
	done >"$tmp/$s.anon"
}

# run SETTING MB: all sessions at once with nnpg.model_cache_mb = MB.
run() {
	local s=$1 mb=$2 i t0 failed=0 sampler
	local -a pids=()
	nnpg_log "$s: $backends sessions x $rounds rounds x $models models, nnpg.model_cache_mb = $mb"
	for i in $(seq 1 "$backends"); do
		session "$s" "$mb" "$i" >"$tmp/$s.$i.sql"
	done
	sample_anon "$s" &
	sampler=$!
	t0=$(date +%s.%N)
	for i in $(seq 1 "$backends"); do
		psql_q -F ' ' -f "$tmp/$s.$i.sql" >"$tmp/$s.$i.out" 2>"$tmp/$s.$i.err" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		if ! wait "${pids[$i]}"; then
			failed=1
			echo "session $((i + 1)) of $s failed:" >&2
			head -n 5 "$tmp/$s.$((i + 1)).err" >&2
		fi
	done
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }' >"$tmp/$s.seconds"
	touch "$tmp/$s.done"
	wait "$sampler"
	return "$failed"
}

status=0
run large "$large" || status=1
run small "$small" || status=1

# Per-backend rows, then the summary; figures in MB.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
field() { awk -v f="$1:" '$1 == f { print $2 }' "$2" 2>/dev/null; }
printf '\n%-7s %7s %8s %8s %10s %10s %10s\n' setting backend pid vm_hwm shmem_end anon_peak cache_end
for s in large small; do
	for i in $(seq 1 "$backends"); do
		st=$tmp/$s.$i.status
		[ -f "$st" ] || { printf '%-7s %7d %8s %8s\n' "$s" "$i" - "no status"; continue; }
		# the samples, or the end of the work if that was higher
		anon=$(awk -v i="$i" '$1 == i { print $2 }' "$tmp/$s.anon")
		end=$(field RssAnon "$st")
		[ "${end:-0}" -gt "${anon:-0}" ] && anon=$end
		cache=$(awk '$1 == "cache" { print $2 }' "$tmp/$s.$i.out")
		printf '%-7s %7d %8s %8s %10s %10s %10s\n' "$s" "$i" "$(cat "$tmp/$s.$i.pid")" \
			"$(mb "$(field VmHWM "$st")")" "$(mb "$(field RssShmem "$st")")" \
			"$(mb "${anon:-0}")" "$(awk -v b="${cache:-0}" 'BEGIN { printf "%.1f", b / 1048576 }')"
	done >"$tmp/$s.rows"
	cat "$tmp/$s.rows"
done

# median and max of column C (1-based) of a file of numbers
stats() {
	awk -v c="$1" '$c ~ /^[0-9.]+$/ { print $c }' "$2" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- -"; exit }
			m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.1f %.1f\n", m, v[NR]
		}'
}
printf '\nmodels: %d x %s parameters (784-%s-10), %s MB stored each; %d backends, %d rounds, %d rows per statement\n' \
	"$models" "$params" "${hidden//,/-}" "$stored" "$backends" "$rounds" "$rows"
printf '%-7s %9s %15s %15s %15s %15s %9s\n' setting cache_mb "vm_hwm med/max" "shmem_end med" \
	"anon_peak med/max" "cache_end med/max" seconds
for s in large small; do
	# median and max of vm_hwm, shmem_end, anon_peak, cache_end
	read -r -a f <<<"$(stats 4 "$tmp/$s.rows") $(stats 5 "$tmp/$s.rows") $(stats 6 "$tmp/$s.rows") $(stats 7 "$tmp/$s.rows")"
	[ "$s" = large ] && lim=$large || lim=$small
	printf '%-7s %9s %15s %15s %15s %15s %9s\n' "$s" "$lim" "${f[0]} / ${f[1]}" "${f[2]}" \
		"${f[4]} / ${f[5]}" "${f[6]} / ${f[7]}" "$(cat "$tmp/$s.seconds")"
done

# The same answers everywhere: one digest per model over every session,
# round and setting.
digests=$(cat "$tmp"/large.*.out "$tmp"/small.*.out | awk '$1 == "digest"' | wc -l)
want=$((2 * backends * rounds * models))
distinct=$(cat "$tmp"/large.*.out "$tmp"/small.*.out | awk '$1 == "digest" { print $3, $4 }' | sort -u | wc -l)
per_model=$(cat "$tmp"/large.*.out "$tmp"/small.*.out | awk '$1 == "digest" { print $4 }' | sort -u | wc -l)
if [ "$digests" = "$want" ] && [ "$distinct" = "$models" ] && [ "$per_model" = "$models" ]; then
	echo "predictions: the same in both settings ($digests statements, one digest per model, $models distinct models)"
else
	echo "predictions: DIFFER ($digests of $want statements, $distinct model/digest pairs for $models models, $per_model distinct digests)"
	status=1
fi
exit "$status"

#!/usr/bin/env bash
# A streaming hot standby of the test cluster: models written on the primary
# predict, evaluate and describe themselves identically there, and nn_fit,
# nn_create, nn_drop, nn_import, nn_prune and nn_quantize are refused at
# once (25006, with a hint), as nn_fit is in a read-only transaction on the
# primary.
#
# The primary must be able to stream: when its wal_level, max_wal_senders or
# pg_hba.conf do not allow it, they are changed for the test (restarting it)
# and restored at exit. The standby is a pg_basebackup in a temporary
# directory, run as the OS user owning the primary's data directory, on the
# Unix socket only (port NNPG_STANDBY_PORT, default PGPORT + 1).
. "$(dirname "$0")/lib.sh"

SB_PORT=${NNPG_STANDBY_PORT:-$((${PGPORT:-5432} + 1))}
SB=	# the standby's directory: data/, socket, standby.log

it_setup_db

PRIMARY_DATA=$(it_psql -c "SHOW data_directory") &&
	PRIMARY_HBA=$(it_psql -c "SHOW hba_file") &&
	OWNER=$(stat -c %U "$PRIMARY_DATA") ||
	{ it_fail "locate the primary's data directory"; it_finish; }

# The postmaster's log file and OpenBLAS/OpenMP settings, so that a restarted
# primary and the standby compute with the same ones.
pm=$(head -n 1 "$PRIMARY_DATA/postmaster.pid")
PRIMARY_LOG=$(readlink "/proc/$pm/fd/2")
[ -f "$PRIMARY_LOG" ] || PRIMARY_LOG=/dev/null
PM_ENV=()
while IFS= read -r -d '' kv; do
	case $kv in OPENBLAS_* | OMP_*) PM_ENV+=("$kv") ;; esac
done <"/proc/$pm/environ"

# as_owner CMD...: run CMD as the owner of the primary's data directory.
as_owner() {
	local run=()
	[ "$(id -u)" = 0 ] && run=(runuser -u "$OWNER" --)
	(cd / && "${run[@]}" env HOME="${SB:-/}" "${PM_ENV[@]}" "$@")
}

# sb_psql ARGS...: it_psql against the standby.
sb_psql() {
	it_psql -h "$SB" -p "$SB_PORT" "$@"
}

restarted=0
restore_primary() {
	cat "$IT_TMP/auto.conf" >"$PRIMARY_DATA/postgresql.auto.conf"
	cat "$IT_TMP/pg_hba.conf" >"$PRIMARY_HBA"
	if [ "$restarted" = 1 ]; then
		as_owner "$PGBIN/pg_ctl" -D "$PRIMARY_DATA" -l "$PRIMARY_LOG" \
			-m fast -w -t 60 restart
	else
		it_psql -d "$IT_ADMIN_DB" -c "SELECT pg_reload_conf()"
	fi
}
stop_standby() {
	[ -n "$SB" ] || return 0
	[ -f "$SB/data/postmaster.pid" ] &&
		as_owner "$PGBIN/pg_ctl" -D "$SB/data" -m immediate -w -t 60 stop
	rm -rf -- "$SB"
}

# 1. Let the primary stream: WAL for replicas, senders for pg_basebackup
# (2) and the standby (1), and replication connections on the local socket.
cp "$PRIMARY_DATA/postgresql.auto.conf" "$IT_TMP/auto.conf" &&
	cp "$PRIMARY_HBA" "$IT_TMP/pg_hba.conf" ||
	{ it_fail "save the primary's configuration"; it_finish; }
IT_CLEANUP+=(stop_standby restore_primary)
settings=$(it_psql -F ' ' -c "SELECT current_setting('wal_level'),
	current_setting('max_wal_senders')::int,
	(SELECT count(*) FROM pg_hba_file_rules
	 WHERE type = 'local' AND database @> '{replication}')")
read -r wal_level senders hba_rules <<<"$settings"
# keep the WAL the standby may still need past a checkpoint
it_psql -c "ALTER SYSTEM SET wal_keep_size = '64MB'" >/dev/null
if [ "$hba_rules" = 0 ]; then
	printf '\n# %s: replication over the local socket\nlocal replication all trust\n' \
		"$IT_NAME" >>"$PRIMARY_HBA"
fi
if [ "$wal_level" = minimal ] || [ "$senders" -lt 4 ]; then
	[ "$wal_level" = minimal ] &&
		it_psql -c "ALTER SYSTEM SET wal_level = replica" >/dev/null
	[ "$senders" -lt 4 ] &&
		it_psql -c "ALTER SYSTEM SET max_wal_senders = 4" >/dev/null
	restarted=1
	as_owner "$PGBIN/pg_ctl" -D "$PRIMARY_DATA" -l "$PRIMARY_LOG" \
		-m fast -w -t 60 restart >/dev/null ||
		{ it_fail "restart the primary with wal_level = replica"; it_finish; }
else
	it_psql -c "SELECT pg_reload_conf()" >/dev/null
fi

# 2. The standby: a base backup with standby.signal and primary_conninfo
# (-R), on its own socket directory and port.
SB=$(mktemp -d /tmp/nnpg-it-standby.XXXXXX) && chown "$OWNER:" "$SB" &&
	chmod 0755 "$SB" || { it_fail "make the standby's directory"; it_finish; }
if ! as_owner "$PGBIN/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" \
	-D "$SB/data" -X stream -R -c fast --no-sync >"$SB/basebackup.log" 2>&1; then
	sed 's/^/    | /' "$SB/basebackup.log"
	it_fail "pg_basebackup of the primary"
	it_finish
fi
cat >>"$SB/data/postgresql.conf" <<EOF

# --- $IT_NAME: the hot standby ---
port = $SB_PORT
unix_socket_directories = '$SB'
listen_addresses = ''
hot_standby = on
shared_buffers = 32MB
EOF
if ! as_owner "$PGBIN/pg_ctl" -D "$SB/data" -l "$SB/standby.log" -w -t 60 \
	start >/dev/null 2>&1; then
	tail -n 20 "$SB/standby.log" | sed 's/^/    | /'
	it_fail "the standby starts"
	it_finish
fi
it_expect_value t "the standby runs in recovery" -h "$SB" -p "$SB_PORT" -- \
	"SELECT pg_is_in_recovery()"

# 3. On the primary: a dense model and a small CNN, created and trained
# with fixed seeds.
it_make_data it_data 200
it_psql -c "SELECT setseed(0.17)" -c "
CREATE TABLE it_img AS
SELECT id, x, (x[10] + x[27] > 1)::int + (x[40] > 0.5)::int AS label
FROM (SELECT i AS id,
             ARRAY(SELECT random()::real FROM generate_series(1, 64)
                   WHERE i IS NOT NULL) AS x
      FROM generate_series(1, 150) AS i) AS s" >/dev/null ||
	{ it_fail "create it_img"; it_finish; }
cnn='[{"type": "reshape", "shape": [8, 8, 1]},
 {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
 {"type": "maxpool2d", "pool_size": 2},
 {"type": "flatten"},
 {"type": "dense", "units": 3, "activation": "softmax"}]'
it_expect_value 1 "create the dense model" -- \
	"SELECT nn_create('dense_m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"
it_expect_value 1 "create the CNN" -- \
	"SELECT nn_create('cnn_m', '$cnn', input_shape => '{64}', seed => 11)"
for m in dense_m:it_data cnn_m:it_img; do
	it_expect_value 2 "train ${m%%:*} on the primary" -- \
		"SELECT count(*) FROM nn_fit('${m%%:*}', 'SELECT x, label FROM ${m#*:}',
			epochs => 2, batch_size => 20, seed => 1, verbose => false)"
done

# 4. Wait until the standby has replayed every write so far.
lsn=$(it_psql -c "SELECT pg_current_wal_lsn()")
replayed=f
for _ in $(seq 1 300); do
	replayed=$(sb_psql -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")
	[ "$replayed" = t ] && break
	sleep 0.1
done
it_check_eq "the standby replays the primary's writes (up to $lsn)" "$replayed" t

# same DESC SQL: SQL succeeds on both servers with the same non-empty output.
same() {
	local p s prc src
	p=$(it_psql -c "$2" 2>&1)
	prc=$?
	s=$(sb_psql -c "$2" 2>&1)
	src=$?
	if [ "$prc" != 0 ] || [ "$src" != 0 ] || [ -z "$p" ]; then
		it_fail "$1: primary (exit $prc) or standby (exit $src) failed or gave nothing"
		printf 'primary: %s\nstandby: %s\n' "$p" "$s" | sed 's/^/    | /'
	elif [ "$p" = "$s" ]; then
		it_pass "$1 (same ${#p} characters)"
	else
		it_fail "$1: the primary and the standby differ"
		diff <(echo "$p") <(echo "$s") | head -n 20 | sed 's/^/    | /'
	fi
}

# 5. The same answers on the standby, to the last digit of the float text.
for m in dense_m:it_data cnn_m:it_img; do
	name=${m%%:*}
	t=${m#*:}
	same "$name: nn_predict on the standby" \
		"SELECT string_agg(nn_predict('$name', x)::text, ' ' ORDER BY id) FROM $t"
	same "$name: nn_classify on the standby" \
		"SELECT string_agg(nn_classify('$name', x)::text, ' ' ORDER BY id) FROM $t"
	same "$name: nn_predict_batch on the standby" \
		"SELECT string_agg(b::text, ' ' ORDER BY id)
		 FROM nn_predict_batch('$name', 'SELECT id, x FROM $t') AS b"
	same "$name: nn_evaluate on the standby" \
		"SELECT string_agg(metric || '=' || value, ' ' ORDER BY metric)
		 FROM nn_evaluate('$name', 'SELECT x, label FROM $t')"
	same "$name: nn_confusion_matrix on the standby" \
		"SELECT string_agg(c::text, ' ' ORDER BY actual, predicted)
		 FROM nn_confusion_matrix('$name', 'SELECT x, label FROM $t') AS c"
	same "$name: nn_summary on the standby" \
		"SELECT string_agg(s::text, ' ' ORDER BY layer) FROM nn_summary('$name') AS s"
	same "$name: nn_history on the standby" \
		"SELECT string_agg(h::text, ' ' ORDER BY version, epoch) FROM nn_history('$name') AS h"
	same "$name: nn_export on the standby" \
		"SELECT md5(nn_export('$name')) || ' ' || md5(nn_export('$name', 1))"
done
same "nn_models on the standby" \
	"SELECT string_agg(m::text, ' ' ORDER BY name, version) FROM nn_models AS m"

# refused DESC SECONDS SQL: on the standby SQL fails with 25006 and a hint,
# within SECONDS. The statement timeout only bounds a broken build.
refused() {
	local desc=$1 limit=$2 out t0 dt state
	t0=$(it_now)
	out=$(PGOPTIONS="${PGOPTIONS:-} -c statement_timeout=10s" \
		it_run_sql -h "$SB" -p "$SB_PORT" -v VERBOSITY=verbose -- "$3")
	dt=$(it_since "$t0")
	state=$(printf '%s\n' "$out" | sed -n 's/^SQLSTATE //p' | tail -n 1)
	if [ "$state" = 25006 ] && printf '%s\n' "$out" | grep -q '^HINT: .*primary'; then
		it_pass "$desc is refused on the standby (25006, with a hint)"
	else
		it_fail "$desc on the standby: expected 25006 and a HINT naming the primary, got ${state:-none}"
		printf '%s\n' "$out" | sed 's/^/    | /'
	fi
	if awk -v d="$dt" -v l="$limit" 'BEGIN { exit !(d < l) }'; then
		it_pass "$desc is refused at once (${dt}s < ${limit}s)"
	else
		it_fail "$desc took ${dt}s on the standby, limit ${limit}s"
	fi
}

# 6. Writes on the standby, refused before any work: this fit would read
# 200 million rows.
long_fit="SELECT count(*) FROM nn_fit('dense_m',
	'SELECT x, label FROM it_data, generate_series(1, 1000000) AS g',
	epochs => 1000, batch_size => 32, verbose => false)"
refused "nn_fit over 200 million rows" 0.5 "$long_fit"
refused "nn_create" 0.5 \
	"SELECT nn_create('new_m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"
refused "nn_drop" 0.5 "SELECT nn_drop('dense_m')"
refused "nn_import" 0.5 "SELECT nn_import('copy_m', nn_export('dense_m'))"
refused "nn_prune" 0.5 "SELECT nn_prune('dense_m', 0.5)"
refused "nn_quantize" 0.5 "SELECT nn_quantize('dense_m')"

# 7. On the primary, a read-only transaction refuses writes too.
it_expect_error 25006 "nn_fit in a read-only transaction on the primary" -- \
	"BEGIN READ ONLY; $long_fit"
it_expect_error 25006 "nn_create in a read-only transaction on the primary" -- \
	"BEGIN READ ONLY; SELECT nn_create('new_m', '$IT_LAYERS', input_shape => '{50}')"
it_check_eq "dense_m still has its 2 versions" "$(it_versions dense_m)" "2 2"
it_check_eq "cnn_m still has its 2 versions" "$(it_versions cnn_m)" "2 2"

it_finish

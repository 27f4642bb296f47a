#!/usr/bin/env bash
# A private, throwaway PostgreSQL 15 cluster for trying and testing nnpg.
#
# usage: scripts/cluster.sh [-p PORT] start|stop|status|env|psql [psql args]
#   start   create and start it (again, if a stale one is there)
#   stop    stop it and delete its directory
#   status  say whether it runs
#   env     print the PGHOST/PGPORT/PGUSER/PGDATABASE exports for a client:
#           eval "$(scripts/cluster.sh env)"
#   psql    run psql against it
#
# Everything lives in NNPG_CLUSTER_DIR (default /tmp/nnpg-cluster-PORT): the
# data directory, the Unix socket and server.log. The port (default 5499, or
# NNPG_PORT) only names the socket: the server does not listen on TCP at all,
# and the socket accepts local connections with trust authentication.
# PostgreSQL refuses to run as root, so under root the server runs as the
# system user NNPG_OS_USER (default nnpg, created if missing) and clients
# connect as the database superuser "postgres".
# nnpg is in shared_preload_libraries (for the nn_progress view) unless
# NNPG_PRELOAD=0.
#
# For other set-ups (scripts/citus.sh uses these), read at start only:
#   NNPG_PRELOAD_LIBS  replaces the shared_preload_libraries list, e.g.
#                      'citus,nnpg' (overrides NNPG_PRELOAD)
#   NNPG_EXTRA_CONF    lines appended to postgresql.conf after ours, so
#                      they win over the settings above
# Unset or empty, they change nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${1:-}" = -p ]; then
	NNPG_PORT=${2:?-p needs a port}
	shift 2
fi
[[ "$NNPG_PORT" =~ ^[0-9]+$ ]] || nnpg_die "bad port \"$NNPG_PORT\""

dir=${NNPG_CLUSTER_DIR:-/tmp/nnpg-cluster-$NNPG_PORT}
data=$dir/data
log=$dir/server.log
marker=$dir/.nnpg-cluster
dbuser=postgres	# not "nnpg": "$user" in search_path would then name the extension's schema
dbname=nnpg

if [ "$(id -u)" = 0 ]; then
	server_user=$NNPG_OS_USER
else
	server_user=$(id -un)
fi

# as_server CMD...: run CMD as the server's OS user, from a directory that
# user can read (the repository may not be readable by it), with the
# OpenBLAS settings passed through explicitly so the server inherits them.
as_server() {
	local run=()
	if [ "$(id -u)" = 0 ]; then
		run=(runuser -u "$server_user" --)
	fi
	(cd "$dir" && "${run[@]}" env HOME="$dir" \
		OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE" \
		OPENBLAS_L2_SIZE="$OPENBLAS_L2_SIZE" \
		"$@")
}

# running: true when a server answers on our data directory.
running() {
	[ -f "$data/PG_VERSION" ] && as_server "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# ensure_os_user: create the unprivileged system user the server runs as.
ensure_os_user() {
	[ "$(id -u)" = 0 ] || return 0
	id -u "$server_user" >/dev/null 2>&1 && return 0
	nnpg_log "creating system user $server_user"
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "nnpg test cluster" "$server_user"
}

# remove_dir: delete the cluster directory, but only one this script made.
remove_dir() {
	[ -e "$dir" ] || return 0
	[ -f "$marker" ] || nnpg_die "$dir exists but was not made by $0; not touching it"
	rm -rf "$dir"
}

# write_config: settings for a 2-core, 24 GB machine running one user's tests.
write_config() {
	local mem_kb cache_mb preload=nnpg
	[ "${NNPG_PRELOAD:-1}" = 0 ] && preload=
	[ -n "${NNPG_PRELOAD_LIBS:-}" ] && preload=$NNPG_PRELOAD_LIBS
	mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
	cache_mb=$((mem_kb / 1024 / 2))
	cat >>"$data/postgresql.conf" <<EOF

# --- nnpg throwaway cluster (scripts/cluster.sh) ---
listen_addresses = ''			# Unix socket only
port = $NNPG_PORT
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
max_connections = 50
shared_buffers = 256MB
work_mem = 64MB
maintenance_work_mem = 512MB
effective_cache_size = ${cache_mb}MB
max_worker_processes = 4
# nnpg's shared memory for the nn_progress view (NNPG_PRELOAD=0: none)
shared_preload_libraries = '$preload'
max_parallel_workers = 2
max_parallel_workers_per_gather = 2
# Throwaway data: skip durability for speed. A crashed backend is still
# recovered (restart_after_crash); only an OS crash could lose data.
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal			# COPY into a new table writes no WAL
max_wal_senders = 0
max_wal_size = 4GB
checkpoint_timeout = 30min
restart_after_crash = on
# Log to server.log (pg_ctl -l), in English, with the backend pid.
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
	if [ -n "${NNPG_EXTRA_CONF:-}" ]; then
		printf '\n# --- NNPG_EXTRA_CONF ---\n%s\n' "$NNPG_EXTRA_CONF" >>"$data/postgresql.conf"
	fi
	# Trust on the local socket only; nothing else may connect.
	cat >"$data/pg_hba.conf" <<EOF
# nnpg throwaway cluster: local socket, trust; no TCP (listen_addresses = '')
local all all trust
EOF
}

cmd_start() {
	if running; then
		nnpg_log "cluster already running in $dir (port $NNPG_PORT)"
		return 0
	fi
	ensure_os_user
	remove_dir
	mkdir -p "$dir"
	touch "$marker"
	chmod 0755 "$dir"
	chown "$server_user:" "$dir" "$marker"
	nnpg_log "initdb in $data (server runs as OS user $server_user)"
	as_server "$PGBIN/initdb" -D "$data" -U "$dbuser" -E UTF8 --locale=C \
		--auth-local=trust --auth-host=reject --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; nnpg_die "initdb failed"; }
	write_config
	nnpg_log "starting server on socket $dir/.s.PGSQL.$NNPG_PORT"
	if ! as_server "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 120 start >/dev/null; then
		tail -n 30 "$log" >&2 || true
		nnpg_die "server did not start (log: $log)"
	fi
	"$PGBIN/createdb" -h "$dir" -p "$NNPG_PORT" -U "$dbuser" "$dbname"
	nnpg_log "cluster ready; connect with: eval \"\$($0 -p $NNPG_PORT env)\"; psql"
}

cmd_stop() {
	if running; then
		nnpg_log "stopping cluster in $dir"
		as_server "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
			as_server "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null ||
			true
	fi
	running && nnpg_die "server in $dir would not stop"
	remove_dir
	nnpg_log "cluster on port $NNPG_PORT removed"
}

cmd_status() {
	if running; then
		echo "running: $dir (port $NNPG_PORT, log $log)"
	else
		echo "not running: $dir"
		return 3
	fi
}

cmd_env() {
	printf 'export PGHOST=%q\n' "$dir"
	printf 'export PGPORT=%q\n' "$NNPG_PORT"
	printf 'export PGUSER=%q\n' "$dbuser"
	printf 'export PGDATABASE=%q\n' "$dbname"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
psql)
	shift
	exec "$PGBIN/psql" -h "$dir" -p "$NNPG_PORT" -U "$dbuser" -d "$dbname" "$@"
	;;
*)
	nnpg_usage "$0" >&2
	exit 2
	;;
esac

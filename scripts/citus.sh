#!/usr/bin/env bash
# A Citus 12.1 cluster of throwaway nnpg servers on this machine: one
# coordinator and two worker nodes, for tests of distributed training.
#
# usage: scripts/citus.sh build [TARBALL] | start | stop | status | env | psql [psql args]
#   build   install Citus 12.1 into the PostgreSQL of PG_CONFIG, unless a
#           citus.so of version 12.1.x is there already. Installs the build
#           packages with apt-get if missing, and builds from TARBALL
#           (default NNPG_CITUS_TARBALL, else ../shared/vendor/
#           citus-12.1.12.tar.gz next to the repository). The built tree is
#           kept in NNPG_CITUS_CACHE (default /var/cache/nnpg/citus-SHA256,
#           SHA256 the tarball's), so the next build is only `make install`.
#   start   start the three nodes with scripts/cluster.sh (ports
#           NNPG_CITUS_PORT, default 5610, for the coordinator and the next
#           two for the workers; directories /tmp/nnpg-cluster-PORT), with
#           shared_preload_libraries = 'citus,nnpg'; create the extensions
#           citus and nnpg in database nnpg on every node and register the
#           coordinator and the workers. Needs `build` and nnpg installed.
#   stop    stop and remove the three nodes (also a partly started set)
#   status  say which nodes run
#   env     the PG* exports for the coordinator:
#           eval "$(scripts/citus.sh env)"
#   psql    psql on the coordinator
#
# The nodes reach each other over their Unix sockets: a node's name in
# pg_dist_node is its socket directory (e.g. /tmp/nnpg-cluster-5611), which
# libpq takes for a socket directory rather than a host name (a name that
# starts with "/"). So, as with scripts/cluster.sh, nothing listens on TCP
# and pg_hba.conf only trusts the local socket. Citus's connections of a node
# to itself (shard clean-up, rebalancer, ...) go to citus.local_hostname,
# here the node's own socket directory instead of "localhost". Citus's
# default citus.node_conninfo 'sslmode=require' stays: libpq uses no SSL over
# a Unix socket and does not insist on it there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${NNPG_CITUS_PORT:=5610}"
[[ "$NNPG_CITUS_PORT" =~ ^[0-9]+$ ]] || nnpg_die "bad NNPG_CITUS_PORT \"$NNPG_CITUS_PORT\""
ports=("$NNPG_CITUS_PORT" $((NNPG_CITUS_PORT + 1)) $((NNPG_CITUS_PORT + 2)))
# Every node lives in cluster.sh's default /tmp/nnpg-cluster-PORT: one
# directory for three nodes would not do.
unset NNPG_CLUSTER_DIR

# node_dir PORT: the directory, socket directory and Citus node name of a node.
node_dir() {
	echo "/tmp/nnpg-cluster-$1"
}

# node_psql PORT ARGS...: psql as the superuser into database nnpg of a node.
node_psql() {
	local port=$1
	shift
	PGOPTIONS="-c client_min_messages=warning" \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h "$(node_dir "$port")" -p "$port" -U postgres -d nnpg "$@"
}

# ---------------------------------------------------------------- build

# citus_version: the x.y.z of the installed citus.so, or nothing.
citus_version() {
	local so
	so=$("$PG_CONFIG" --pkglibdir)/citus.so
	[ -f "$so" ] || return 0
	# CITUS_VERSION_STR, "Citus 12.1.12 on x86_64-pc-linux-gnu, ..."
	grep -a -o -m1 -E 'Citus [0-9]+\.[0-9]+\.[0-9]+[^ ]* on ' "$so" |
		awk 'NR == 1 {print $2}'
}

# build_packages: install what building Citus needs, when missing.
build_packages() {
	local major p status missing=()
	major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	for p in gcc make "postgresql-server-dev-$major" liblz4-dev libzstd-dev libkrb5-dev; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$status" = installed ] || missing+=("$p")
	done
	[ "${#missing[@]}" -gt 0 ] || return 0
	[ "$(id -u)" = 0 ] || nnpg_die "missing packages (${missing[*]}); run this as root"
	nnpg_log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

cmd_build() {
	local tarball=${1:-${NNPG_CITUS_TARBALL:-$NNPG_ROOT/../shared/vendor/citus-12.1.12.tar.gz}}
	local version sha cache stamp top log
	[ -x "$PG_CONFIG" ] || nnpg_die "pg_config not found at $PG_CONFIG"
	version=$(citus_version)
	if [[ "$version" == 12.1.* ]]; then
		nnpg_log "Citus $version already installed in $("$PG_CONFIG" --pkglibdir); nothing to do"
		return 0
	fi
	[ -f "$tarball" ] || nnpg_die "no Citus tarball at $tarball (give one: $0 build TARBALL, or set NNPG_CITUS_TARBALL)"
	tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
	[ -n "$version" ] && nnpg_log "replacing the installed Citus $version"
	build_packages
	sha=$(sha256sum "$tarball" | awk '{print $1}')
	cache=${NNPG_CITUS_CACHE:-/var/cache/nnpg/citus-$sha}
	stamp=$cache/.nnpg-built
	log=$cache/build.log
	mkdir -p "$(dirname "$cache")"
	# One build at a time in this cache.
	exec 9>"$cache.lock"
	flock 9
	# The stamp names the tarball and pg_config it was built for. A tree
	# without it (an interrupted build) or for another pg_config is rebuilt.
	# The tree is built where it stays: configure writes absolute paths.
	if [ "$(cat "$stamp" 2>/dev/null)" != "$sha $PG_CONFIG" ]; then
		nnpg_log "building Citus from $tarball in $cache (about 70 s on 2 cores; log: $log)"
		if [ -e "$cache" ]; then
			[ -f "$cache/.nnpg-citus-cache" ] ||
				nnpg_die "$cache exists but was not made by $0; not touching it"
			rm -rf "$cache"
		fi
		mkdir -p "$cache"
		touch "$cache/.nnpg-citus-cache"
		tar -xzf "$tarball" -C "$cache"
		top=$(find "$cache" -mindepth 1 -maxdepth 1 -type d | head -n 1)
		[ -x "$top/configure" ] || nnpg_die "no configure script in $tarball"
		ln -s "$(basename "$top")" "$cache/src"
		if ! (cd "$top" && ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" &&
			make -j"$(nproc)") >"$log" 2>&1; then
			tail -n 30 "$log" >&2
			nnpg_die "the Citus build failed (log: $log)"
		fi
		echo "$sha $PG_CONFIG" >"$stamp"
	else
		nnpg_log "using the Citus build cached in $cache"
	fi
	nnpg_log "installing Citus into $("$PG_CONFIG" --pkglibdir)"
	if ! make -C "$cache/src" install >"$cache/install.log" 2>&1; then
		tail -n 30 "$cache/install.log" >&2
		nnpg_die "make install of Citus failed (log: $cache/install.log)"
	fi
	version=$(citus_version)
	[[ "$version" == 12.1.* ]] || nnpg_die "installed Citus is \"$version\", not 12.1.x"
	nnpg_log "Citus $version installed"
}

# ---------------------------------------------------------------- start/stop

# node_conf PORT: the postgresql.conf lines of a node, after cluster.sh's.
node_conf() {
	cat <<EOF
# Citus node (scripts/citus.sh); shared_preload_libraries = 'citus,nnpg'
shared_buffers = 128MB
# Citus's maintenance daemon (one per database with citus) and its
# background task executors, plus the 2 parallel workers.
max_worker_processes = 16
max_parallel_workers = 2
max_parallel_workers_per_gather = 2
# Connections between the nodes; prepared transactions for Citus's 2PC.
max_connections = 100
max_prepared_transactions = 100
# Nodes are named by their socket directory; connections to this node
# itself use its own.
citus.local_hostname = '$(node_dir "$1")'
EOF
}

cmd_start() {
	local port ext so c=${ports[0]} w
	so=$("$PG_CONFIG" --pkglibdir)
	[ -f "$so/citus.so" ] || nnpg_die "Citus is not installed; run: $0 build"
	[ -f "$so/nnpg.so" ] || nnpg_die "nnpg is not installed; run: scripts/setup.sh"
	local up=()
	for port in "${ports[@]}"; do
		if bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port" status >/dev/null 2>&1; then
			# Already running (start again): it must be one of ours.
			[ "$(node_psql "$port" -c 'SHOW shared_preload_libraries')" = citus,nnpg ] ||
				nnpg_die "a server without citus runs on port $port; run: $0 stop"
			up+=("$port")
		fi
	done
	for port in "${ports[@]}"; do
		if [[ " ${up[*]} " == *" $port "* ]]; then
			nnpg_log "node on port $port already running"
			continue
		fi
		NNPG_PRELOAD_LIBS=citus,nnpg NNPG_EXTRA_CONF=$(node_conf "$port") \
			bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port" start
	done
	# Each node gets both extensions before it is registered. (Once it is, a
	# worker refuses extension DDL, even a CREATE EXTENSION IF NOT EXISTS
	# that would do nothing: hence the look in pg_extension on a restart.)
	for port in "${ports[@]}"; do
		for ext in citus nnpg; do
			[ -n "$(node_psql "$port" -c "SELECT 1 FROM pg_extension WHERE extname = '$ext'")" ] ||
				node_psql "$port" -c "CREATE EXTENSION $ext"
		done
	done
	nnpg_log "registering the coordinator ($c) and the workers (${ports[1]}, ${ports[2]})"
	node_psql "$c" -c "SELECT citus_set_coordinator_host('$(node_dir "$c")', $c)" >/dev/null
	for w in "${ports[@]:1}"; do
		# citus_add_node returns the existing node's id when it is there
		node_psql "$c" -c "SELECT citus_add_node('$(node_dir "$w")', $w)" >/dev/null
	done
	nnpg_log "Citus nodes:"
	node_psql "$c" -F ' ' -c "SELECT nodeid, nodename, nodeport, noderole,
		CASE WHEN groupid = 0 THEN 'coordinator' ELSE 'worker' END,
		CASE WHEN isactive THEN 'active' ELSE 'inactive' END
		FROM pg_dist_node ORDER BY nodeid" | sed 's/^/    /' >&2
	nnpg_log "Citus cluster ready; connect with: eval \"\$($0 env)\"; psql"
}

cmd_stop() {
	local port rc=0
	for port in "${ports[@]}"; do
		bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port" stop || rc=1
	done
	return "$rc"
}

cmd_status() {
	local port rc=0
	for port in "${ports[@]}"; do
		bash "$NNPG_ROOT/scripts/cluster.sh" -p "$port" status || rc=3
	done
	return "$rc"
}

case "${1:-}" in
build)
	shift
	[ "$#" -le 1 ] || nnpg_die "usage: $0 build [TARBALL]"
	cmd_build "$@"
	;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) bash "$NNPG_ROOT/scripts/cluster.sh" -p "${ports[0]}" env ;;
psql)
	shift
	exec bash "$NNPG_ROOT/scripts/cluster.sh" -p "${ports[0]}" psql "$@"
	;;
-h | --help)
	nnpg_usage "$0"
	;;
*)
	nnpg_usage "$0" >&2
	exit 2
	;;
esac

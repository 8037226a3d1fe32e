#!/usr/bin/env bash
# A Citus cluster on this machine for scale-out experiments and tests: a coordinator and two
# workers, three clusters of the PostgreSQL on PATH (scripts/pg.sh: 15 with Citus 13.2, 18 with
# Citus 14.0) run as the postgres user (PostgreSQL refuses root), on
# ports PORT (coordinator), PORT+1 and PORT+2 (workers), all with their sockets in DIR and no TCP.
#   scripts/citus_cluster.sh start DIR PORT [SETTING=VALUE ...]   initdb (first time), start, set up
#   scripts/citus_cluster.sh stop DIR
#   scripts/citus_cluster.sh status DIR
# SETTING=VALUE pairs go to every node's configuration (e.g. citus.log_remote_commands=on).
# Environment (start):
#   PGCONV_CITUS_PRELOAD  libraries to preload after citus, comma-separated (e.g. pg_conversation);
#                         citus always comes first, as Citus requires
#   PGCONV_CITUS_DB       the database created on every node with CREATE EXTENSION citus (default citus)
# After start: the database exists on all three nodes with the citus extension, the coordinator
# knows its own address (citus_set_coordinator_host) and both workers are added (citus_add_node).
# Nodes name each other by the socket directory DIR as host, which libpq takes as a Unix socket.
# Connect: psql -h DIR -p PORT -U postgres citus (coordinator); -p PORT+1, PORT+2 (workers).
# Run again on a running cluster, start changes nothing (settings apply from the next restart; stop
# first to change them). Needs Citus installed (scripts/setup_citus.sh).
set -euo pipefail
BINDIR=$(pg_config --bindir)
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }
NODES=(coordinator worker1 worker2)
die() { echo "citus_cluster: $*" >&2; exit 1; }

running() { as_postgres "$BINDIR/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

case "${1:-}" in
start)
    [ $# -ge 3 ] || die "usage: $0 start DIR PORT [SETTING=VALUE ...]"
    dir=$(realpath -m "$2") port=$3
    db=${PGCONV_CITUS_DB:-citus}
    preload=citus
    [ -n "${PGCONV_CITUS_PRELOAD:-}" ] && preload+=",${PGCONV_CITUS_PRELOAD}"
    [ -f "$(pg_config --pkglibdir)/citus.so" ] || die "Citus is not installed: run scripts/setup_citus.sh"
    started=$(date +%s%N)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    pids=()
    for i in 0 1 2; do
        node=$dir/${NODES[$i]} node_port=$((port + i))
        if [ ! -f "$node/data/PG_VERSION" ]; then
            as_postgres mkdir -p "$node"
            as_postgres "$BINDIR/initdb" -D "$node/data" -U postgres --auth=trust -E UTF8 --no-locale \
                >"$node/initdb.log" || die "initdb of $node failed, see $node/initdb.log"
            # Settings live in an included file, so that pg_ctl restart and the log show them.
            echo "include_if_exists = 'citus_cluster.conf'" | as_postgres tee -a "$node/data/postgresql.conf" >/dev/null
        fi
        if running "$node"; then continue; fi
        {
            echo "# written by scripts/citus_cluster.sh start at every start of a stopped node"
            echo "port = $node_port"
            echo "unix_socket_directories = '$dir'"
            echo "listen_addresses = ''"
            echo "shared_preload_libraries = '$preload'"
            echo "max_connections = 300"
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
            # Shard moves and splits (citus_move_shard_placement, the rebalancer) copy shards by
            # logical replication unless told to block writes.
            echo "wal_level = logical"
            # How a node reaches itself (shard moves, citus_cleanup_orphaned_resources): by its
            # socket directory, as there is no TCP.
            echo "citus.local_hostname = '$dir'"
            for setting in "${@:4}"; do
                echo "${setting%%=*} = '${setting#*=}'"
            done
        } | as_postgres tee "$node/data/citus_cluster.conf" >/dev/null
        # All three start in parallel; pg_ctl -w waits for each below.
        as_postgres "$BINDIR/pg_ctl" -D "$node/data" -l "$node/server.log" -w start >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "a node failed to start: see $dir/*/server.log"; done
    echo "$port" | as_postgres tee "$dir/port" >/dev/null

    psql_at() { local p=$1; shift; as_postgres env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$p" -U postgres "$@"; }
    for i in 0 1 2; do
        node_port=$((port + i))
        if [ "$(psql_at "$node_port" -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
            psql_at "$node_port" -d postgres -c "CREATE DATABASE \"$db\""
        fi
        psql_at "$node_port" -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS citus"
    done
    # Register the nodes once; pg_dist_node survives restarts.
    psql_at "$port" -d "$db" -v dir="$dir" -v port="$port" >/dev/null <<'SQL'
SELECT citus_set_coordinator_host(:'dir', :port)
WHERE NOT EXISTS (SELECT FROM pg_dist_node WHERE groupid = 0 AND nodename = :'dir' AND nodeport = :port);
SELECT citus_add_node(:'dir', p)
FROM (VALUES (:port + 1), (:port + 2)) AS w(p)
WHERE NOT EXISTS (SELECT FROM pg_dist_node WHERE nodename = :'dir' AND nodeport = p);
SQL
    nodes=$(psql_at "$port" -d "$db" -Atc "SELECT count(*) FROM citus_get_active_worker_nodes()")
    [ "$nodes" = 2 ] || die "the coordinator sees $nodes active workers, not 2"
    elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
    printf 'citus_cluster: coordinator %s port %s, workers ports %s %s, database %s, preload %s (%d.%03d s)\n' \
        "$dir" "$port" "$((port + 1))" "$((port + 2))" "$db" "$preload" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
    ;;
stop)
    [ $# -ge 2 ] || die "usage: $0 stop DIR"
    dir=$(realpath -m "$2")
    pids=()
    for node in "${NODES[@]}"; do
        if [ -f "$dir/$node/data/postmaster.pid" ]; then
            as_postgres "$BINDIR/pg_ctl" -D "$dir/$node/data" -m fast -w stop >/dev/null &
            pids+=($!)
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    ;;
status)
    [ $# -ge 2 ] || die "usage: $0 status DIR"
    dir=$(realpath -m "$2")
    for node in "${NODES[@]}"; do
        if running "$dir/$node"; then echo "$node: running"; else echo "$node: stopped"; fi
    done
    ;;
*)
    echo "usage: $0 start DIR PORT [SETTING=VALUE ...] | stop DIR | status DIR" >&2; exit 2 ;;
esac

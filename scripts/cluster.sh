#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for demos and tests, run as the postgres user (PostgreSQL
# refuses root), on its own port and socket directory so it never meets the system cluster.
#   scripts/cluster.sh start DIR PORT [SETTING=VALUE ...]   initdb (first time) and start
#   scripts/cluster.sh stop DIR
set -euo pipefail
BINDIR=$(pg_config --bindir)
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }

case "${1:-}" in
start)
    dir=$2 port=$3
    extra=""
    for setting in "${@:4}"; do extra+=" -c $setting"; done
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log"
    fi
    # Already running (a demo run again): keep it.
    as_postgres "$BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && exit 0
    as_postgres "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses='' -c max_connections=200 -c fsync=off$extra" start >/dev/null
    ;;
stop)
    dir=$2
    [ -f "$dir/data/postmaster.pid" ] && as_postgres "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac

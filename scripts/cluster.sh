#!/usr/bin/env bash
# A private PostgreSQL cluster for demos and tests, run as the postgres user (PostgreSQL refuses
# root), on its own port and socket directory so it never meets the system cluster. The server
# version is PGCONV_PG (15 by default, or 18: scripts/pg.sh).
#   scripts/cluster.sh start DIR PORT [SETTING=VALUE ...]   initdb (first time) and start
#   scripts/cluster.sh stop DIR
# A cluster keeps the version it was created with: stop uses the binaries of the version in
# DIR/data/PG_VERSION, and start refuses a DIR created by another version.
set -euo pipefail
source "$(dirname "$0")/pg.sh"
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }

case "${1:-}" in
start)
    dir=$2 port=$3
    extra=""
    for setting in "${@:4}"; do extra+=" -c $setting"; done
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        # PostgreSQL 18's initdb turns data checksums on by default, 15's off; off on both, so
        # that clusters of the two versions can be pg_upgraded into each other.
        as_postgres "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
            $([ "$PG_MAJOR" -ge 18 ] && echo --no-data-checksums) >"$dir/initdb.log"
    fi
    created=$(cat "$dir/data/PG_VERSION")
    if [ "$created" != "$PG_MAJOR" ]; then
        echo "$dir holds a PostgreSQL $created cluster, not $PG_MAJOR (PGCONV_PG=$PG_MAJOR)" >&2; exit 1
    fi
    # Already running (a demo run again): keep it.
    as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && exit 0
    as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses='' -c max_connections=200 -c fsync=off$extra" start >/dev/null
    ;;
stop)
    dir=$2
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    pg_use "$(cat "$dir/data/PG_VERSION")"
    as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: [PGCONV_PG=15|18] $0 start DIR PORT [SETTING=VALUE ...] | stop DIR" >&2; exit 2 ;;
esac

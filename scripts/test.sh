#!/usr/bin/env bash
# Runs every test of pg_conversation from a clean state; installs what is missing first.
#   1. Rust unit tests and #[pg_test]s (cargo pgrx test, in pgrx's own test cluster)
#   2. isolation specs (PostgreSQL's pg_isolation_regress) against a private cluster
#   3. the race tests, at every isolation level: 32 connections x 100 fresh keys; 16 batches of
#      the same 500 fresh keys in different orders; 32 devices x 100 read positions
#   4. SQL regression files (pg_regress): the operations DBAs run, and the view without preloading
#   5. pg_dump / pg_restore round trips; upgrades from every earlier release (sql/releases)
#   6. the CMD cleanup scheduled by pg_cron, in a cluster of its own
#   7. the benchmark harness in smoke mode (that it runs and reports, never how fast)
# Ends with "N passed, M failed" over those suites and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${PGCONV_TEST_DIR:-/tmp/pg_conversation-test}
PORT=${PGCONV_TEST_PORT:-55439}
PG_CONFIG=/usr/bin/pg_config

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

# A clean state: no cluster or results left from an earlier run.
[ -d "$WORK" ] && bash scripts/cluster.sh stop "$WORK/cluster" 2>/dev/null
rm -rf "$WORK"
mkdir -p "$WORK"
chown postgres:postgres "$WORK"

passed=0 failed=0 failed_names=()
suite() {
    local name=$1; shift
    echo
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1)); echo "=== $name: passed"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED"
    fi
}

suite "unit tests and pg_tests" \
    cargo pgrx test pg15 --runas postgres --pgdata "$WORK/pgrx-data"

# The suites below run against the extension as users get it.
if ! cargo pgrx install --pg-config "$PG_CONFIG" >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log"; echo "install failed"; exit 1
fi
# Preloaded, as in production, so that the counters are kept.
bash scripts/cluster.sh start "$WORK/cluster" "$PORT" shared_preload_libraries=pg_conversation ||
    { echo "cluster failed to start"; exit 1; }
export PGHOST=$WORK/cluster PGPORT=$PORT PGUSER=postgres
trap 'bash scripts/cluster.sh stop "$WORK/cluster"' EXIT

# Runs one of PostgreSQL's expected-output runners over tests/DIR against the cluster at
# PGHOST:PGPORT, in database pgconv_DIR:
#   pg_suite RUNNER DIR TESTS...   (TESTS: names, or --schedule=FILE inside tests/DIR)
# e.g. isolation/pg_isolation_regress over the specs in tests/isolation/specs.
pg_suite() {
    local runner=$1 dir=$2 status; shift 2
    # pg_regress runs as postgres, which may not be able to read this checkout: give it a copy.
    rm -rf "${WORK:?}/$dir"
    cp -r "tests/$dir" "$WORK/$dir"
    chown -R postgres:postgres "$WORK/$dir"
    (cd "$WORK/$dir" && sudo -u postgres "$(dirname "$(pg_config --pgxs)")/../test/$runner" \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --bindir="$(pg_config --bindir)" \
        --inputdir=. --outputdir=. --load-extension=pg_conversation --dbname="pgconv_$dir" "$@")
    status=$?
    [ $status -ne 0 ] && cat "$WORK/$dir/regression.diffs"
    return $status
}
suite "isolation specs" pg_suite isolation/pg_isolation_regress isolation \
    $(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//')
suite "SQL regression files" pg_suite regress/pg_regress regress --schedule=schedule

# The counters view where the library is not preloaded: a cluster of its own, briefly.
without_preloading() {
    local dir=$WORK/plain-cluster port=$((PORT + 2)) status
    bash scripts/cluster.sh start "$dir" "$port" || return 1
    PGHOST=$dir PGPORT=$port pg_suite regress/pg_regress regress --schedule=schedule_not_preloaded
    status=$?
    bash scripts/cluster.sh stop "$dir"
    return $status
}
suite "SQL regression files without preloading" without_preloading

race() {
    cargo build --release --quiet -p race-test || return 1
    psql -X -q -c "DROP DATABASE IF EXISTS pgconv_race" -c "CREATE DATABASE pgconv_race" &&
    psql -X -q -d pgconv_race -c "CREATE EXTENSION pg_conversation" &&
    local dsn="host=$PGHOST port=$PORT user=postgres dbname=pgconv_race"
    target/release/race-test --dsn "$dsn" --mode create --clients 32 --keys 100 &&
    target/release/race-test --dsn "$dsn" --mode fanout --clients 16 --keys 500 &&
    target/release/race-test --dsn "$dsn" --mode reads --clients 32 --keys 100
}
suite "race test" race

suite "dump and restore" bash tests/dump_restore.sh
suite "upgrade from every earlier release" bash tests/upgrade.sh
suite "cleanup scheduled with pg_cron" bash tests/pg_cron.sh "$WORK/cron-cluster" "$((PORT + 1))"

# The benchmark harness in smoke mode, so that it cannot rot: asserts it ran and produced its
# tables, never a timing. It installs the release build over the library file, which would pull
# the code from under a running server that preloads it: stop the test cluster first.
bash scripts/cluster.sh stop "$WORK/cluster"
bench_smoke() {
    bash bench/run.sh --smoke >"$WORK/bench-smoke.md" 2>&1 || { cat "$WORK/bench-smoke.md"; return 1; }
    cat "$WORK/bench-smoke.md"
    local workload
    for workload in hit miss contention fan-out; do
        grep -q "^### $workload" "$WORK/bench-smoke.md" || { echo "no $workload table"; return 1; }
    done
    [ "$(grep -c '^| get_or_create_conversation |' "$WORK/bench-smoke.md")" = 3 ] ||
        { echo "get_or_create_conversation is missing from a table"; return 1; }
}
suite "benchmark smoke run" bench_smoke

echo
[ $failed -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]

#!/usr/bin/env bash
# Benchmarks, each approach side by side with the usual idioms and the limits:
#   bench/bench.py      get_or_create_conversation: hit, miss, contention, fan-out
#   bench/messages.py   message arrival to groups of 10, 100 and 1,000: WAL, index entries, HOT
#   bench/lists.py      the conversation list and the badge for users of 20 to 100,000 conversations
#                       (and of 20 and 200 large channels)
#   bench/mode_change.py a channel made large and per member again while messages arrive
#   bash bench/run.sh           all four, full runs (about 45 minutes); prints the markdown tables
#   bash bench/run.sh --smoke   seconds on tiny data, so the harness cannot rot (CI runs this)
#   bash bench/run.sh --citus   bench.py's hit, miss and fan-out on a Citus cluster (coordinator and
#                               two workers: Citus 13.2 on 15, Citus 14.0 on 18) beside the single
#                               node, in one run
#   bash bench/run.sh --only messages|lists|mode_change|WORKLOAD   one benchmark, or one of bench.py's workloads
# Builds and installs the release build, and runs on a private cluster of its own, on PostgreSQL
# PGCONV_PG (15 by default, or 18: scripts/pg.sh; the report names the server version).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=${PGCONV_BENCH_DIR:-/tmp/pg_conversation-bench$PG_SUFFIX}
PORT=${PGCONV_BENCH_PORT:-$((55440 + PG_PORT_OFFSET))}

bash scripts/setup.sh
# Before installing: the install overwrites the library file under any server running with it.
bash scripts/cluster.sh stop "$DIR/cluster" 2>/dev/null || true
cargo pgrx install --release --pg-config "$PG_CONFIG" >"$DIR.install.log" 2>&1 ||
    { cat "$DIR.install.log"; exit 1; }
rm -rf "$DIR"
# No autovacuum and rare checkpoints: WAL and dead-tuple counts then come from the workload alone.
bash scripts/cluster.sh start "$DIR/cluster" "$PORT" autovacuum=off checkpoint_timeout=1h max_wal_size=10GB \
    shared_buffers=1GB
trap 'bash scripts/cluster.sh stop "$DIR/cluster"' EXIT
export PGHOST=$DIR/cluster PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
psql -X -q -d postgres -c "CREATE DATABASE bench"
psql -X -q -c "CREATE EXTENSION pg_conversation"
if [[ " $* " = *" --citus "* ]]; then
    CITUS_DIR=$DIR/citus CITUS_PORT=$((PORT + 5))
    PGCONV_CITUS_PRELOAD=pg_conversation PGCONV_CITUS_DB=bench bash scripts/citus_cluster.sh start "$CITUS_DIR" "$CITUS_PORT" \
        autovacuum=off checkpoint_timeout=1h max_wal_size=10GB
    trap 'bash scripts/cluster.sh stop "$DIR/cluster"; bash scripts/citus_cluster.sh stop "$CITUS_DIR"' EXIT
    psql -X -q -h "$CITUS_DIR" -p "$CITUS_PORT" -c "CREATE EXTENSION pg_conversation"
    export PGCONV_BENCH_CITUS="$CITUS_DIR $CITUS_PORT"
fi
only=$(sed -n 's/.*--only \([^ ]*\).*/\1/p' <<<" $* ")
smoke=$([[ " $* " = *" --smoke "* ]] && echo --smoke || true)
case "$only" in
messages | lists | mode_change) python3 "bench/$only.py" $smoke ;;
*)
    python3 bench/bench.py "$@"
    if [ -z "$only" ] && [[ " $* " != *" --citus "* ]]; then
        python3 bench/messages.py $smoke
        python3 bench/lists.py $smoke
        python3 bench/mode_change.py $smoke
    fi ;;
esac

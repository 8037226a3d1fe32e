#!/usr/bin/env bash
# Two builds of the library side by side: get_or_create_conversation's hit and miss (called in
# FROM, as bench.py's "get_or_create_conversation") from each build, with the plain SELECT and the
# plain INSERT of the same rows, all mixed in one pgbench run (each transaction picks a script at
# random), so that the machine's noise falls on every approach alike. Each build's mean latency
# comes from pgbench's transaction log; reported as speed x the plain statement, per run, with
# the median and spread over the runs.
#   bash bench/builds.sh OLD.so NEW.so [SECONDS] [RUNS]     (20 s and 5 runs by default)
# OLD.so and NEW.so are library files (copy target/release/pg_conversation.so, or the installed
# one, aside after each build). The extension's objects come from the installed build; each
# build's get_or_create_conversation is declared from its own file (as old_build and new_build,
# in the extension's schema, where the functions look for the table), so both are loaded in the
# same backends. On a private cluster (/tmp/pg_conversation-builds, port 55450; 18: -pg18, 55550),
# on PostgreSQL PGCONV_PG (15 by default, or 18).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
DIR=${PGCONV_BENCH_DIR:-/tmp/pg_conversation-builds$PG_SUFFIX}
PORT=${PGCONV_BENCH_PORT:-$((55450 + PG_PORT_OFFSET))}
SECONDS_PER_RUN=${3:-20} RUNS=${4:-5}

bash scripts/cluster.sh stop "$DIR/cluster" 2>/dev/null || true
rm -rf "$DIR"
bash scripts/cluster.sh start "$DIR/cluster" "$PORT" autovacuum=off shared_buffers=256MB
trap 'bash scripts/cluster.sh stop "$DIR/cluster"' EXIT
mkdir -p "$DIR/libs" "$DIR/scripts" "$DIR/log"
cp "$1" "$DIR/libs/old.so"
cp "$2" "$DIR/libs/new.so"
chmod -R a+rX "$DIR/libs"
export PGHOST=$DIR/cluster PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
psql -X -q -d postgres -c "CREATE DATABASE bench"
# The plain statements' table is the extension's exactly (indexes, stamp trigger), filled the
# same way, in the same order.
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_conversation;
CREATE SCHEMA bench;
CREATE FUNCTION old_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/old.so', 'get_or_create_conversation';
CREATE FUNCTION new_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/new.so', 'get_or_create_conversation';
CREATE TABLE bench.plain (LIKE conversation INCLUDING ALL);
CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON bench.plain
    FOR EACH ROW EXECUTE FUNCTION conversation_stamp();
CREATE SEQUENCE bench.plain_id_seq OWNED BY bench.plain.id;
ALTER TABLE bench.plain ALTER id SET DEFAULT nextval('bench.plain_id_seq');
INSERT INTO bench.plain (uid, channel_id, channel_type) SELECT 'u' || u, 'g' || c || suffix, kind
    FROM generate_series(1, 1000) u, generate_series(1, 50) c, (VALUES ('', 1), ('____cmd', 2)) AS k(suffix, kind);
INSERT INTO conversation (uid, channel_id, channel_type) SELECT uid, channel_id, channel_type FROM bench.plain ORDER BY id;
VACUUM ANALYZE;
SQL
# Hits: one of the 100,000 rows. Misses: a fresh key (from 4 billion) each time.
key='\set u random(1, 1000)
\set c random(1, 50)
\set t random(1, 2)'
fresh='\set u random(1, 2000000000)
\set c random(1, 2000000000)'
channel="CASE WHEN :t = 1 THEN 'g' || :c ELSE 'g' || :c || '____cmd' END"
printf '%s\nSELECT id FROM bench.plain WHERE uid = %s AND channel_id = %s AND channel_type = :t;\n' "$key" "'u' || :u" "$channel" >"$DIR/scripts/hit_plain.sql"
for build in old new; do
    printf '%s\nSELECT id FROM %s_build(%s, %s, :t);\n' "$key" "$build" "'u' || :u" "$channel" >"$DIR/scripts/hit_$build.sql"
    printf '%s\nSELECT id FROM %s_build(%s, %s, 1);\n' "$fresh" "$build" "'m' || :u" "'c' || :c" >"$DIR/scripts/miss_$build.sql"
done
printf '%s\nINSERT INTO bench.plain (uid, channel_id, channel_type) VALUES (%s, %s, 1) RETURNING id;\n' "$fresh" "'m' || :u" "'c' || :c" >"$DIR/scripts/miss_plain.sql"

# One workload: the plain statement at weight 2 (as many calls reach its table as reach the
# extension's), each build at 1. Prints "run script mean_latency_us" per run.
mixed() {
    local workload=$1
    for run in $(seq "$RUNS"); do
        rm -f "$DIR"/log/*
        (cd "$DIR/log" && pgbench -n -M prepared -c 2 -j 2 -T "$SECONDS_PER_RUN" -l --sampling-rate 0.2 \
            -f "$DIR/scripts/${workload}_plain.sql@2" -f "$DIR/scripts/${workload}_old.sql" \
            -f "$DIR/scripts/${workload}_new.sql" >"$DIR/pgbench.out" 2>&1) ||
            { cat "$DIR/pgbench.out" >&2; exit 1; }
        cat "$DIR"/log/pgbench_log.* | awk -v run="$run" '{n[$4]++; s[$4] += $3} END {for (k in n) print run, k, s[k] / n[k]}'
    done
}

report() {
    python3 -c '
import collections, statistics, sys
workload, reference = sys.argv[1:]
latency = collections.defaultdict(dict)
for line in sys.stdin:
    run, script, mean = line.split()
    latency[int(script)][run] = float(mean)
runs = sorted(latency[0])
print(f"\n### {workload}\n")
print(f"| build | mean latency (us), per run | x {reference} (median of runs) | spread |")
print("|---|---|---:|---:|")
for script, name in ((1, "old"), (2, "new")):
    speed = [latency[0][run] / latency[script][run] for run in runs]
    means = " ".join(f"{latency[script][run]:.1f}" for run in runs)
    print(f"| {name} | {means} | {statistics.median(speed):.3f} | {min(speed):.3f}-{max(speed):.3f} |")
' "$@"
}

echo "## Two builds side by side: $(psql -X -qAt -c 'SHOW server_version'), $RUNS runs of $SECONDS_PER_RUN s, 2 clients"
echo "old: $1"
echo "new: $2"
mixed hit | report "hit (FROM form)" "plain SELECT"
mixed miss | report "miss (FROM form)" "plain INSERT"

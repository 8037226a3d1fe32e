#!/usr/bin/env bash
# A hit on rows written before an update added a column (0.9.0 adds large: every existing row
# holds one attribute fewer than the table until it is next written) and on rows written after,
# with two builds of the library side by side and the plain indexed SELECT, all six mixed in one
# pgbench run (each transaction picks a script at random). Reported per run as each one's mean
# latency in microseconds (pgbench's transaction log), with the ratio to the plain SELECT.
#   bash bench/old_rows.sh OLD.so NEW.so [SECONDS] [RUNS]     (10 s and 4 runs by default)
# The database is made at 0.8.0 (its script from sql/releases), filled with 50,000 rows, updated
# to the installed version, and half its users' rows written again. On a private cluster
# (/tmp/pg_conversation-old-rows, port 55471; 18: -pg18, 55571), on PostgreSQL PGCONV_PG (15 by
# default, or 18); the old release's script is copied into the server's extension directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
source bench/two_builds.sh
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
DIR=${PGCONV_BENCH_DIR:-/tmp/pg_conversation-old-rows$PG_SUFFIX}
PORT=${PGCONV_BENCH_PORT:-$((55471 + PG_PORT_OFFSET))}
SECONDS_PER_RUN=${3:-10} RUNS=${4:-4}

install -m 644 sql/releases/pg_conversation--0.8.0.sql "$(pg_config --sharedir)/extension/"
start_two_builds "$1" "$2"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_conversation VERSION '0.8.0';
INSERT INTO conversation (uid, channel_id, channel_type)
    SELECT 'u' || u, 'g' || c, 1 FROM generate_series(1, 1000) u, generate_series(1, 50) c;
ALTER EXTENSION pg_conversation UPDATE;
-- Users 501 to 1000 written again: their rows hold every attribute.
UPDATE conversation SET unread_count = unread_count WHERE substr(uid, 2)::int > 500;
VACUUM ANALYZE conversation;
CREATE FUNCTION old_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/old.so', 'get_or_create_conversation';
CREATE FUNCTION new_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/new.so', 'get_or_create_conversation';
SQL
scripts=()
for rows in before after; do
    if [ $rows = before ]; then users='random(1, 500)'; else users='random(501, 1000)'; fi
    for build in plain old new; do
        if [ $build = plain ]; then
            query="SELECT id FROM conversation WHERE uid = 'u' || :u AND channel_id = 'g' || :c AND channel_type = 1;"
        else
            query="SELECT id FROM ${build}_build('u' || :u, 'g' || :c, 1);"
        fi
        printf '\\set u %s\n\\set c random(1, 50)\n%s\n' "$users" "$query" >"$DIR/scripts/${rows}_$build.sql"
        scripts+=("${rows}_$build")
    done
done
echo "| run | rows | plain (us) | old build (us) | new build (us) | old x plain | new x plain |"
echo "|---|---|---:|---:|---:|---:|---:|"
for run in $(seq "$RUNS"); do
    rm -f "$DIR"/log/*
    (cd "$DIR/log" && pgbench -n -M prepared -c 2 -j 2 -T "$SECONDS_PER_RUN" -l --sampling-rate 0.2 \
        $(for s in "${scripts[@]}"; do echo -f "$DIR/scripts/$s.sql"; done) >"$DIR/pgbench.out" 2>&1) ||
        { cat "$DIR/pgbench.out" >&2; exit 1; }
    # Script numbers follow the -f order: before plain, old, new, then after plain, old, new.
    cat "$DIR"/log/pgbench_log.* | awk -v run="$run" '{n[$4]++; s[$4] += $3}
        END {for (r = 0; r < 2; r++) {p = s[3*r]/n[3*r]; o = s[3*r+1]/n[3*r+1]; w = s[3*r+2]/n[3*r+2]
             printf "| %s | %s | %.2f | %.2f | %.2f | %.3f | %.3f |\n", run, r ? "written after" : "from before", p, o, w, p/o, p/w}}'
done

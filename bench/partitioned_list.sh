#!/usr/bin/env bash
# The list on a hash-partitioned table (conversation_partition), two builds of the library side
# by side: a user's first page of 20 and a sync with nothing changed, from each build, with one
# indexed read of 20 rows of the same user, all mixed in one pgbench run (each transaction picks
# a script at random, so that the machine's noise falls on every statement alike). On a
# partitioned table the list runs its SQL statements (list_scan.rs reads plain tables only); this
# measures how they are planned (relation/table.rs `Planning`). Prints mean latencies per run and
# the ratio to the indexed read (median of runs).
#   bash bench/partitioned_list.sh OLD.so NEW.so [SECONDS] [RUNS]     (10 s and 3 runs by default)
# OLD.so and NEW.so as bench/builds.sh takes them; the private cluster /tmp/pg_conversation-parts
# (port 55460; 18: -pg18, 55560), on PostgreSQL PGCONV_PG (15 by default, or 18).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
source bench/mixed.sh
source bench/two_builds.sh
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
DIR=${PGCONV_BENCH_DIR:-/tmp/pg_conversation-parts$PG_SUFFIX}
PORT=${PGCONV_BENCH_PORT:-$((55460 + PG_PORT_OFFSET))}
SECONDS_PER_RUN=${3:-10} RUNS=${4:-3}

start_two_builds "$1" "$2"
psql -X -q -v ON_ERROR_STOP=1 -o /dev/null <<SQL
CREATE EXTENSION pg_conversation;
SELECT count(*) FROM conversation_partition(8);
CREATE FUNCTION old_list(text, integer, text, integer) RETURNS SETOF conversation_list_row STABLE ROWS 50 LANGUAGE c
    AS '$DIR/libs/old.so', 'conversation_list';
CREATE FUNCTION new_list(text, integer, text, integer) RETURNS SETOF conversation_list_row STABLE ROWS 50 LANGUAGE c
    AS '$DIR/libs/new.so', 'conversation_list';
-- 1,000 users of 50 chats each, made by a first message from a peer.
SELECT count(conversation_message_arrived('chat' || c, 1, ARRAY(SELECT 'u' || u FROM generate_series(1, 1000) AS u), 1, NULL))
    FROM generate_series(1, 50) AS c;
-- The reference: 20 rows of one user by an index, the usual way.
CREATE INDEX conversation_bench_idx ON conversation (uid, updated_at DESC);
ANALYZE conversation;
SQL
[ "$(psql -X -At -c "SELECT count(*) FROM new_list('u7', NULL, NULL, 20)")" = 20 ] || { echo "FAILED: a first page"; exit 1; }

S=$DIR/scripts
synced=$(position_after_first_pass u7)
echo "SELECT * FROM conversation WHERE uid = 'u7' ORDER BY updated_at DESC LIMIT 20;" >"$S/0-reference.sql"
echo "SELECT * FROM old_list('u7', NULL, NULL, 20);" >"$S/1-first-page-old.sql"
echo "SELECT * FROM new_list('u7', NULL, NULL, 20);" >"$S/2-first-page-new.sql"
echo "SELECT * FROM old_list('u7', NULL, '$synced', 20);" >"$S/3-sync-nothing-changed-old.sql"
echo "SELECT * FROM new_list('u7', NULL, '$synced', 20);" >"$S/4-sync-nothing-changed-new.sql"
[ "$(psql -X -At -f "$S/4-sync-nothing-changed-new.sql" | wc -l)" = 0 ] || { echo "FAILED: a sync with nothing changed returned rows"; exit 1; }

echo "## The list on a hash-partitioned table (8 partitions): $(psql -X -At -c 'SHOW server_version'), $RUNS runs of $SECONDS_PER_RUN s, 2 clients"
echo "old: $1"
echo "new: $2"
mixed_table "$S" "$DIR/log" "$RUNS" "$SECONDS_PER_RUN"

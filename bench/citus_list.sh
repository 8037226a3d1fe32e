#!/usr/bin/env bash
# The list on Citus (issue 19, item 5): what a user's first page, badge and sync with nothing
# changed cost through the coordinator (delegated to the node of the user's shard), for a user of
# 50 chats and for one of 50 chats and 20 large channels, against one indexed read of 20 rows
# routed to the same shard. A coordinator and two workers on this machine
# (scripts/citus_cluster.sh), every statement mixed in one pgbench run (2 clients), so that the
# machine's noise falls on all alike; prints mean latencies and ratios per run.
#   bench/citus_list.sh DIR PORT [RUNS] [SECONDS]     (nodes on PORT, PORT+1, PORT+2)
# Needs Citus and the extension installed for the PostgreSQL of PGCONV_PG (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
source bench/mixed.sh
DIR=$1 PORT=$2 RUNS=${3:-3} SECONDS_PER_RUN=${4:-10}

bash scripts/citus_cluster.sh stop "$DIR" 2>/dev/null || true
rm -rf "$DIR"
PGCONV_CITUS_PRELOAD=pg_conversation PGCONV_CITUS_DB=bench bash scripts/citus_cluster.sh start "$DIR" "$PORT" >/dev/null
trap 'bash scripts/citus_cluster.sh stop "$DIR" >/dev/null' EXIT
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

sql -c "CREATE EXTENSION pg_conversation" -c "SELECT count(*) FROM conversation_distribute(8)" >/dev/null
# 1,000 users of 50 chats each (a first message from a peer); then 20 large channels of 1,000
# members (u2 among them), each with three messages.
sql -c "SELECT count(conversation_message_arrived('chat' || c, 1, ARRAY(SELECT 'u' || u FROM generate_series(1, 1000) AS u), 1, NULL))
        FROM generate_series(1, 50) AS c" >/dev/null
sql -c "SELECT count(conversation_channel_make_large('big' || b, 2, ARRAY(SELECT 'u' || u FROM generate_series(2, 1000) AS u)))
        FROM generate_series(1, 20) AS b" >/dev/null
for seq in 1 2 3; do
    sql -c "SELECT count(conversation_message_arrived('big' || b, 2, ARRAY(SELECT 'u' || u FROM generate_series(2, 1000) AS u), $seq, 'u5'))
            FROM generate_series(1, 20) AS b" >/dev/null
done
# The reference: 20 rows of one user by an index, the usual way, routed to the user's shard.
sql -c "CREATE INDEX conversation_bench_idx ON conversation (uid, updated_at DESC)" -c "ANALYZE conversation" >/dev/null
[ "$(sql -c "SELECT count(*) FROM conversation_list('u2', NULL, NULL, 20)")" = 20 ] || { echo "FAILED: u2's first page"; exit 1; }
[ "$(sql -c "SELECT count(*) FROM conversation WHERE uid = 'u2' AND large")" = 20 ] || { echo "FAILED: u2's large channels"; exit 1; }

S=$DIR/scripts
mkdir -p "$S" "$DIR/log"
echo "SELECT * FROM conversation WHERE uid = 'u2' ORDER BY updated_at DESC LIMIT 20;" >"$S/0-reference.sql"
echo "SELECT * FROM conversation_list('u1', NULL, NULL, 20);" >"$S/1-first-page-50-chats.sql"
echo "SELECT * FROM conversation_list('u2', NULL, NULL, 20);" >"$S/2-first-page-50-chats-20-large.sql"
echo "SELECT * FROM conversation_unread('u2');" >"$S/3-badge-50-chats-20-large.sql"
echo "SELECT * FROM conversation_list('u1', NULL, '$(position_after_first_pass u1)', 20);" >"$S/4-sync-nothing-changed-50-chats.sql"
echo "SELECT * FROM conversation_list('u2', NULL, '$(position_after_first_pass u2)', 20);" >"$S/5-sync-nothing-changed-50-chats-20-large.sql"
chmod 755 "$DIR" "$DIR/log"

echo "## The list on Citus: $(sql -c 'SHOW server_version'), Citus $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), $RUNS runs of $SECONDS_PER_RUN s, 2 clients, through the coordinator"
mixed_table "$S" "$DIR/log" "$RUNS" "$SECONDS_PER_RUN"

#!/usr/bin/env bash
# Sets everything up and shows pg_conversation at work:
#   installs the toolchain pieces (scripts/setup.sh), builds and installs the extension (release),
#   starts a private cluster (the library preloaded, for its counters), creates the extension,
#   races 32 connections on fresh keys, once through get_or_create_conversation and once through
#   the usual select-then-insert, then shows a group message's fan-out, read positions, the
#   counters and a legacy table's duplicates merged away.
# The cluster keeps running afterwards; `bash scripts/demo.sh stop` stops it.
#   bash scripts/demo.sh [15|18]         on PostgreSQL 15 (the default) or 18
#   bash scripts/demo.sh stop [15|18]
# Each version's demo has its own cluster: /tmp/pg_conversation-demo on port 55432 for 15,
# /tmp/pg_conversation-demo-pg18 on port 55532 for 18 (PGCONV_DEMO_DIR, PGCONV_DEMO_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
action=demo version=${PGCONV_PG:-15}
for arg in "$@"; do
    case $arg in
    stop) action=stop ;;
    15 | 18) version=$arg ;;
    *) echo "usage: $0 [stop] [15|18]" >&2; exit 2 ;;
    esac
done
PGCONV_PG=$version
source scripts/pg.sh
DIR=${PGCONV_DEMO_DIR:-/tmp/pg_conversation-demo$PG_SUFFIX}
PORT=${PGCONV_DEMO_PORT:-$((55432 + PG_PORT_OFFSET))}

if [ $action = stop ]; then
    bash scripts/cluster.sh stop "$DIR/cluster"; echo "stopped"; exit 0
fi

bash scripts/setup.sh
# cargo pgrx install overwrites the library file in place: a server still running with it
# preloaded (an earlier demo's) would crash. Stop it; it starts again below with its data.
bash scripts/cluster.sh stop "$DIR/cluster" 2>/dev/null || true
echo "building and installing pg_conversation (release) for PostgreSQL $PG_MAJOR..."
mkdir -p "$(dirname "$DIR")"
cargo pgrx install --release --pg-config "$PG_CONFIG" >"$DIR.install.log" 2>&1 ||
    { cat "$DIR.install.log"; exit 1; }
bash scripts/cluster.sh start "$DIR/cluster" "$PORT" "shared_preload_libraries=pg_conversation"
export PGHOST=$DIR/cluster PGPORT=$PORT PGUSER=postgres PGDATABASE=demo
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS demo" -c "CREATE DATABASE demo" 2>/dev/null
psql -X -q -c "CREATE EXTENSION pg_conversation"

echo
echo "== A CMD conversation, asked for twice: one row, the same id"
psql -X -c "SELECT id, uid, channel_id, channel_type, type FROM get_or_create_conversation('u1', 'ac43789cca9f4d298ceee040b02a797b____cmd', 2)" \
        -c "SELECT id, uid, channel_id, channel_type, type FROM get_or_create_conversation('u1', 'ac43789cca9f4d298ceee040b02a797b____cmd', 2)"

# The idiom applications use today: look, then insert, nothing to stop two callers in between.
psql -X -q <<'SQL'
CREATE TABLE naive_conversation (id bigserial, uid text, channel_id text, channel_type smallint);
CREATE FUNCTION naive_get_or_create(p_uid text, p_channel_id text, p_channel_type int)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE existing bigint;
BEGIN
    SELECT id INTO existing FROM naive_conversation
    WHERE uid = p_uid AND channel_id = p_channel_id AND channel_type = p_channel_type LIMIT 1;
    IF existing IS NOT NULL THEN RETURN existing; END IF;
    INSERT INTO naive_conversation (uid, channel_id, channel_type)
    VALUES (p_uid, p_channel_id, p_channel_type) RETURNING id INTO existing;
    RETURN existing;
END $$;
SQL

# Every connection asks for one of 20 fresh CMD conversations at random, as a burst of messages
# to 20 groups would; each approach gets its own 20 keys.
race() {
    local label=$1 function=$2 count=$3 run
    run="group-$(date +%s%N)"
    printf '%s\n' '\set k random(1, 20)' \
        "SELECT $function('fanout-user', '$run-' || :k || '____cmd', 2);" >"$DIR/race.sql"
    "$(pg_config --bindir)/pgbench" -n -c 32 -j 2 -t 50 -f "$DIR/race.sql" >"$DIR/pgbench.log" 2>&1 ||
        { cat "$DIR/pgbench.log"; exit 1; }
    printf '  %-28s 1600 calls from 32 connections for 20 conversations -> %s rows\n' \
        "$label" "$(psql -X -At -c "SELECT count(*) FROM $count WHERE channel_id LIKE '$run-%'")"
}
echo "== 32 connections ask for 20 fresh conversations at the same moment"
race "select-then-insert:" naive_get_or_create naive_conversation
race "get_or_create_conversation:" get_or_create_conversation conversation

echo
echo "== A message to a group of 4: conversations created for everyone, unread for all but the sender"
psql -X -q -c "SELECT conversation_message_arrived('group-42', 2, ARRAY['alice', 'bob', 'carol', 'dave'], 1, 'alice') AS advanced" \
    -c "SELECT conversation_message_arrived('group-42', 2, ARRAY['alice', 'bob', 'carol', 'dave'], 2, 'bob') AS advanced" \
    -c "SELECT conversation_message_arrived('group-42', 2, ARRAY['alice', 'bob', 'carol', 'dave'], 2, 'bob') AS redelivered" \
    -c "SELECT uid, last_msg_seq, readed_to_msg_seq, unread_count FROM conversation WHERE channel_id = 'group-42' ORDER BY uid"

echo "== carol reads up to 2 on her phone, then her laptop reports an older position: it does not go back"
psql -X -q -c "SELECT uid, readed_to_msg_seq, unread_count FROM conversation_mark_read('carol', 'group-42', 2, 2)" \
    -c "SELECT uid, readed_to_msg_seq, unread_count FROM conversation_mark_read('carol', 'group-42', 2, 1)"

echo "== bob's conversation list; a new message, his client syncs from its position, his badge; he hides it"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT channel_id, last_msg_seq, unread_count FROM conversation_list('bob');
SELECT position FROM conversation_list('bob') WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1 \gset
SELECT conversation_message_arrived('group-9', 2, ARRAY['alice', 'bob'], 1, 'alice') AS advanced;
SELECT channel_id, last_msg_seq, unread_count, hidden FROM conversation_list('bob', NULL, :'position');
SELECT unread_count AS badge, conversations AS unread_conversations FROM conversation_unread('bob');
SELECT channel_id, hidden FROM conversation_hide('bob', 'group-9', 2, 1);
SELECT channel_id FROM conversation_list('bob');
SQL

echo "== A legacy table with duplicates, merged into one row per key"
psql -X -q <<'SQL'
CREATE TABLE legacy_conversation (id bigint, uid text, channel_id text, channel_type smallint,
                                  readed_to_msg_seq bigint, last_msg_seq bigint, unread_count integer);
INSERT INTO legacy_conversation VALUES (900, 'erin', 'group-7', 2, 10, 12, 2), (901, 'erin', 'group-7', 2, 5, 15, 10),
                                       (902, 'frank', 'group-7', 2, 3, 3, 0);
SELECT * FROM conversation_duplicates('legacy_conversation');
SET client_min_messages = warning;
SELECT applied, source_rows, keys, rows_merged_away, inserted FROM conversation_import('legacy_conversation', false);
SELECT id, uid, readed_to_msg_seq, last_msg_seq, unread_count FROM conversation WHERE channel_id = 'group-7' ORDER BY uid;
SQL

echo "== The counters (shared memory; the demo cluster preloads the library)"
psql -X -q -c "SELECT calls, hits, creates, lock_waits, races_resolved, errors, batch_calls, messages, reads FROM conversation_stats"

echo
echo "The cluster is still running. Try it:"
echo "  $([ "$PG_MAJOR" = 15 ] && echo psql || echo "$PG_BINDIR/psql") -h $DIR/cluster -p $PORT -U postgres demo"
echo "Stop it with: bash scripts/demo.sh stop$([ "$PG_MAJOR" = 15 ] || echo " $PG_MAJOR")"

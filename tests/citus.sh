#!/usr/bin/env bash
# Scale-out on a real Citus cluster: a coordinator and two workers on this machine
# (scripts/citus_cluster.sh), the extension installed on it, made distributed with
# conversation_distribute(), then every function raced and checked through every node.
#   tests/citus.sh DIR PORT        (nodes on PORT, PORT+1, PORT+2)
# Needs Citus installed for the PostgreSQL of PGCONV_PG (15: Citus 13.2, 18: Citus 14.0;
# scripts/setup_citus.sh) and the race-test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$1 PORT=$2
RACE=${CARGO_TARGET_DIR:-target}/release/race-test
fail() { echo "FAILED: $*"; exit 1; }
# A command that fails outside a check (set -e) says which.
trap 'echo "FAILED: line $LINENO: $BASH_COMMAND"' ERR

bash scripts/citus_cluster.sh stop "$DIR" 2>/dev/null || true
rm -rf "$DIR"
PGCONV_CITUS_PRELOAD=pg_conversation PGCONV_CITUS_DB=pgconv_citus bash scripts/citus_cluster.sh start "$DIR" "$PORT"
trap 'bash scripts/citus_cluster.sh stop "$DIR"' EXIT
node() { local port=$1; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U postgres -d pgconv_citus "$@"; }
coordinator() { node "$PORT" "$@"; }
dsn() { echo "host=$DIR port=$1 user=postgres dbname=pgconv_citus"; }
expect() {  # expect NAME EXPECTED SQL
    local got
    got=$(coordinator -c "$3" 2>&1 || true)
    [ "$got" = "$2" ] || fail "$1: got '$got', expected '$2'"
    echo "ok: $1"
}

# Rows created before distributing are kept; running the distribution twice changes nothing.
coordinator -c "CREATE EXTENSION pg_conversation" >/dev/null
coordinator -c "SELECT count(*) FROM generate_series(1, 100) AS i, get_or_create_conversation('before' || i, 'g' || (i % 7), 1)" >/dev/null
coordinator -c "SELECT step || ': ' || done FROM conversation_distribute(8)"
coordinator -c "SELECT step || ': ' || done FROM conversation_distribute(8)" | grep -q "already distributed by uid" ||
    fail "a second conversation_distribute did not see the table distributed"
[ "$(coordinator -c "SELECT count(*) FROM conversation WHERE uid LIKE 'before%'")" = 100 ] ||
    fail "rows created before distributing were lost"
[ "$(coordinator -c "SELECT count(*) FROM ONLY conversation")" = 0 ] || true  # the shell is empty on the coordinator
echo "ok: distributed by uid in 8 shards; the 100 rows created before are there"

# Races: the same fresh keys through all three nodes at once, at every isolation level (inside
# transaction blocks: not delegated), then outside transaction blocks (delegated to the key's
# node). One row and one id per key, ids unique across the cluster.
pids=()
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    "$RACE" --dsn "$(dsn "$p")" --mode create --clients 16 --keys 50 --prefix cluster >"$DIR/race-$p.log" 2>&1 & pids+=($!)
    "$RACE" --dsn "$(dsn "$p")" --mode create --clients 16 --keys 50 --prefix delegated --autocommit >"$DIR/race-auto-$p.log" 2>&1 & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat "$DIR"/race-*.log
[ $status = 0 ] || fail "a creation race failed (above)"
# And the classic race through the coordinator alone: 32 connections x 100 fresh keys.
"$RACE" --dsn "$(dsn "$PORT")" --mode create --clients 32 --keys 100 --prefix coordinator ||
    fail "the creation race through the coordinator failed"
ids=$(coordinator -c "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || count(DISTINCT (uid, channel_id, channel_type)) FROM conversation")
read -r rows distinct_ids keys <<<"$ids"
[ "$rows" = "$distinct_ids" ] && [ "$rows" = "$keys" ] || fail "$rows rows, $distinct_ids ids, $keys keys: ids are not unique across the cluster"
echo "ok: $rows conversations created through every node, one row and one id each, ids unique across the cluster"
"$RACE" --dsn "$(dsn "$PORT")" --mode fanout --clients 8 --keys 200
"$RACE" --dsn "$(dsn "$PORT")" --mode messages --clients 8 --keys 50
"$RACE" --dsn "$(dsn "$PORT")" --mode reads --clients 16 --keys 30

# Large channels (docs/large-groups.md): conversation_distribute made conversation_channel a
# reference table, so that every node reads the channel rows from its own placement.
[ "$(coordinator -c "SELECT partmethod::text || repmodel::text FROM pg_dist_partition WHERE logicalrelid = 'conversation_channel'::regclass")" = nt ] ||
    fail "conversation_distribute did not make conversation_channel a reference table"
# Members whose shards are on both workers (and a message sent while the channel is per member).
members="ARRAY['lm1', 'lm2', 'lm3', 'lm4', 'lm5', 'lm6']"
[ "$(coordinator -c "SELECT count(DISTINCT p.groupid) FROM unnest($members) AS m, pg_dist_placement AS p
                     WHERE p.shardid = get_shard_id_for_distribution_column('conversation', m)")" = 2 ] ||
    fail "the members' shards are not on both workers"
coordinator -c "SELECT conversation_message_arrived('big', 2, $members, 1, 'lm1')" >/dev/null
expect "made large on the coordinator" "6" "SELECT conversation_channel_make_large('big', 2, $members)"
coordinator -c "SELECT conversation_message_arrived('big', 2, $members, 2, 'lm1')" \
    -c "SELECT conversation_message_arrived('big', 2, $members, 3, NULL)" >/dev/null
expect "a message wrote no other member's row" "1" "SELECT last_msg_seq FROM conversation WHERE uid = 'lm3' AND channel_id = 'big'"
expect "the sender's row" "3 2 1 true" \
    "SELECT last_msg_seq || ' ' || readed_to_msg_seq || ' ' || unread_count || ' ' || large FROM find_conversation('lm1', 'big', 2)"
expect "the channel row, on every node" "3 3" \
    "SELECT count(*) || ' ' || min(result) FROM run_command_on_placements('conversation_channel',
         \$\$SELECT last_msg_seq FROM %s WHERE channel_id = 'big'\$\$) WHERE success"
# Each member's list and badge run on the node of their shard and derive from its placement.
for m in 2 3 4 5 6; do
    listed=$(coordinator -c "SELECT channel_id || ' ' || last_msg_seq || ' ' || unread_count FROM conversation_list('lm$m')")
    badge=$(coordinator -c "SELECT unread_count FROM conversation_unread('lm$m')")
    [ "$listed $badge" = "big 3 3 3" ] || fail "lm$m is listed as '$listed' with a badge of $badge, not 'big 3 3' and 3"
done
# A sync on the member's node brings the next message (the channel row's stamp is that node's).
lm3_position=$(coordinator -c "SELECT position FROM conversation_list('lm3')")
coordinator -c "SELECT conversation_message_arrived('big', 2, $members, 4, 'lm2')" >/dev/null
expect "a sync brings a large channel's message" "big 4 4" \
    "SELECT channel_id || ' ' || last_msg_seq || ' ' || unread_count FROM conversation_list('lm3', NULL, '$lm3_position')"
lm3_position=$(coordinator -c "SELECT position FROM conversation_list('lm3', NULL, '$lm3_position')")
expect "a sync with nothing changed" "0" "SELECT count(*) FROM conversation_list('lm3', NULL, '$lm3_position')"
# A read on the member's node, a hide and a clear: the membership written as it stands.
expect "a read" "4 0" "SELECT readed_to_msg_seq || ' ' || unread_count FROM conversation_mark_read('lm3', 'big', 2, 4)"
expect "a hide" "t" "SELECT hidden FROM conversation_hide('lm4', 'big', 2)"
expect "a clear" "4 0" "SELECT deleted_at_msg_seq || ' ' || unread_count FROM conversation_clear('lm5', 'big', 2)"
coordinator -c "SELECT conversation_message_arrived('big', 2, $members, 5, NULL)" >/dev/null
expect "the read one's list" "big 5 1" "SELECT channel_id || ' ' || last_msg_seq || ' ' || unread_count FROM conversation_list('lm3')"
expect "the hidden one is back" "big 1 false" "SELECT channel_id || ' ' || unread_count || ' ' || hidden FROM conversation_list('lm4')"
# A membership deleted (a shard's trigger cannot write the reference table): the next message
# naming the same members counts the memberships, and makes the row again, the message unread.
coordinator -c "DELETE FROM conversation WHERE uid = 'lm6' AND channel_id = 'big'" \
    -c "SELECT conversation_message_arrived('big', 2, $members, 6, NULL)" >/dev/null
expect "a deleted membership made again" "6 0 1 true" \
    "SELECT last_msg_seq || ' ' || readed_to_msg_seq || ' ' || unread_count || ' ' || large FROM find_conversation('lm6', 'big', 2)"
# Per member again: every row written as it stands, the channel row gone from every node.
expect "made per member" "6" "SELECT conversation_channel_make_per_member('big', 2)"
expect "the rows as they stood" "lm1 6 2 4 false,lm2 6 4 2 false,lm3 6 4 2 false,lm4 6 0 2 false,lm5 6 4 2 false,lm6 6 0 1 false" \
    "SELECT string_agg(uid || ' ' || last_msg_seq || ' ' || readed_to_msg_seq || ' ' || unread_count || ' ' || large, ',' ORDER BY uid)
     FROM conversation WHERE channel_id = 'big'"
expect "no channel row on any node" "0" \
    "SELECT sum(result::int) FROM run_command_on_placements('conversation_channel', \$\$SELECT count(*) FROM %s\$\$)"
# A message naming pg_conversation.large_channel_members members makes its channel large.
advanced=$(coordinator -c "SET pg_conversation.large_channel_members = 2" \
    -c "SELECT conversation_message_arrived('auto1', 1, ARRAY['auto-a', 'auto-b'], 1, NULL)")
[ "$advanced" = 2 ] || fail "the message advanced $advanced conversations, not 2"
expect "made large by a message" "2 1" \
    "SELECT (SELECT count(*) FROM conversation WHERE channel_id = 'auto1' AND large) || ' ' ||
            (SELECT count(*) FROM conversation_channel WHERE channel_id = 'auto1')"
expect "its members' lists" "auto1 1" "SELECT channel_id || ' ' || unread_count FROM conversation_list('auto-b')"
# Messages, reads and mode changes racing through the coordinator, each member's end state
# recomputed from the log (read committed and repeatable read: Citus runs no serializable
# transaction across nodes).
"$RACE" --dsn "$(dsn "$PORT")" --mode large --clients 4 --keys 12
echo "ok: large channels on Citus: the channel row on every node, lists, badges, syncs, reads and departures on the members' nodes"

# Hits are served from the worker's own shard: on the node that holds the key's shard, a hit and
# a lookup run no statement at all (Citus logs every statement it runs locally or sends), and are
# counted there; through the coordinator, the call is delegated to that node.
shard_port=$(coordinator -c "SELECT n.nodeport FROM pg_dist_placement AS p JOIN pg_dist_node AS n USING (groupid)
                             WHERE p.shardid = get_shard_id_for_distribution_column('conversation', 'before1'::text)")
hits_before=$(node "$shard_port" -c "SELECT hits FROM conversation_stats")
log=$(node "$shard_port" -c "SET citus.log_local_commands = on" -c "SET citus.log_remote_commands = on" \
    -c "SET client_min_messages = log" \
    -c "SELECT uid FROM get_or_create_conversation('before1', 'g1', 1)" -c "SELECT uid FROM find_conversation('before1', 'g1', 1)" 2>&1)
[ "$log" = "$(printf 'before1\nbefore1')" ] || fail "a hit on the shard's node ran statements: $log"
coordinator -c "SELECT id FROM get_or_create_conversation('before1', 'g1', 1)" >/dev/null
hits_after=$(node "$shard_port" -c "SELECT hits FROM conversation_stats")
[ "$hits_after" -ge $((hits_before + 2)) ] || fail "the hits were not counted on the shard's node ($hits_before, then $hits_after)"
echo "ok: hits are served from the shard on its node (port $shard_port), delegated there from the coordinator"

# Every other function on the distributed table.
expect "a batch as JSON" "2" \
    "SELECT count(*) FROM get_or_create_conversations('[{\"uid\": \"before1\", \"channel_id\": \"g1\", \"channel_type\": 1}, {\"uid\": \"j1\", \"channel_id\": \"g1\", \"channel_type\": 1}]')"
expect "read state" "before2 7 0" \
    "SELECT uid || ' ' || readed_to_msg_seq || ' ' || unread_count FROM conversation_mark_read('before2', 'g2', 1, 7)"
expect "the duplicate check" "0" "SELECT count(*) FROM conversation_duplicates()"
expect "the growth alert" "before1" "SELECT uid FROM conversation_growth(0, '1 hour') WHERE uid = 'before1'"
coordinator -c "CREATE TABLE legacy (id bigint, uid text, channel_id text, channel_type integer)" \
    -c "INSERT INTO legacy VALUES (100000, 'legacy1', 'g1', 1), (100001, 'legacy1', 'g1', 1), (1, 'before3', 'g3', 1)"
expect "the import" "true 2 1 0 1" \
    "SELECT applied || ' ' || keys || ' ' || inserted || ' ' || updated || ' ' || ids_reassigned FROM conversation_import('legacy', false)"
expect "the import kept the legacy id" "100000" "SELECT id FROM find_conversation('legacy1', 'g1', 1)"
coordinator -c "SELECT count(*) FROM get_or_create_conversations('stale____cmd', 1, ARRAY['s1', 's2', 's3'])" \
    -c "UPDATE conversation SET updated_at = now() - interval '40 days' WHERE channel_id = 'stale____cmd'" >/dev/null
expect "the cleanup" "3" "CALL conversation_cleanup_cmd('30 days', 2)"
expect "nothing stale is left" "0" "SELECT count(*) FROM conversation WHERE channel_id = 'stale____cmd'"
# A call per row of the table itself: Citus pushes the query down to the shards, and each call
# finds its key in the shard being read on that node (Citus refuses a nested distributed query).
expect "a call per row, pushed down to the shards" "50" \
    "SELECT count(*) FROM (SELECT get_or_create_conversation(uid, channel_id, channel_type) FROM conversation LIMIT 50) AS c"
# A group created in a batch, then its first message: every member's row is found where it was
# created, and the members' lists and badges show it.
coordinator -c "SELECT count(*) FROM get_or_create_conversations('cg', 2, ARRAY['a', 'b', 'c', 'd', 'e'])" >/dev/null
expect "a message to a group just created" "5" \
    "SELECT conversation_message_arrived('cg', 2, ARRAY['a', 'b', 'c', 'd', 'e'], 1, 'a')"
expect "a member's list" "cg 1" "SELECT channel_id || ' ' || unread_count FROM conversation_list('b')"
expect "a member's badge" "1 1" "SELECT unread_count || ' ' || conversations FROM conversation_unread('b')"
ids=$(coordinator -c "SELECT count(*) = count(DISTINCT id) FROM conversation")
[ "$ids" = t ] || fail "ids are not unique after every function ran"
echo "ok: every function works on the distributed table; ids unique across the cluster"

# The conversation list. Called on its own, it is delegated to the node of the user's shard and
# takes its positions there (they name that node's cluster); inside a transaction block it would
# run on the coordinator, whose snapshot says nothing of the shard's, so it is refused.
coordinator -c "SELECT conversation_message_arrived('lg1', 1, ARRAY['lister', 'other'], 1, 'other')" >/dev/null
expect "the list, delegated" "lg1 1" "SELECT channel_id || ' ' || unread_count FROM conversation_list('lister', 1)"
expect "the badge" "1 1" "SELECT unread_count || ' ' || conversations FROM conversation_unread('lister')"
lister_port=$(coordinator -c "SELECT n.nodeport FROM pg_dist_placement AS p JOIN pg_dist_node AS n USING (groupid)
                              WHERE p.shardid = get_shard_id_for_distribution_column('conversation', 'lister'::text)")
position=$(coordinator -c "SELECT position FROM conversation_list('lister', 1)")
[ "$(cut -d/ -f3 <<<"$position" | cut -d: -f1)" = "$(node "$lister_port" -c "SELECT system_identifier FROM pg_control_system()")" ] ||
    fail "the position ($position) was not taken on the node of the user's shard (port $lister_port)"
expect "hide" "t" "SELECT hidden FROM conversation_hide('lister', 'lg1', 1)"
expect "a sync from the position brings the hidden one" "lg1 true" \
    "SELECT channel_id || ' ' || hidden FROM conversation_list('lister', 1, '$position')"
expect "clear" "1 0" "SELECT deleted_at_msg_seq || ' ' || unread_count FROM conversation_clear('lister', 'lg1', 1)"
refused=$(coordinator -c "BEGIN" -c "SELECT * FROM conversation_list('lister')" -c "COMMIT" 2>&1 || true)
grep -q "conversation_list runs on the Citus node that holds the user's shard" <<<"$refused" ||
    fail "a list in a transaction block on the coordinator was not refused: $refused"
echo "ok: list, badge, hide and clear on the distributed table; positions taken on the shard's node"

# On the shard's node, a sync that reports a departure and the badge read the shard itself: Citus
# runs nothing there (it logs what it runs). The departure's key, looked up by an unqualified
# shard name under the pinned search_path, was read through SQL. And the plan of a kept statement
# that Citus ran there grew on every run (a worker backend reached 12 GB under syncs): a session
# that takes a message, marks, hides, clears, syncs and reads the badge 1,000 times keeps its memory.
syncer_port=$(coordinator -c "SELECT n.nodeport FROM pg_dist_placement AS p JOIN pg_dist_node AS n USING (groupid)
                              WHERE p.shardid = get_shard_id_for_distribution_column('conversation', 'syncer'::text)")
coordinator -c "SELECT conversation_message_arrived('sg1', 1, ARRAY['syncer'], 1, 'other')" >/dev/null
synced=$(coordinator -c "SELECT position FROM conversation_list('syncer', 1)")
coordinator -c "SELECT conversation_message_arrived('sg2', 1, ARRAY['syncer'], 1, 'other')" \
    -c "DELETE FROM conversation WHERE uid = 'syncer' AND channel_id = 'sg2'" >/dev/null
log=$(node "$syncer_port" -c "SET citus.log_local_commands = on" -c "SET citus.log_remote_commands = on" -c "SET client_min_messages = log" \
    -c "SELECT channel_id || ' ' || departed FROM conversation_list('syncer', 1, '$synced')" \
    -c "SELECT unread_count FROM conversation_unread('syncer')" 2>&1 || true)
[ "$log" = "$(printf 'sg2 true\n1')" ] || fail "a sync and the badge on the shard's node did not read the shard alone: $log"
grown=$(node "$syncer_port" -c "CREATE TEMPORARY TABLE before AS SELECT sum(total_bytes) AS bytes FROM pg_backend_memory_contexts" \
    -c "DO \$\$ BEGIN FOR i IN 1..1000 LOOP
            PERFORM conversation_message_arrived('sg1', 1, ARRAY['syncer'], 1 + i, 'other');
            PERFORM conversation_mark_read('syncer', 'sg1', 1, 1 + i); PERFORM conversation_hide('syncer', 'sg1', 1);
            PERFORM conversation_clear('syncer', 'sg1', 1);
            PERFORM * FROM conversation_list('syncer', 1, '$synced'); PERFORM * FROM conversation_unread('syncer');
        END LOOP; END \$\$" \
    -c "SELECT (((SELECT sum(total_bytes) FROM pg_backend_memory_contexts) - bytes) / 1024)::int8 FROM before")
[ "$grown" -lt 4096 ] || fail "1,000 rounds of writes, syncs and badges grew the session's memory by $grown kB"
echo "ok: on the shard's node, syncs and the badge read the shard alone; 1,000 rounds of writes and reads grew the session by $grown kB"
"$RACE" --dsn "$(dsn "$PORT")" --mode sync --clients 4 --autocommit

# A shard moved to the other worker: its rows are stamped by the node that writes them there
# (Citus moves them with logical replication, whose apply fires the ALWAYS trigger), and a
# position taken on the old node is refused there with 72000 (the client lists from the start).
position=$(coordinator -c "SELECT position FROM conversation_list('lister', 1, '$position')")
other_port=$([ "$lister_port" = $((PORT + 1)) ] && echo $((PORT + 2)) || echo $((PORT + 1)))
coordinator -c "SELECT citus_move_shard_placement(get_shard_id_for_distribution_column('conversation', 'lister'::text),
                    '$DIR', $lister_port, '$DIR', $other_port, shard_transfer_mode => 'force_logical')" >/dev/null
expect "the moved conversation" "lg1 1 true" "SELECT channel_id || ' ' || deleted_at_msg_seq || ' ' || hidden FROM find_conversation('lister', 'lg1', 1)"
moved=$(coordinator -c "SELECT * FROM conversation_list('lister', 1, '$position')" 2>&1 || true)
grep -q "position was returned by another server" <<<"$moved" || fail "a position of the shard's old node was not refused: $moved"
echo "ok: after a shard move, the rows are listed from the new node, and an old position is refused (72000)"

# On the new node, a sync with nothing changed returns nothing: moved rows carry no version of the
# old node's history (above this node's, they came back on every sync).
coordinator -c "SELECT conversation_message_arrived('lg1', 1, ARRAY['lister', 'other'], 2, 'other')" >/dev/null
here=$(coordinator -c "SELECT position FROM conversation_list('lister', 1)" | tail -1)
expect "a sync with nothing changed, after the move" "0" "SELECT count(*) FROM conversation_list('lister', 1, '$here')"
# Moved back: a change made meanwhile on the other node is never lost to a position the first
# node handed out before the moves; the shard there is new, so that position is refused (72000).
coordinator -c "SELECT conversation_mark_read('lister', 'lg1', 1, 2)" >/dev/null
coordinator -c "CALL citus_cleanup_orphaned_resources()" >/dev/null 2>&1 || true
coordinator -c "SELECT citus_move_shard_placement(get_shard_id_for_distribution_column('conversation', 'lister'::text),
                    '$DIR', $other_port, '$DIR', $lister_port, shard_transfer_mode => 'force_logical')" >/dev/null
back=$(coordinator -c "SELECT * FROM conversation_list('lister', 1, '$position')" 2>&1 || true)
grep -q "position was returned before trigger conversation_stamp was last made" <<<"$back" ||
    fail "a position of the first node, from before the shard moved away and back, was not refused: $back"
expect "the change made on the other node" "lg1 0" "SELECT channel_id || ' ' || unread_count FROM conversation_list('lister', 1)"
echo "ok: moved back, the first node refuses its old positions (72000); a sync after the move returns nothing unchanged"

# A cluster distributed with 0.4.0, updated to this version: Citus's coordinator applies the new
# columns and indexes to every shard, the workers put the stamp trigger on theirs, and a second
# conversation_distribute delegates the new functions. Then the list works as on a fresh install.
install -m 644 sql/releases/pg_conversation--0.4.0.sql "$(pg_config --sharedir)/extension/"
coordinator -c "DROP EXTENSION pg_conversation CASCADE" -c "CREATE EXTENSION pg_conversation VERSION '0.4.0'" \
    -c "SELECT count(*) FROM generate_series(1, 100) AS i, get_or_create_conversation('old' || i, 'g' || (i % 7), 1)" \
    -c "SELECT count(*) FROM conversation_distribute(8)" \
    -c "SELECT count(*) FROM conversation_message_arrived('g1', 1, ARRAY['old1', 'old8'], 3, 'old8')" >/dev/null
coordinator -c "ALTER EXTENSION pg_conversation UPDATE" >/dev/null
# Until conversation_distribute runs again, conversation_channel is on each node alone: a channel
# is not made large (0A000, nothing changed), and a message naming
# pg_conversation.large_channel_members members leaves its channel per member.
refused=$(coordinator -c "\set VERBOSITY verbose" -c "SELECT conversation_channel_make_large('g1', 1, ARRAY['old1', 'old8'])" 2>&1) &&
    fail "a channel was made large while conversation_channel is on the coordinator alone: $refused"
grep -q "0A000" <<<"$refused" || fail "not refused with 0A000: $refused"
advanced=$(coordinator -c "SET pg_conversation.large_channel_members = 2" \
    -c "SELECT conversation_message_arrived('g2', 1, ARRAY['old2', 'old9'], 4, NULL)")
[ "$advanced" = 2 ] || fail "the message advanced $advanced conversations, not 2"
expect "nothing made large before conversation_distribute" "0 0" \
    "SELECT (SELECT count(*) FROM conversation WHERE large) || ' ' || (SELECT count(*) FROM conversation_channel)"
coordinator -c "SELECT step || ': ' || done FROM conversation_distribute(8)" | grep -q "^channels: conversation_channel is a reference table" ||
    fail "conversation_distribute did not make conversation_channel a reference table on the updated cluster"
expect "then made large" "2" "SELECT conversation_channel_make_large('g1', 1, ARRAY['old1', 'old8'])"
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    [ "$(node "$p" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] ||
        fail "port $p: the extension was not updated"
done
shards=$(coordinator -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'conversation'::regclass")
# Per shard: the stamp (a row trigger, on DELETE too) and the truncation mark (a statement trigger).
stamped=$(coordinator -c "SELECT string_agg(result, ',') FROM (SELECT DISTINCT result FROM run_command_on_shards('conversation',
    \$\$SELECT count(*) FILTER (WHERE tgtype & 1 = 1 AND tgtype & 8 = 8) || ' ' || count(*) FILTER (WHERE tgtype & 1 = 0 AND tgtype & 32 = 32)
         FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgfoid = 'conversation_stamp'::regproc AND tgenabled = 'A'\$\$)) AS r")
[ "$stamped" = "1 1" ] || fail "not every one of $shards shards has the stamp and truncation triggers after the update: $stamped"
expect "an updated row" "g1 3 1" "SELECT channel_id || ' ' || last_msg_seq || ' ' || unread_count FROM conversation_list('old1')"
expect "a change after the update is stamped" "t" \
    "SELECT version > 0 FROM conversation_mark_read('old1', 'g1', 1, 3)"
"$RACE" --dsn "$(dsn "$PORT")" --mode sync --clients 4 --autocommit
echo "ok: a cluster distributed with 0.4.0 updates in place: every shard stamped, the list delegated"

# A shard whose trigger is disabled: its users' lists are refused (55000), not silently missing
# changes; conversation_distribute() puts the trigger back on every shard.
coordinator -c "SET citus.enable_unsafe_triggers = on" -c "ALTER TABLE conversation DISABLE TRIGGER conversation_stamp" >/dev/null
refused=$(coordinator -c "SELECT * FROM conversation_list('old1')" 2>&1 || true)
grep -q "changes to table conversation are not all stamped" <<<"$refused" || fail "a list over an unstamped shard was not refused: $refused"
coordinator -c "SELECT step || ': ' || done FROM conversation_distribute(8)" | grep -q "^stamp: " || fail "conversation_distribute did not stamp"
expect "the list once the shards stamp again" "g1" "SELECT channel_id FROM conversation_list('old1')"
echo "ok: an unstamped shard is refused, and conversation_distribute repairs it"

# Departures and TRUNCATE on the workers, where lists are read: a delete is reported to the
# position before it; a TRUNCATE of the distributed table (Citus truncates each shard on its node)
# refuses the positions from before it.
position=$(coordinator -c "SELECT position FROM conversation_list('old1', 1, NULL, 1000)" | tail -1)
coordinator -c "DELETE FROM conversation WHERE uid = 'old1' AND channel_id = 'g1'" >/dev/null
expect "a delete reported as a departure" "g1 true" "SELECT channel_id || ' ' || departed FROM conversation_list('old1', 1, '$position')"
coordinator -c "TRUNCATE conversation" >/dev/null
refused=$(coordinator -c "SELECT * FROM conversation_list('old1', 1, '$position')" 2>&1 || true)
grep -q "position was returned before table conversation was truncated" <<<"$refused" || fail "a position from before TRUNCATE was not refused: $refused"
echo "ok: departures and TRUNCATE reach the lists on the workers"

# The channel table distributed by a DBA in another way (by channel_id: each node holds some
# channel rows, not all): conversation_distribute refuses it (55000), and a large membership read
# on a node is refused (55000), never derived from a node's partial copy.
coordinator -c "DROP EXTENSION pg_conversation CASCADE" -c "CREATE EXTENSION pg_conversation" \
    -c "SELECT count(*) FROM get_or_create_conversations('hg', 2, ARRAY['h1', 'h2'])" \
    -c "SET citus.enable_unsafe_triggers = on" -c "SELECT create_distributed_table('conversation_channel', 'channel_id')" >/dev/null
refused=$(coordinator -c "\set VERBOSITY verbose" -c "SELECT * FROM conversation_distribute(8)" 2>&1 || true)
grep -q "55000.*table conversation_channel is a Citus table, but not a reference table" <<<"$refused" ||
    fail "conversation_distribute took a channel table distributed by channel_id: $refused"
# (conversation_distribute ran in one transaction: the table stayed as it was, local.) The
# conversation table distributed by hand, a large membership and its channel row made by hand.
coordinator -c "SET citus.enable_unsafe_triggers = on" -c "SELECT create_distributed_table('conversation', 'uid')" \
    -c "SELECT truncate_local_data_after_distributing_table('conversation')" \
    -c "INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, updated_at) VALUES ('hg', 2, 5, now())" \
    -c "UPDATE conversation SET large = true WHERE channel_id = 'hg'" >/dev/null
# On every node: each worker holds shards of the channel table, none all of its rows.
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    refused=$(node "$p" -c "\set VERBOSITY verbose" -c "SELECT * FROM find_conversation('h1', 'hg', 2)" 2>&1 || true)
    grep -q "55000.*holds no copy of table conversation_channel" <<<"$refused" ||
        fail "port $p: a large membership was read with the channel table distributed by channel_id: $refused"
done
echo "ok: a channel table distributed otherwise than as a reference table is refused (55000), by conversation_distribute and by reads"

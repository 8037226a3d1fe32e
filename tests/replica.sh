#!/usr/bin/env bash
# A real streaming replica (pg_basebackup -R), as servers that route reads to replicas use it:
# find_conversation, the hit path and the list answer there (positions taken there lose no change
# a primary transaction commits later), and everything that would write says 25006
# (read-only transaction) with a hint, before taking any lock. Starts its own primary and standby.
#   tests/replica.sh DIR PORT        (the standby listens on PORT + 1)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$1 PORT=$2 STANDBY_PORT=$(($2 + 1))
BINDIR=$PG_BINDIR
fail() { echo "FAILED: $*"; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }

bash scripts/cluster.sh stop "$DIR/primary" 2>/dev/null || true
[ -f "$DIR/standby/postmaster.pid" ] && as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -m fast -w stop >/dev/null
rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
bash scripts/cluster.sh start "$DIR/primary" "$PORT" shared_preload_libraries=pg_conversation
stop_all() {
    [ -f "$DIR/standby/postmaster.pid" ] && as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -m fast -w stop >/dev/null
    bash scripts/cluster.sh stop "$DIR/primary"
}
trap stop_all EXIT
primary() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/primary" -p "$PORT" -U postgres "$@"; }
standby() { psql -X -q -At -F " " -h "$DIR" -p "$STANDBY_PORT" -U postgres -d replica "$@"; }

primary -c "CREATE DATABASE replica"
primary -d replica >/dev/null <<'SQL'
CREATE EXTENSION pg_conversation;
SELECT conversation_message_arrived('g1', 2, ARRAY['alice', 'bob', 'carol'], 7, 'alice');
SQL

as_postgres "$BINDIR/pg_basebackup" -h "$DIR/primary" -p "$PORT" -U postgres -D "$DIR/standby" -R -X stream --checkpoint=fast
as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w \
    -o "-p $STANDBY_PORT -k $DIR -c listen_addresses='' -c max_connections=200 -c hot_standby=on -c shared_preload_libraries=pg_conversation" start >/dev/null
[ "$(standby -c "SELECT pg_is_in_recovery()")" = t ] || fail "the standby is not in recovery"

# A change made on the primary after the backup, streamed over.
primary -d replica -c "SELECT conversation_message_arrived('g1', 2, ARRAY['alice', 'bob', 'dave'], 8, 'bob')" >/dev/null
lsn=$(primary -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 100); do
    [ "$(standby -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
[ "$(standby -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] || fail "the standby did not replay within 10 s"

expect() {  # expect NAME EXPECTED SQL
    local got
    got=$(standby -c "$3" 2>&1 | sed 's/^ERROR:  //' | head -1 || true)
    [ "$got" = "$2" ] || fail "$1: got '$got', expected '$2'"
    echo "ok: $1: $got"
}
expect "find_conversation finds a row" "dave 8 1" "SELECT uid, last_msg_seq, unread_count FROM find_conversation('dave', 'g1', 2)"
expect "find_conversation says NULL for none" "t" "SELECT find_conversation('nobody', 'g1', 2) IS NULL"
expect "a hit is served" "bob 8 0" "SELECT uid, readed_to_msg_seq, unread_count FROM get_or_create_conversation('bob', 'g1', 2)"
expect "a batch of existing keys is served" "3" "SELECT count(*) FROM get_or_create_conversations('g1', 2, ARRAY['alice', 'bob', 'carol'])"
expect "a miss is refused" "get_or_create_conversation cannot write in a read-only transaction" \
    "SELECT get_or_create_conversation('nobody', 'g1', 2)"
expect "a batch with a new key is refused" "get_or_create_conversations cannot write in a read-only transaction" \
    "SELECT get_or_create_conversations('g1', 2, ARRAY['alice', 'nobody'])"
expect "a message is refused" "conversation_message_arrived cannot write in a read-only transaction" \
    "SELECT conversation_message_arrived('g1', 2, ARRAY['alice'], 9, 'bob')"
expect "a read is refused" "conversation_mark_read cannot write in a read-only transaction" \
    "SELECT conversation_mark_read('carol', 'g1', 2, 8)"
sqlstate=$(standby -v VERBOSITY=sqlstate -c "SELECT get_or_create_conversation('nobody', 'g1', 2)" 2>&1 || true)
[ "$sqlstate" = "ERROR:  25006" ] || fail "the refusal's SQLSTATE: got '$sqlstate', expected 25006"
echo "ok: the refusal's SQLSTATE: 25006"
expect "the counters are kept on the standby too" "t" "SELECT preloaded AND hits >= 1 FROM conversation_stats"
expect "the list is served" "g1 1" "SELECT channel_id, unread_count FROM conversation_list('carol')"
expect "the badge is served" "1 1" "SELECT unread_count, conversations FROM conversation_unread('carol')"
expect "a hide is refused" "conversation_hide cannot write in a read-only transaction" "SELECT conversation_hide('carol', 'g1', 2)"
expect "a clear is refused" "conversation_clear cannot write in a read-only transaction" "SELECT conversation_clear('carol', 'g1', 2)"

# A position taken on the standby while a transaction on the primary has written and not yet
# committed: a standby's snapshot knows the primary's running transactions, so the change is
# returned once it commits.
wait_replay() {
    local lsn
    # A commit flushes the WAL before it, the running transaction's too: the standby can get it.
    primary -c "SELECT txid_current()" >/dev/null
    lsn=$(primary -c "SELECT pg_current_wal_flush_lsn()")
    for _ in $(seq 1 100); do
        [ "$(standby -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
        sleep 0.1
    done
    fail "the standby did not replay within 10 s"
}
primary -d replica -c "CREATE TABLE gate ()"
primary -d replica -c "BEGIN" -c "SELECT conversation_message_arrived('g2', 2, ARRAY['carol'], 1, NULL)" \
    -c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM gate) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$" \
    -c "COMMIT" >/dev/null &
writer=$!
for _ in $(seq 1 100); do  # until the writer has written and waits at the gate
    [ "$(primary -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DO %gate%'")" = 1 ] && break
    sleep 0.1
done
wait_replay
[ "$(standby -c "SELECT find_conversation('carol', 'g2', 2) IS NULL")" = t ] ||
    fail "the writer's transaction was not running when the position was taken"
position=$(standby -c "SELECT position FROM conversation_list('carol') WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1")
[ -n "$position" ] || fail "no position from the standby"
[ "$(standby -c "SELECT count(*) FROM conversation_list('carol', NULL, '$position')")" = 0 ] ||
    fail "a change not yet committed was listed"
primary -d replica -c "INSERT INTO gate DEFAULT VALUES"  # the writer commits
wait "$writer"
wait_replay
expect "the change committed after the standby's position comes back" "g2 1" \
    "SELECT channel_id, unread_count FROM conversation_list('carol', NULL, '$position')"

# A replica behind the position: page 1 on the primary, page 2 on a standby that has not replayed
# the change page 1 saw. It must refuse (40001, retry) rather than answer from older rows, and
# answer once it has caught up.
standby -c "SELECT pg_wal_replay_pause()" >/dev/null
primary -d replica -c "SELECT conversation_message_arrived('g3', 2, ARRAY['carol', 'erin'], 1, 'erin')" >/dev/null
page1=$(primary -d replica -c "SELECT position FROM conversation_list('carol', NULL, '$position', 1) WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1")
[ -n "$page1" ] || fail "no position from the primary"
got=$(standby -c "SELECT count(*) FROM conversation_list('carol', NULL, '$page1')" 2>&1 || true)
grep -q "position is ahead of this transaction's snapshot" <<<"$got" || fail "a replica behind the position answered: $got"
echo "ok: a replica behind the position refuses it: $(head -1 <<<"$got")"
[ "$(standby -v VERBOSITY=verbose -c "SELECT count(*) FROM conversation_list('carol', NULL, '$page1')" 2>&1 | grep -o '40001')" = 40001 ] ||
    fail "the refusal is not 40001"
standby -c "SELECT pg_wal_replay_resume()" >/dev/null
wait_replay
# Page 1 returned g3, the newer change; the rest of that pass is g2.
expect "once caught up, the replica continues the sync" "g2 1" \
    "SELECT channel_id, unread_count FROM conversation_list('carol', NULL, '$page1')"
# A transaction open on the primary with more subtransactions than a snapshot keeps track of: the
# standby's snapshots overflow, yet know every top-level transaction in progress, which is all a
# stamp is made of. A sync with nothing changed returns nothing (positions once fell back to the
# oldest running transaction there, and re-sent every change since on every sync).
primary -d replica -c "TRUNCATE gate"
primary -d replica -c "CREATE TABLE scratch (i int)"
primary -d replica -c "BEGIN" \
    -c "DO \$\$ BEGIN FOR i IN 1..70 LOOP BEGIN INSERT INTO scratch VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END \$\$" \
    -c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM gate) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$" \
    -c "COMMIT" >/dev/null &
writer=$!
for _ in $(seq 1 100); do
    [ "$(primary -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DO %gate%'")" = 1 ] && break
    sleep 0.1
done
primary -d replica -c "SELECT conversation_message_arrived('g4', 2, ARRAY['carol'], 1, NULL)" >/dev/null
wait_replay
latest=$(standby -c "SELECT position FROM conversation_list('carol') WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1")
expect "with an overflowed snapshot, a sync with nothing changed" "0" "SELECT count(*) FROM conversation_list('carol', NULL, '$latest')"
primary -d replica -c "INSERT INTO gate DEFAULT VALUES"
wait "$writer"
[ "$(primary -d replica -c "SELECT count(*) FROM conversation")" = 8 ] || fail "the primary does not hold 8 conversations"

# A membership of a large channel is derived on the standby as on the primary: the channel row's
# message counts there, in the single-row functions, the list and the badge.
primary -d replica -c "SELECT conversation_channel_make_large('g9', 2, ARRAY['erin', 'frank'])" \
    -c "SELECT conversation_message_arrived('g9', 2, ARRAY['erin', 'frank'], s, 'frank') FROM generate_series(1, 5) AS s" >/dev/null
wait_replay
expect "a large membership is derived on the standby" "erin 5 5 t" \
    "SELECT uid, last_msg_seq, unread_count, large FROM find_conversation('erin', 'g9', 2)"
expect "the standby lists it as it stands" "g9 5" "SELECT channel_id, unread_count FROM conversation_list('erin')"
expect "the standby's badge counts it" "5 1" "SELECT unread_count, conversations FROM conversation_unread('erin')"

# The sync race with a standby reader: writers commit out of order on the primary while each
# client reads every other page on the standby, its position carried across; afterwards every
# client holds exactly the table.
RACE=${CARGO_TARGET_DIR:-target}/release/race-test
"$RACE" --dsn "host=$DIR/primary port=$PORT user=postgres dbname=replica" \
    --standby "host=$DIR port=$STANDBY_PORT user=postgres dbname=replica" --mode sync --clients 4 --autocommit
echo "ok: a streaming replica serves hits, lookups and the list, and refuses writes with 25006"

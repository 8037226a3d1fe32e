#!/usr/bin/env bash
# Positions across a cluster's history, on real clusters: a crash that loses unflushed WAL, a
# failover to a standby that had not replayed as far, and a logical-replication subscriber. In
# each, a client syncing from the position it holds ends with exactly the table, or is told to
# list from the start (72000); never holds something else for good.
#   tests/history.sh DIR PORT        (the standby listens on PORT + 1, the subscriber on PORT + 2,
#                                     the race's standby on PORT + 3)
# Last, the sync race through a failover: clients syncing (every other page on a standby) while
# writers commit, the standby promoted half-way and everyone moved to it; each client ends holding
# exactly the new primary's table (listing from the start where it refuses a position, 72000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$1 PORT=$2 STANDBY_PORT=$(($2 + 1)) SUBSCRIBER_PORT=$(($2 + 2)) RACE_STANDBY_PORT=$(($2 + 3))
RACE=${CARGO_TARGET_DIR:-target}/release/race-test
BINDIR=$PG_BINDIR
fail() { echo "FAILED: $*"; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }

stop_standby() { [ -f "$DIR/standby/postmaster.pid" ] && as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -m fast -w stop >/dev/null || true; }
stop_all() {
    stop_standby
    [ -f "$DIR/race-standby/postmaster.pid" ] && as_postgres "$BINDIR/pg_ctl" -D "$DIR/race-standby" -m fast -w stop >/dev/null || true
    bash scripts/cluster.sh stop "$DIR/subscriber" 2>/dev/null || true
    bash scripts/cluster.sh stop "$DIR/primary" 2>/dev/null || true
}
stop_all
rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
trap stop_all EXIT
# Commits do not wait for their WAL to reach disk, and the WAL writer waits 10 s: a crash loses
# what the last seconds committed, as a server with synchronous_commit = off does.
bash scripts/cluster.sh start "$DIR/primary" "$PORT" shared_preload_libraries=pg_conversation wal_level=logical \
    synchronous_commit=off wal_writer_delay=10s
primary() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/primary" -p "$PORT" -U postgres -d history "$@"; }
standby() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$STANDBY_PORT" -U postgres -d history "$@"; }
subscriber() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/subscriber" -p "$SUBSCRIBER_PORT" -U postgres -d history "$@"; }
psql -X -q -h "$DIR/primary" -p "$PORT" -U postgres -c "CREATE DATABASE history"
primary >/dev/null <<'SQL'
CREATE EXTENSION pg_conversation;
SELECT get_or_create_conversation('alice', g, 1) FROM unnest(ARRAY['g1', 'g2', 'g3']) AS g;
SQL

# The position after a full list, and what a sync from a position returns ("channel unread"...,
# or the SQLSTATE it raised).
position_on() { "$1" -c "SELECT position FROM conversation_list('alice', 1, ${2:-NULL}, 1000)" | tail -1; }
sync_on() {
    "$1" -c "SELECT coalesce(string_agg(channel_id || ' ' || unread_count, ', ' ORDER BY channel_id), 'nothing')
             FROM conversation_list('alice', 1, '$2', 1000)" 2>&1 | sed -n 's/^ERROR:  //p; /^[a-z]/p' | head -1
}
sqlstate_on() {
    "$1" -c "DO \$\$ BEGIN PERFORM * FROM conversation_list('alice', 1, '$2', 1000); RAISE NOTICE 'no error';
             EXCEPTION WHEN OTHERS THEN RAISE NOTICE '%', SQLSTATE; END \$\$" 2>&1 | sed -n 's/^NOTICE:  //p'
}
expect() {  # expect NAME EXPECTED GOT
    [ "$3" = "$2" ] || fail "$1: got '$3', expected '$2'"
    echo "ok: $1: $3"
}
wait_until() {  # wait_until WHAT SQL-FUNCTION SQL: until SQL says t, 10 s at most
    for _ in $(seq 1 100); do [ "$("$2" -c "$3" 2>/dev/null)" = t ] && return 0; sleep 0.1; done
    fail "$1 within 10 s"
}

# ---- 1. A crash loses the last commits' WAL. A position handed out after them counts their
# transaction ids as seen; recovery would hand the ids out again, and a change stamped with a
# reused id would never be returned. The position's WAL is flushed before it is handed out.
primary -c "SELECT conversation_hide('alice', 'g1', 1)" >/dev/null
before=$(position_on primary)
primary -c "UPDATE conversation SET unread_count = 5 WHERE uid = 'alice' AND channel_id = 'g1'"
expect "the client syncs the commit" "g1 5" "$(sync_on primary "$before")"
seen=$(position_on primary "'$before'")
as_postgres "$BINDIR/pg_ctl" -D "$DIR/primary/data" -m immediate -w stop >/dev/null
bash scripts/cluster.sh start "$DIR/primary" "$PORT" shared_preload_libraries=pg_conversation wal_level=logical \
    synchronous_commit=off wal_writer_delay=10s
expect "what the client was given survived the crash" "5" \
    "$(primary -c "SELECT unread_count FROM conversation WHERE uid = 'alice' AND channel_id = 'g1'")"
primary -c "UPDATE conversation SET unread_count = 7 WHERE uid = 'alice' AND channel_id = 'g2'"
expect "a change after the crash is synced" "g2 7" "$(sync_on primary "$seen")"

# ---- 2. Failover to a standby that had not replayed as far. A position taken before what it
# replayed goes on there; one taken after it is refused (72000), never answered with an older
# history; and the old primary refuses the new one's positions.
as_postgres "$BINDIR/pg_basebackup" -h "$DIR/primary" -p "$PORT" -U postgres -D "$DIR/standby" -R -X stream --checkpoint=fast
start_standby() {
    as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w \
        -o "-p $STANDBY_PORT -k $DIR -c listen_addresses='' -c max_connections=200 -c hot_standby=on -c shared_preload_libraries=pg_conversation $*" start >/dev/null
}
start_standby
primary -c "SELECT conversation_hide('alice', 'g3', 1)" >/dev/null
shared=$(position_on primary)
# (A list flushes the WAL its position depends on, and so lets it stream.)
replayed=$(primary -c "SELECT pg_current_wal_flush_lsn()")
wait_until "the standby replays" standby "SELECT pg_last_wal_replay_lsn() >= '$replayed'"
expect "a position of the primary is good on its standby" "nothing" "$(sync_on standby "$shared")"
stop_standby
primary -c "UPDATE conversation SET unread_count = 9 WHERE uid = 'alice' AND channel_id = 'g1'"
ahead=$(position_on primary "'$shared'")
# Promoted without what it did not receive.
start_standby "-c primary_conninfo=''"
as_postgres "$BINDIR/pg_ctl" -D "$DIR/standby" -w promote >/dev/null
wait_until "the standby is promoted" standby "SELECT NOT pg_is_in_recovery()"
standby -c "UPDATE conversation SET unread_count = 3 WHERE uid = 'alice' AND channel_id = 'g3'"
expect "a position past the switch is refused" "72000" "$(sqlstate_on standby "$ahead")"
expect "a position before the switch goes on" "g3 3" "$(sync_on standby "$shared")"
new=$(position_on standby)
expect "the new primary's position goes on there" "nothing" "$(sync_on standby "$new")"
expect "the old primary refuses the new one's positions" "72000" "$(sqlstate_on primary "$new")"

# ---- 3. Logical replication: the apply worker writes under session_replication_role = replica,
# where only an ENABLE ALWAYS trigger fires; every change it applies is stamped by the subscriber.
bash scripts/cluster.sh start "$DIR/subscriber" "$SUBSCRIBER_PORT" shared_preload_libraries=pg_conversation
psql -X -q -h "$DIR/subscriber" -p "$SUBSCRIBER_PORT" -U postgres -c "CREATE DATABASE history"
subscriber -c "CREATE EXTENSION pg_conversation"
primary -c "CREATE PUBLICATION conversations FOR TABLE conversation"
subscriber -c "CREATE SUBSCRIPTION conversations CONNECTION 'host=$DIR/primary port=$PORT user=postgres dbname=history'
               PUBLICATION conversations" 2>/dev/null
wait_until "the subscriber copies the table" subscriber "SELECT count(*) = 3 FROM conversation"
copied=$(position_on subscriber)
# (Committed durably: WAL that is not flushed yet is not sent, and the WAL writer waits 10 s here.)
primary -c "SET synchronous_commit = on" -c "UPDATE conversation SET unread_count = 11 WHERE uid = 'alice' AND channel_id = 'g2'"
wait_until "the subscriber applies the change" subscriber \
    "SELECT unread_count = 11 FROM conversation WHERE uid = 'alice' AND channel_id = 'g2'"
expect "an applied change is synced on the subscriber" "g2 11" "$(sync_on subscriber "$copied")"
# A delete the apply worker applies is recorded as a departure there too.
applied=$(position_on subscriber "'$copied'")
primary -c "SET synchronous_commit = on" -c "DELETE FROM conversation WHERE uid = 'alice' AND channel_id = 'g2'"
wait_until "the subscriber applies the delete" subscriber "SELECT count(*) = 0 FROM conversation WHERE channel_id = 'g2'"
expect "an applied delete is synced on the subscriber as a departure" "g2 departed" \
    "$(subscriber -c "SELECT string_agg(channel_id || CASE WHEN departed THEN ' departed' ELSE '' END, ', ') FROM conversation_list('alice', 1, '$applied', 1000)")"
subscriber -c "DROP SUBSCRIPTION conversations" >/dev/null
echo "ok: positions hold across a crash, a failover and logical replication"

# ---- 4. The sync race through a failover, on a standby of its own of the (old) primary.
psql -X -q -h "$DIR/primary" -p "$PORT" -U postgres -c "CREATE DATABASE race" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -h "$DIR/primary" -p "$PORT" -U postgres -d race -c "CREATE EXTENSION pg_conversation"
as_postgres "$BINDIR/pg_basebackup" -h "$DIR/primary" -p "$PORT" -U postgres -D "$DIR/race-standby" -R -X stream --checkpoint=fast
as_postgres "$BINDIR/pg_ctl" -D "$DIR/race-standby" -l "$DIR/race-standby.log" -w \
    -o "-p $RACE_STANDBY_PORT -k $DIR -c listen_addresses='' -c max_connections=200 -c hot_standby=on -c shared_preload_libraries=pg_conversation" start >/dev/null
"$RACE" --dsn "host=$DIR/primary port=$PORT user=postgres dbname=race" --mode sync --clients 6 \
    --standby "host=$DIR port=$RACE_STANDBY_PORT user=postgres dbname=race" --failover
echo "ok: the sync race through a failover ends with every client holding the new primary's table"

#!/usr/bin/env bash
# The table hash-partitioned by uid on one server (conversation_partition), raced as the plain
# table is: creations at every isolation level, batches in opposite orders, messages out of order,
# reads from many devices. Every key's row lives in its partition and is probed there.
# Uses the cluster named by PGHOST, PGPORT and PGUSER, and the race-test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
RACE=${CARGO_TARGET_DIR:-target}/release/race-test
fail() { echo "FAILED: $*"; exit 1; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d pgconv_partitioned "$@"; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS pgconv_partitioned" -c "CREATE DATABASE pgconv_partitioned"
sql -c "CREATE EXTENSION pg_conversation"
sql -c "SELECT count(*) FROM generate_series(1, 1000) AS i, get_or_create_conversation('before' || i, 'g' || (i % 7), 1)" >/dev/null
# More partitions than the lock table is sized for: refused up front with 53200 and a hint that
# says what fits, nothing changed. (Eight indexes more make 1,024 partitions need more locks than
# any default-sized lock table of up to 200 connections holds.)
sql -c "DO \$\$ BEGIN FOR i IN 1..8 LOOP EXECUTE format('CREATE INDEX extra_%s ON conversation (channel_id, uid)', i); END LOOP; END \$\$"
refused=$(sql -c "SELECT count(*) FROM conversation_partition(1024)" 2>&1) && fail "1024 partitions were not refused: $refused"
echo "$refused"
grep -q "1024 partitions need about .* locks in one transaction" <<<"$refused" || fail "not the lock table's refusal: $refused"
grep -q "HINT:  Use at most [0-9]* partitions, or set max_locks_per_transaction to at least [0-9]*" <<<"$refused" ||
    fail "no hint with the numbers: $refused"
[ "$(sql -c "SELECT relkind FROM pg_class WHERE oid = 'conversation'::regclass")" = r ] || fail "the refused call changed the table"
sql -c "DO \$\$ BEGIN FOR i IN 1..8 LOOP EXECUTE format('DROP INDEX extra_%s', i); END LOOP; END \$\$"
# A disabled trigger stays disabled (and the rows move without firing it); the report says so.
sql -c "ALTER TABLE conversation DISABLE TRIGGER conversation_stamp"
steps=$(sql -c "SELECT step || ': ' || done FROM conversation_partition(8)")
echo "$steps"
grep -qx "triggers: conversation_stamp (disabled, as it was), conversation_truncate (always, as it was)" <<<"$steps" ||
    fail "the triggers step does not say the stamp stayed disabled"
[ "$(sql -c "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'conversation'::regclass AND tgname = 'conversation_stamp'")" = D ] ||
    fail "conversation_partition enabled a disabled trigger"
sql -c "ALTER TABLE conversation ENABLE ALWAYS TRIGGER conversation_stamp"
[ "$(sql -c "SELECT count(DISTINCT tableoid) FROM conversation")" = 8 ] || fail "the rows are not spread over 8 partitions"
dsn="host=$PGHOST port=$PGPORT user=$PGUSER dbname=pgconv_partitioned"
"$RACE" --dsn "$dsn" --mode create --clients 32 --keys 100
"$RACE" --dsn "$dsn" --mode fanout --clients 16 --keys 500
"$RACE" --dsn "$dsn" --mode messages --clients 16 --keys 50
"$RACE" --dsn "$dsn" --mode large --clients 4 --keys 12
"$RACE" --dsn "$dsn" --mode reads --clients 32 --keys 100
# Syncs read a partitioned table through the list's statements (planned once, pruned to the
# user's partition on every run): exact under writers that commit out of order, move rows between
# users (and so partitions), and change channels' modes.
"$RACE" --dsn "$dsn" --mode sync --clients 4
counts=$(sql -c "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || count(DISTINCT (uid, channel_id, channel_type)) FROM conversation")
read -r rows ids keys <<<"$counts"
[ "$rows" = "$ids" ] && [ "$rows" = "$keys" ] || fail "$rows rows, $ids ids, $keys keys"
echo "ok: a hash-partitioned table passes the races; $rows conversations, one row and one id each"
# A TRUNCATE of the partitioned table is recorded by its own trigger: positions from before refused.
position=$(sql -c "SELECT position FROM conversation_list('before1', 1)")
sql -c "TRUNCATE conversation"
refused=$(sql -c "SELECT count(*) FROM conversation_list('before1', 1, '$position')" 2>&1) && fail "a position from before TRUNCATE was taken: $refused"
grep -q "position was returned before table conversation was truncated" <<<"$refused" || fail "not the truncation's refusal: $refused"
echo "ok: a position from before a TRUNCATE of the partitioned table is refused"

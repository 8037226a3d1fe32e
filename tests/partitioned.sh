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
sql -c "SELECT step || ': ' || done FROM conversation_partition(8)"
[ "$(sql -c "SELECT count(DISTINCT tableoid) FROM conversation")" = 8 ] || fail "the rows are not spread over 8 partitions"
dsn="host=$PGHOST port=$PGPORT user=$PGUSER dbname=pgconv_partitioned"
"$RACE" --dsn "$dsn" --mode create --clients 32 --keys 100
"$RACE" --dsn "$dsn" --mode fanout --clients 16 --keys 500
"$RACE" --dsn "$dsn" --mode messages --clients 16 --keys 50
"$RACE" --dsn "$dsn" --mode reads --clients 32 --keys 100
counts=$(sql -c "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || count(DISTINCT (uid, channel_id, channel_type)) FROM conversation")
read -r rows ids keys <<<"$counts"
[ "$rows" = "$ids" ] && [ "$rows" = "$keys" ] || fail "$rows rows, $ids ids, $keys keys"
echo "ok: a hash-partitioned table passes the races; $rows conversations, one row and one id each"

#!/usr/bin/env bash
# A running database moves from PostgreSQL 15 to 18 with every conversation kept: every column of
# every row, the ids, the id sequence's position, and every function works afterwards.
#   tests/major_upgrade.sh DIR PORT
# Clusters under DIR (removed first), on ports PORT to PORT+5. Needs pg_conversation installed in
# both versions, the same release (cargo pgrx install --pg-config for each). Runs as root, like
# the other tests (initdb, pg_ctl and pg_upgrade run as postgres).
#
# 1. A 15 database is filled through the extension's functions (get_or_create_conversation,
#    conversation_message_arrived, conversation_mark_read): 3,000 conversations with non-default
#    values in every column, beside a table of the application's own.
# 2. Dump and restore, the way that works from Debian's 15.20 to the 18.6 wheel: 18's pg_dump
#    --schema-only, without the pg_attver attribute options (below), then 18's pg_dump
#    --data-only, both restored with 18's psql into a new 18 database. For a database holding
#    only the extension, the schema step is CREATE EXTENSION pg_conversation.
# 3. pg_upgrade, where the two builds allow it. Debian's 15.20 stores an attribute option
#    pg_attver on every column it creates (ALTER TABLE ... RESET leaves it in place) that 18.6
#    does not know: pg_upgrade --check passes, then the schema restore fails with
#    'unrecognized parameter "pg_attver"', for any table. The test says so, confirms it on a copy
#    of the 15 cluster, then removes the option from a second copy's catalogs (users' objects only)
#    and pg_upgrades that copy. The original 15 cluster is never changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$1 PORT=$2
B15=$(pg_bindir_of 15) B18=$(pg_bindir_of 18)
DB=pgconv_move
fail() { echo "FAILED: $*"; exit 1; }
say() { echo "major upgrade: $*"; }
# psql of the given version against the cluster in DIR/NAME: sql15|sql18 NAME PORT ARGS...
sql15() { local name=$1 port=$2; shift 2; "$B15/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/$name" -p "$port" -U postgres "$@"; }
sql18() { local name=$1 port=$2; shift 2; "$B18/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/$name" -p "$port" -U postgres "$@"; }
start() { PGCONV_PG=$1 bash scripts/cluster.sh start "$DIR/$2" "$3"; }
stop() { bash scripts/cluster.sh stop "$DIR/$1"; }
as_postgres() { sudo -u postgres "$@"; }

# release VERSION: the pg_conversation release installed in that PostgreSQL version.
release() {
    local control
    control=$("$(pg_config_of "$1")" --sharedir)/extension/pg_conversation.control
    [ -f "$control" ] || fail "pg_conversation is not installed in PostgreSQL $1 ($control)"
    sed -n "s/^default_version = '\(.*\)'/\1/p" "$control"
}
release15=$(release 15) release18=$(release 18)
[ "$release15" = "$release18" ] ||
    fail "PostgreSQL 15 has pg_conversation $release15 installed, 18 has $release18: install the same release in both"

for name in pg15 pg18 pg15-copy-as-is pg15-copy-stripped pg18-upgraded; do stop "$name" 2>/dev/null || true; done
rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres:postgres "$DIR"
trap 'for name in pg15 pg18 pg15-copy-stripped pg18-upgraded; do stop "$name" 2>/dev/null || true; done' EXIT

# --- 1. the 15 database -----------------------------------------------------------------------
start 15 pg15 "$PORT"
sql15 pg15 "$PORT" -c "CREATE DATABASE $DB"
sql15 pg15 "$PORT" -d $DB -c "CREATE EXTENSION pg_conversation" -c "
-- The application's own table: its schema has to move too.
CREATE TABLE app_message (id bigserial PRIMARY KEY, conversation_id bigint NOT NULL, body text NOT NULL)"
# One statement per step, so that created_at and updated_at differ between steps.
sql15 pg15 "$PORT" -d $DB >/dev/null <<'SQL'
-- 1,000 direct conversations, a quarter of them CMD channels (type 2), one call each.
SELECT count(*) FROM generate_series(1, 1000) AS i,
    get_or_create_conversation('user-' || (i % 100), 'dm-' || i || CASE WHEN i % 4 = 0 THEN '____cmd' ELSE '' END, i % 3 + 1);
-- 100 groups of 20 members, 5 messages each: 2,000 more conversations, created by the first message.
SELECT sum(conversation_message_arrived('group-' || g, 2,
           ARRAY(SELECT 'user-' || ((g * 7 + m) % 100) FROM generate_series(1, 20) AS m), 1, 'user-' || ((g * 7 + 1) % 100)))
FROM generate_series(1, 100) AS g;
SELECT sum(conversation_message_arrived('group-' || g, 2,
           ARRAY(SELECT 'user-' || ((g * 7 + m) % 100) FROM generate_series(1, 20) AS m), s, 'user-' || ((g * 7 + s) % 100)))
FROM generate_series(1, 100) AS g, generate_series(2, 5) AS s;
-- A message to every fifth direct conversation, from nobody (a system message).
SELECT sum(conversation_message_arrived('dm-' || i || CASE WHEN i % 4 = 0 THEN '____cmd' ELSE '' END, i % 3 + 1,
           ARRAY['user-' || (i % 100)], i, NULL))
FROM generate_series(5, 1000, 5) AS i;
-- Members read up to different positions.
SELECT count(*) FROM generate_series(1, 100) AS g, generate_series(1, 20, 3) AS m,
    conversation_mark_read('user-' || ((g * 7 + m) % 100), 'group-' || g, 2, m % 5 + 1);
-- No function sets deleted_at_msg_seq: the application clears a history itself.
UPDATE conversation SET deleted_at_msg_seq = last_msg_seq - 1 WHERE id % 3 = 0 AND last_msg_seq > 1;
INSERT INTO app_message (conversation_id, body) SELECT id, 'hello ' || uid FROM conversation WHERE id % 10 = 0;
SQL
fill=$(sql15 pg15 "$PORT" -d $DB -c "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE type = 2),
    count(*) FILTER (WHERE unread_count > 0), count(*) FILTER (WHERE readed_to_msg_seq > 0),
    count(*) FILTER (WHERE last_msg_seq > 0), count(*) FILTER (WHERE deleted_at_msg_seq > 0),
    count(*) FILTER (WHERE updated_at > created_at), count(DISTINCT channel_type) FROM conversation" -F ' ')
read -r rows ids cmd unread readed last deleted updated types <<<"$fill"
[ "$rows" = 3000 ] && [ "$ids" = 3000 ] || fail "the 15 database holds $rows rows with $ids ids, not 3000"
for count in "$cmd" "$unread" "$readed" "$last" "$deleted" "$updated"; do
    [ "$count" -gt 0 ] || fail "a column kept its default in every row ($fill)"
done
[ "$types" = 3 ] || fail "$types channel types, not 3"
say "15 database filled through the functions: $rows conversations, $cmd CMD, $unread with unread messages, $readed read, $deleted with a deleted history"

# Every column but version: a restore stamps the rows it writes with its own transactions
# (pg_upgrade keeps them, as verify checks).
fingerprint="SELECT count(*) || ' ' || md5(string_agg((to_jsonb(c) - 'version')::text, ',' ORDER BY id)) FROM conversation c"
app_fingerprint="SELECT count(*) || ' ' || md5(string_agg(m::text, ',' ORDER BY id)) FROM app_message m"
# The extension's objects. PostgreSQL 18 also records a member table's or view's row type and
# every array type as members (15 does not): those are left out, they come with their owners.
members="SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend AS d
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_conversation')
           AND NOT EXISTS (SELECT FROM pg_type AS t LEFT JOIN pg_class AS c ON c.oid = t.typrelid
                           WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                             AND (t.typcategory = 'A' OR c.relkind <> 'c'))
         ORDER BY 1"
expected=$(sql15 pg15 "$PORT" -d $DB -c "$fingerprint")
expected_app=$(sql15 pg15 "$PORT" -d $DB -c "$app_fingerprint")
max_id=$(sql15 pg15 "$PORT" -d $DB -c "SELECT max(id) FROM conversation")
sql15 pg15 "$PORT" -d $DB -c "$members" >"$DIR/members-15.txt"
# user-10 is a member of group-1.
existing_id=$(sql15 pg15 "$PORT" -d $DB -c "SELECT id FROM conversation WHERE uid = 'user-10' AND channel_id = 'group-1' AND channel_type = 2")
[ -n "$existing_id" ] || fail "user-10 has no conversation in group-1"
version15=$(sql15 pg15 "$PORT" -c "SHOW server_version")
# The list as a client left it on 15: its position, and the versions stamped there.
old_position=$(sql15 pg15 "$PORT" -d $DB -c "SELECT position FROM conversation_list('user-10', NULL, NULL, 1000) WITH ORDINALITY
                                             ORDER BY ordinality DESC LIMIT 1")
old_versions=$(sql15 pg15 "$PORT" -d $DB -c "SELECT max(version) || ' ' || max(generation) FROM conversation, conversation_clock")
read -r _ old_generation <<<"$old_versions"

# The database on 18 has everything the 15 one had, and every function works on the moved rows.
#   verify LABEL NAME PORT HOW   (HOW: stamped, a restore that stamps the rows; kept, pg_upgrade)
verify() {
    local label=$1 name=$2 port=$3 how=$4 q
    q() { sql18 "$name" "$port" -d $DB "$@"; }
    [ "$(q -c "$fingerprint")" = "$expected" ] || fail "$label: conversations differ ($(q -c "$fingerprint") vs $expected)"
    local moved_max
    moved_max=$(q -c "SELECT max(version) FROM conversation")
    [ "$(q -c "$app_fingerprint")" = "$expected_app" ] || fail "$label: the application's table differs"
    [ "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")" = "$release15" ] ||
        fail "$label: the extension is not version $release15"
    q -c "$members" >"$DIR/members-$name.txt"
    diff -u "$DIR/members-15.txt" "$DIR/members-$name.txt" || fail "$label: the extension's objects differ"
    # Indexes moved by pg_upgrade (or built by the restore) are sound.
    q -c "CREATE EXTENSION IF NOT EXISTS amcheck" \
      -c "SELECT bt_index_check(indexrelid::regclass, true) FROM pg_index WHERE indrelid = 'conversation'::regclass
            AND indexrelid IN (SELECT oid FROM pg_class WHERE relam = (SELECT oid FROM pg_am WHERE amname = 'btree'))" >/dev/null
    # An existing key is found, not created again; a new key draws an id past every old one.
    [ "$(q -c "SELECT id FROM get_or_create_conversation('user-10', 'group-1', 2)")" = "$existing_id" ] ||
        fail "$label: get_or_create_conversation did not find an existing key"
    [ "$(q -c "SELECT id > $max_id FROM get_or_create_conversation('newcomer', 'dm-new', 1)")" = t ] ||
        fail "$label: a new conversation's id is not above the old ones (sequence position lost)"
    [ "$(q -c "SELECT string_agg((id = $existing_id)::text, ',' ORDER BY input_position)
               FROM get_or_create_conversations('group-1', 2, ARRAY['user-10', 'newcomer'])")" = "true,false" ] ||
        fail "$label: get_or_create_conversations (array) went wrong"
    [ "$(q -c "SELECT count(*) FROM get_or_create_conversations('[{\"uid\": \"user-10\", \"channel_id\": \"group-1\", \"channel_type\": 2},
               {\"uid\": \"newcomer\", \"channel_id\": \"group-1\", \"channel_type\": 2}]'::jsonb)")" = 2 ] ||
        fail "$label: get_or_create_conversations (jsonb) went wrong"
    [ "$(q -c "SELECT conversation_message_arrived('group-1', 2, ARRAY['user-10', 'newcomer'], 6, 'newcomer')")" = 2 ] ||
        fail "$label: conversation_message_arrived did not advance both conversations"
    [ "$(q -c "SELECT readed_to_msg_seq || ' ' || unread_count FROM conversation_mark_read('user-10', 'group-1', 2, 6)")" = "6 0" ] ||
        fail "$label: conversation_mark_read went wrong"
    [ "$(q -c "SELECT count(*) FROM conversation_duplicates()")" = 0 ] || fail "$label: duplicate keys"
    q -c "SELECT count(*) FROM conversation_growth(1, '1 day')" >/dev/null
    [ "$(q -c "SELECT conversation_key_is_valid('u', 'c', 1::smallint)")" = t ] || fail "$label: conversation_key_is_valid"
    q -c "SELECT conversation_lock_key('u', 'c', 1)" >/dev/null
    q -c "SELECT * FROM conversation_stats" -c "SELECT conversation_stats_reset()" >/dev/null 2>&1 ||
        fail "$label: the counters view or their reset failed"
    q -c "CREATE TABLE legacy (uid text, channel_id text, channel_type int)" \
      -c "INSERT INTO legacy VALUES ('user-10', 'group-1', 2), ('user-10', 'group-1', 2), ('legacy', 'l', 1)"
    [ "$(q -c "SELECT keys || ' ' || duplicate_keys FROM conversation_import('legacy')" 2>/dev/null)" = "2 1" ] ||
        fail "$label: conversation_import (dry run) went wrong"
    q -c "UPDATE conversation SET updated_at = now() - interval '40 days' WHERE channel_id = 'dm-4____cmd'"
    q -c "CALL conversation_cleanup_cmd('30 days')" >/dev/null 2>&1 || fail "$label: conversation_cleanup_cmd failed"
    [ "$(q -c "SELECT count(*) FROM conversation WHERE channel_id = 'dm-4____cmd'")" = 0 ] ||
        fail "$label: conversation_cleanup_cmd left a stale CMD conversation"
    # Another cluster. pg_upgrade kept the rows' versions: its first write took the next
    # generation, so its versions are above every moved one. A restore stamped every row it wrote
    # in its own history, whatever order pg_dump wrote the tables in (conversation before
    # conversation_clock). Either way its changes list first, and a position of the 15 cluster
    # cannot be continued.
    local generation
    generation=$(q -c "SELECT generation FROM conversation_clock WHERE system_identifier = (SELECT system_identifier FROM pg_control_system())")
    if [ "$how" = kept ]; then
        [ "$generation" = $((old_generation + 1)) ] || fail "$label: the new cluster did not take generation $((old_generation + 1))"
    else
        [ "$(q -c "SELECT bool_and(version >> 48 = $generation) FROM conversation WHERE uid <> 'newcomer'")" = t ] ||
            fail "$label: restored rows are not stamped in the restoring cluster's generation $generation"
    fi
    [ "$(q -c "SELECT min(version) > $moved_max FROM conversation WHERE uid = 'newcomer'")" = t ] ||
        fail "$label: versions stamped after the move are not above the moved ones"
    [ "$(q -c "SELECT channel_id FROM conversation_list('user-10') LIMIT 1")" = group-1 ] ||
        fail "$label: the conversation changed after the move is not first in its user's list"
    refused=$(q -c "SELECT * FROM conversation_list('user-10', NULL, '$old_position')" 2>&1 || true)
    grep -q "returned by another server" <<<"$refused" || fail "$label: a position of the 15 cluster was not refused: $refused"
    say "ok: $label: all $rows conversations (every column, md5 over every row), their ids, the id sequence,"
    say "    the application's table and the extension's $(wc -l <"$DIR/members-15.txt") objects kept; every function works"
}

# --- 2. dump and restore ----------------------------------------------------------------------
start 18 pg18 "$((PORT + 1))"
sql18 pg18 "$((PORT + 1))" -c "CREATE DATABASE $DB"
source15="host=$DIR/pg15 port=$PORT user=postgres dbname=$DB"
# The whole dump in one, for the record: 18 refuses the attribute option 15 wrote.
sql18 pg18 "$((PORT + 1))" -c "CREATE DATABASE pgconv_full_restore"
"$B18/pg_dump" -Fc -d "$source15" -f "$DIR/full.dump"
if "$B18/pg_restore" --exit-on-error -h "$DIR/pg18" -p "$((PORT + 1))" -U postgres -d pgconv_full_restore "$DIR/full.dump" \
    2>"$DIR/full-restore.log"; then
    say "a whole pg_dump -Fc | pg_restore works between these builds"
else
    say "a whole pg_dump -Fc | pg_restore does not: $(grep -m1 ERROR "$DIR/full-restore.log")"
fi
# The schema: 15.20's pg_dump leaves pg_attver out, 18's dumps it as
#   ALTER TABLE ONLY t ALTER COLUMN c SET (pg_attver=NNN);   (or inside a list of options)
"$B18/pg_dump" --schema-only -d "$source15" -f "$DIR/schema.sql"
sed -E -e '/ ALTER COLUMN .* SET \(pg_attver=[0-9]+\);$/d' -e 's/, pg_attver=[0-9]+//; s/\(pg_attver=[0-9]+, /(/' \
    "$DIR/schema.sql" >"$DIR/schema-18.sql"
! grep -q pg_attver "$DIR/schema-18.sql" || fail "pg_attver is left in the schema: $(grep -m1 pg_attver "$DIR/schema-18.sql")"
say "schema: $(grep -c 'pg_attver=' "$DIR/schema.sql") pg_attver options left out of 18's schema-only dump"
sql18 pg18 "$((PORT + 1))" -d $DB -f "$DIR/schema-18.sql" >/dev/null
"$B18/pg_dump" --data-only -d "$source15" -f "$DIR/data.sql"
sql18 pg18 "$((PORT + 1))" -d $DB -f "$DIR/data.sql" >/dev/null
verify "dump and restore (schema-only without pg_attver, then data-only, 18's pg_dump)" pg18 "$((PORT + 1))" stamped
stop pg18

# --- 3. pg_upgrade ----------------------------------------------------------------------------
# Columns of users' objects (not the catalogs') carrying pg_attver, in every database.
with_attver() {
    local name=$1 port=$2 database total=0
    for database in $(sql15 "$name" "$port" -c "SELECT datname FROM pg_database WHERE datallowconn"); do
        total=$((total + $(sql15 "$name" "$port" -d "$database" -c "SELECT count(*) FROM pg_attribute
            WHERE attrelid >= 16384 AND EXISTS (SELECT FROM unnest(attoptions) AS o WHERE o LIKE 'pg_attver=%')")))
    done
    echo $total
}
attver=$(with_attver pg15 "$PORT")
start 18 pg18 "$((PORT + 1))"
if sql18 pg18 "$((PORT + 1))" -c "CREATE TEMP TABLE probe (a int)" -c "ALTER TABLE probe ALTER COLUMN a SET (pg_attver=1)" \
    2>"$DIR/probe.log"; then known=yes; else known=no; fi
stop pg18
stop pg15
# A stopped cluster's copy, for pg_upgrade to read (and, in link mode, to give away).
copy15() {
    rm -rf "${DIR:?}/$1"
    cp -a "$DIR/pg15" "$DIR/$1"
    rm -f "$DIR/$1"/*.log
}
# pg_upgrade OLD_NAME NEW_NAME: in link mode, from the stopped 15 cluster DIR/OLD_NAME to a new 18
# cluster DIR/NEW_NAME (initdb'd as cluster.sh does); its output in DIR/NEW_NAME.log.
upgrade() {
    local old=$1 new=$2
    rm -rf "${DIR:?}/$new"
    mkdir -p "$DIR/$new"
    chown postgres:postgres "$DIR/$new"
    as_postgres "$B18/initdb" -D "$DIR/$new/data" -U postgres --auth=trust -E UTF8 --no-locale --no-data-checksums >/dev/null
    (cd "$DIR" && as_postgres "$B18/pg_upgrade" --link -b "$B15" -B "$B18" -d "$DIR/$old/data" -D "$DIR/$new/data" \
        -U postgres -p "$((PORT + 4))" -P "$((PORT + 5))" --socketdir="$DIR" >"$DIR/$new.log" 2>&1)
}
if [ "$attver" -gt 0 ] && [ $known = no ]; then
    say "pg_upgrade cannot be used from this PostgreSQL 15 to this 18 as they are: $attver columns of users' objects"
    say "    carry the attribute option pg_attver, which PostgreSQL $version15 writes on every column"
    say "    and 18 refuses ($(sed -n 's/.*ERROR: *//p' "$DIR/probe.log" | head -1)); its --check passes,"
    say "    then the schema restore fails. Confirming on a copy of the 15 cluster:"
    copy15 pg15-copy-as-is
    if upgrade pg15-copy-as-is pg18-as-is; then
        fail "pg_upgrade succeeded where it was expected to fail: read $DIR/pg18-as-is.log, and test that path instead"
    fi
    reason=$(grep -rh 'ERROR: .*unrecognized parameter' "$DIR/pg18-as-is/data/pg_upgrade_output.d" 2>/dev/null |
        sed 's/.*ERROR: */ERROR: /' | head -1 || true)
    [ -n "$reason" ] || { cat "$DIR/pg18-as-is.log"; fail "pg_upgrade failed, but not on pg_attver"; }
    say "    confirmed: pg_upgrade failed with: $reason"
    # The option cannot be removed through SQL (ALTER TABLE ... RESET (pg_attver) leaves it), only
    # from the catalog; done on a copy, so that the original stays as 15.20 made it.
    copy15 pg15-copy-stripped
    start 15 pg15-copy-stripped "$((PORT + 2))"
    for database in $(sql15 pg15-copy-stripped "$((PORT + 2))" -c "SELECT datname FROM pg_database WHERE datallowconn"); do
        sql15 pg15-copy-stripped "$((PORT + 2))" -d "$database" -c "UPDATE pg_attribute
            SET attoptions = nullif(ARRAY(SELECT o FROM unnest(attoptions) AS o WHERE o NOT LIKE 'pg_attver=%'), '{}')
            WHERE attrelid >= 16384 AND EXISTS (SELECT FROM unnest(attoptions) AS o WHERE o LIKE 'pg_attver=%')"
    done
    [ "$(with_attver pg15-copy-stripped "$((PORT + 2))")" = 0 ] || fail "pg_attver is still on a column of the copy"
    stop pg15-copy-stripped
    say "    with pg_attver removed from the catalogs of a copy (users' objects only), pg_upgrade --link that copy:"
    old=pg15-copy-stripped
else
    say "pg_upgrade: no pg_attver in the way ($attver columns carry it; 18 knows it: $known)"
    copy15 pg15-copy-as-is
    old=pg15-copy-as-is
fi
upgrade "$old" pg18-upgraded || { cat "$DIR/pg18-upgraded.log"; fail "pg_upgrade from $old failed"; }
start 18 pg18-upgraded "$((PORT + 3))"
verify "pg_upgrade --link from $old" pg18-upgraded "$((PORT + 3))" kept
stop pg18-upgraded

# The original was left as it was: every column still has its option, and it still serves.
start 15 pg15 "$PORT"
[ "$(with_attver pg15 "$PORT")" = "$attver" ] || fail "the original 15 cluster's attribute options changed"
[ "$(sql15 pg15 "$PORT" -d $DB -c "$fingerprint")" = "$expected" ] || fail "the original 15 database changed"
say "ok: the original 15 cluster is unchanged"

#!/usr/bin/env bash
# pg_dump / restore round trips keep every conversation and the id sequence, in the custom and the
# plain format. Uses the cluster named by PGHOST, PGPORT and PGUSER, and PGCONV_PG's pg_dump.
set -euo pipefail
source "$(dirname "$0")/../scripts/pg.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "FAILED: $*"; exit 1; }

for db in pgconv_dump_source pgconv_restore_custom pgconv_restore_plain; do
    sql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
done
sql -d pgconv_dump_source >/dev/null <<'SQL'
CREATE EXTENSION pg_conversation;
SELECT count(*) FROM generate_series(1, 1000) AS i,
    get_or_create_conversation('u' || (i % 50), 'g' || i || CASE WHEN i % 4 = 0 THEN '____cmd' ELSE '' END, i % 3);
-- Non-default values in every column, so a lost column cannot pass unnoticed.
UPDATE conversation SET unread_count = id % 7, readed_to_msg_seq = id * 3, last_msg_seq = id * 3 + id % 7,
    deleted_at_msg_seq = id % 2, updated_at = created_at + make_interval(secs => id), large = id % 5 = 0;
INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, updated_at)
SELECT 'g' || i, i % 3, i * 10, '2026-01-01'::timestamptz + make_interval(secs => i) FROM generate_series(5, 1000, 5) AS i;
SQL

pg_dump -Fc -d pgconv_dump_source -f "$WORK/custom.dump"
pg_restore -d pgconv_restore_custom --exit-on-error "$WORK/custom.dump"
pg_dump -d pgconv_dump_source -f "$WORK/plain.sql"
sql -d pgconv_restore_plain -f "$WORK/plain.sql" >/dev/null

# Every column but version: a restore stamps the rows it writes with its own transaction (its
# cluster's history, not the dump's; a position from the source is refused there).
fingerprint="SELECT count(*) || ' ' || md5(string_agg((c.id, c.uid, c.channel_id, c.channel_type, c.type, c.unread_count,
    c.readed_to_msg_seq, c.last_msg_seq, c.deleted_at_msg_seq, c.created_at, c.updated_at, c.hidden, c.large)::text, ',' ORDER BY id))
    FROM conversation c"
# The large channels' rows (0.9.0), every column but version, and the index of a user's large
# channels.
channels="SELECT count(*) || ' ' || md5(string_agg((s.channel_id, s.channel_type, s.last_msg_seq, s.updated_at)::text, ','
    ORDER BY s.channel_id, s.channel_type)) || ' ' || (SELECT count(*) FROM pg_index AS i JOIN pg_class AS n ON n.oid = i.indexrelid
    WHERE i.indrelid = 'conversation'::regclass AND n.relname = 'conversation_large_idx' AND i.indisvalid)
    FROM conversation_channel s"
expected_channels=$(sql -d pgconv_dump_source -c "$channels")
[ "${expected_channels%% *}" = 200 ] || fail "the source holds ${expected_channels%% *} channel rows, not 200"
source_position=$(sql -d pgconv_dump_source -c "SELECT position FROM conversation_list('u7', NULL, NULL, 1000) LIMIT 1")
expected=$(sql -d pgconv_dump_source -c "$fingerprint")
[ "${expected%% *}" = 1000 ] || fail "the source holds ${expected%% *} rows, not 1000"
for db in pgconv_restore_custom pgconv_restore_plain; do
    actual=$(sql -d "$db" -c "$fingerprint")
    [ "$actual" = "$expected" ] || fail "$db: rows differ after restore ($actual vs $expected)"
    actual=$(sql -d "$db" -c "$channels")
    [ "$actual" = "$expected_channels" ] || fail "$db: channel rows differ after restore ($actual vs $expected_channels)"
    # An existing key is still found, not created again; a new key draws an id past the old ones.
    again=$(sql -d "$db" -c "SELECT id FROM get_or_create_conversation('u1', 'g1', 1)")
    before=$(sql -d pgconv_dump_source -c "SELECT id FROM conversation WHERE uid = 'u1' AND channel_id = 'g1'")
    [ "$again" = "$before" ] || fail "$db: existing key got id $again, expected $before"
    fresh=$(sql -d "$db" -c "SELECT id > (SELECT max(id) FROM conversation WHERE uid <> 'new') FROM get_or_create_conversation('new', 'g', 1)")
    [ "$fresh" = t ] || fail "$db: the id sequence was not restored"
    rows=$(sql -d "$db" -c "SELECT count(*) FROM conversation")
    [ "$rows" = 1001 ] || fail "$db: $rows rows after one creation, expected 1001"
    # The restored rows list below the changes made after the restore, and a sync returns only
    # those (restored rows carrying a version of the dump's came back on every sync).
    position=$(sql -d "$db" -c "SELECT position FROM conversation_list('u7', NULL, NULL, 1000) WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1")
    sql -d "$db" -c "SELECT conversation_hide('u7', 'g7', 1)" >/dev/null
    synced=$(sql -d "$db" -c "SELECT string_agg(channel_id, ',') FROM conversation_list('u7', NULL, '$position')")
    [ "$synced" = g7 ] || fail "$db: a sync after one change gave '$synced', not g7"
    refused=$(sql -d "$db" -v VERBOSITY=verbose -c "SELECT count(*) FROM conversation_list('u7', NULL, '$source_position')" 2>&1 || true)
    grep -q 72000 <<<"$refused" || fail "$db: a position of the dumped database was not refused (72000): $refused"
    echo "ok: $db keeps all 1000 conversations and the id sequence"
done

# A table partitioned with conversation_partition: its partitions are ordinary tables, which a
# restore creates before it can attach them to the extension's (new, plain) table. The documented
# way: restore everything but those ATTACH steps, then conversation_partition with the same count,
# which attaches the restored partitions with their rows.
sql -c "DROP DATABASE IF EXISTS pgconv_dump_partitioned" -c "CREATE DATABASE pgconv_dump_partitioned" \
    -c "DROP DATABASE IF EXISTS pgconv_restore_partitioned" -c "CREATE DATABASE pgconv_restore_partitioned" 2>/dev/null
pg_dump -Fc -d pgconv_dump_source -f "$WORK/before-partitioning.dump"
pg_restore -d pgconv_dump_partitioned --exit-on-error "$WORK/before-partitioning.dump"
sql -d pgconv_dump_partitioned -c "SELECT count(*) FROM conversation_partition(4)" >/dev/null
[ "$(sql -d pgconv_dump_partitioned -c "$fingerprint")" = "$expected" ] || fail "conversation_partition changed the rows"
pg_dump -Fc -d pgconv_dump_partitioned -f "$WORK/partitioned.dump"
pg_restore -l "$WORK/partitioned.dump" | grep -v 'ATTACH public conversation_p[0-9]' >"$WORK/partitioned.list"
pg_restore -L "$WORK/partitioned.list" -d pgconv_restore_partitioned --exit-on-error "$WORK/partitioned.dump"
sql -d pgconv_restore_partitioned -c "SELECT count(*) FROM conversation_partition(4)" >/dev/null
actual=$(sql -d pgconv_restore_partitioned -c "$fingerprint")
[ "$actual" = "$expected" ] || fail "partitioned: rows differ after restore ($actual vs $expected)"
actual=$(sql -d pgconv_restore_partitioned -c "$channels")
[ "$actual" = "$expected_channels" ] || fail "partitioned: channel rows differ after restore ($actual vs $expected_channels)"
[ "$(sql -d pgconv_restore_partitioned -c "SELECT relkind FROM pg_class WHERE oid = 'conversation'::regclass")" = p ] ||
    fail "partitioned: the restored table is not partitioned"
fresh=$(sql -d pgconv_restore_partitioned -c "SELECT id > (SELECT max(id) FROM conversation WHERE uid <> 'new') FROM get_or_create_conversation('new', 'g', 1)")
[ "$fresh" = t ] || fail "partitioned: the id sequence was not restored"
echo "ok: a partitioned table keeps all 1000 conversations and the id sequence through pg_dump and the documented restore"

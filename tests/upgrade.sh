#!/usr/bin/env bash
# Upgrades carry a running database forward. For every earlier release kept in sql/releases:
# install that release exactly as it shipped, fill it, ALTER EXTENSION pg_conversation UPDATE,
# then check that every row is kept, that the new objects work, and that the upgraded database
# holds the same objects, definitions, grants and comments as a fresh install.
# Uses the cluster named by PGHOST, PGPORT and PGUSER; copies the old install scripts into the
# server's extension directory (so it runs as root, like cargo pgrx install).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "FAILED: $*"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
EXTDIR=$(pg_config --sharedir)/extension
current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# Every object of the extension, described the same way whatever its OID: what it is, its full
# definition, its grants and its comment.
describe='
SELECT pg_describe_object(d.classid, d.objid, 0) || E"\n" || coalesce(
    CASE d.classid
        WHEN $$pg_proc$$::regclass THEN
            pg_get_functiondef(d.objid) || coalesce((SELECT proacl::text FROM pg_proc WHERE oid = d.objid), $$$$)
        WHEN $$pg_class$$::regclass THEN (
            SELECT c.relkind::text || $$ $$ || coalesce(c.relacl::text, $$$$) || E"\n" ||
                   coalesce(pg_get_viewdef(c.oid), $$$$) ||
                   coalesce((SELECT string_agg(a.attname || $$ $$ || format_type(a.atttypid, a.atttypmod)
                                 || $$ $$ || a.attnotnull || $$ $$ || coalesce(pg_get_expr(ad.adbin, ad.adrelid), $$$$),
                                 E"\n" ORDER BY a.attnum)
                             FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), $$$$) || E"\n" ||
                   coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), E"\n" ORDER BY pg_get_indexdef(i.indexrelid))
                             FROM pg_index i WHERE i.indrelid = c.oid), $$$$) || E"\n" ||
                   coalesce((SELECT string_agg(conname || $$ $$ || pg_get_constraintdef(k.oid), E"\n" ORDER BY conname)
                             FROM pg_constraint k WHERE k.conrelid = c.oid), $$$$)
            FROM pg_class c WHERE c.oid = d.objid)
        WHEN $$pg_type$$::regclass THEN (
            SELECT string_agg(a.attname || $$ $$ || format_type(a.atttypid, a.atttypmod), E"\n" ORDER BY a.attnum)
            FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
            WHERE t.oid = d.objid AND a.attnum > 0 AND NOT a.attisdropped)
        ELSE $$$$
    END, $$$$) || E"\n" || coalesce(obj_description(d.objid, d.classid::regclass::text), $$$$)
FROM pg_depend d
WHERE d.refclassid = $$pg_extension$$::regclass AND d.deptype = $$e$$
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = $$pg_conversation$$)
ORDER BY 1'
describe=${describe//\"/\'}

fill='
SELECT count(*) FROM generate_series(1, 1000) AS i,
    get_or_create_conversation($$u$$ || (i % 50), $$g$$ || i || CASE WHEN i % 4 = 0 THEN $$____cmd$$ ELSE $$$$ END, i % 3);
UPDATE conversation SET unread_count = id % 7, readed_to_msg_seq = id * 3, last_msg_seq = id * 3 + id % 7,
    deleted_at_msg_seq = id % 2, updated_at = created_at + make_interval(secs => id);'
# The columns every release has (later ones add columns, which the fingerprint leaves out).
fingerprint="SELECT count(*) || ' ' || md5(string_agg((c.id, c.uid, c.channel_id, c.channel_type, c.type, c.unread_count,
    c.readed_to_msg_seq, c.last_msg_seq, c.deleted_at_msg_seq, c.created_at, c.updated_at)::text, ',' ORDER BY id)) FROM conversation c"

sql -c "DROP DATABASE IF EXISTS pgconv_fresh" 2>/dev/null -c "CREATE DATABASE pgconv_fresh"
sql -d pgconv_fresh -c "CREATE EXTENSION pg_conversation"
sql -d pgconv_fresh -c "$describe" >"$WORK/fresh.txt"
[ "$(sql -d pgconv_fresh -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")" = "$current" ] ||
    fail "a fresh install is not version $current"

releases=$(ls sql/releases/pg_conversation--*.sql)
[ -n "$releases" ] || fail "no earlier release in sql/releases"
for script in $releases; do
    install -m 644 "$script" "$EXTDIR/"
    old=$(basename "$script" .sql); old=${old#pg_conversation--}
    db=pgconv_upgrade_${old//./_}
    sql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    sql -d "$db" -c "CREATE EXTENSION pg_conversation VERSION '$old'" -c "$fill" >/dev/null
    # Until ALTER EXTENSION UPDATE, the new library serves the old release's objects: its
    # functions keep working on its table.
    if [ "$old" != 0.1.0 ]; then
        advanced=$(sql -d "$db" -c "SELECT conversation_message_arrived('g1', 1, ARRAY['u1', 'u51'], 100000, 'u51')")
        [ "$advanced" = 2 ] || fail "$old: a message to two members advanced $advanced"
        sql -d "$db" -c "SELECT conversation_mark_read('u1', 'g1', 1, 100000)" -c "DELETE FROM conversation WHERE uid = 'u51'" >/dev/null
    fi
    before=$(sql -d "$db" -c "$fingerprint")
    [ "${before%% *}" = 1000 ] || fail "$old: filled ${before%% *} rows, not 1000"

    # Updates recreate functions whose return type changes (it cannot be altered): 0.3.0
    # get_or_create_conversation, 0.4.0 conversation_import. An object of the user's that depends
    # on one stops the update, which then changes nothing. (From 0.4.0 on, nothing is dropped.)
    blocker=""
    case $old in
        0.1.0) blocker="SELECT id FROM get_or_create_conversation('u1', 'g1', 1)" ;;
        0.2.0 | 0.3.0) blocker="SELECT applied FROM conversation_import('conversation')" ;;
    esac
    if [ -n "$blocker" ]; then
        sql -d "$db" -c "CREATE VIEW users_view AS $blocker"
        if sql -d "$db" -c "ALTER EXTENSION pg_conversation UPDATE" 2>"$WORK/blocked.txt"; then
            fail "$old: the update dropped a function a view depends on"
        fi
        grep -q "cannot drop function" "$WORK/blocked.txt" || { cat "$WORK/blocked.txt"; fail "$old: the update failed for another reason"; }
        [ "$(sql -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")" = "$old" ] ||
            fail "$old: a failed update changed the version"
        sql -d "$db" -c "DROP VIEW users_view"
    fi
    # A view over conversation_row (returned since 0.3.0) keeps working through the update, which
    # adds columns to the type.
    row_view=$([ "$old" \< 0.3.0 ] || echo yes)
    [ -z "$row_view" ] || sql -d "$db" -c "CREATE VIEW users_row_view AS SELECT * FROM get_or_create_conversation('u1', 'g1', 1)"

    # A position a client holds from before the update (0.5.0 on): refused once after it (72000,
    # list from the start) where the stamp trigger changed (0.7.0: ENABLE ALWAYS; 0.8.0: on
    # DELETE too, which was not recorded before); from 0.8.0 on it stays valid: the pass it began
    # goes on with the rest of the list (the position is the first row's).
    held=""
    [ "$old" \< 0.5.0 ] || held=$(sql -d "$db" -c "SELECT position FROM conversation_list('u7', NULL, NULL, 1000) LIMIT 1")
    sql -d "$db" -c "ALTER EXTENSION pg_conversation UPDATE"
    if [ -n "$held" ]; then
        since=$(sql -d "$db" -v VERBOSITY=verbose -c "SELECT count(*) FROM conversation_list('u7', NULL, '$held')" 2>&1 || true)
        if [ "$old" \< 0.8.0 ]; then
            grep -q "72000" <<<"$since" || fail "$old: a position from before the update was not refused with 72000: $since"
        else
            rest=$(sql -d "$db" -c "SELECT count(*) - 1 FROM conversation WHERE uid = 'u7'")
            [ "$since" = "$rest" ] || fail "$old: a position from before the update gave '$since', not the other $rest rows"
        fi
    fi
    version=$(sql -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")
    [ "$version" = "$current" ] || fail "$old: updated to $version, not $current"
    after=$(sql -d "$db" -c "$fingerprint")
    [ "$after" = "$before" ] || fail "$old: rows changed in the update ($after vs $before)"

    sql -d "$db" -c "$describe" >"$WORK/upgraded.txt"
    if ! diff -u "$WORK/fresh.txt" "$WORK/upgraded.txt" >"$WORK/objects.diff"; then
        cat "$WORK/objects.diff"
        fail "$old: the upgraded extension's objects differ from a fresh install's"
    fi
    objects=$(grep -c '^function\|^table\|^view\|^index\|^sequence\|^procedure\|^type' "$WORK/fresh.txt" || true)

    # The new objects work on the old rows: an existing key keeps its id, a new one is created.
    old_id=$(sql -d "$db" -c "SELECT id FROM conversation WHERE uid = 'u1' AND channel_id = 'g1' AND channel_type = 1")
    single=$(sql -d "$db" -c "SELECT id FROM get_or_create_conversation('u1', 'g1', 1)")
    [ "$single" = "$old_id" ] || fail "$old: get_or_create_conversation gave u1 id $single, not $old_id"
    found=$(sql -d "$db" -c "SELECT id FROM find_conversation('u1', 'g1', 1)")
    [ "$found" = "$old_id" ] || fail "$old: find_conversation gave u1 id $found, not $old_id"
    batch=$(sql -d "$db" -c "SELECT string_agg(id::text, ',' ORDER BY input_position) FROM get_or_create_conversations('g1', 1, ARRAY['u1', 'newcomer'])")
    [ "${batch%%,*}" = "$old_id" ] || fail "$old: the batch gave u1 id ${batch%%,*}, not $old_id"
    [ "$(sql -d "$db" -c "SELECT count(*) FROM conversation")" = 1001 ] || fail "$old: the batch did not create exactly one row"
    [ "$(sql -d "$db" -c "SELECT count(*) FROM conversation_duplicates()")" = 0 ] || fail "$old: duplicates after the update"
    # 0.9.0: every row from before is a membership of a channel that is not large, returned so
    # (the rows hold fewer attributes than the table until they are written again); a channel row
    # is stamped.
    [ "$(sql -d "$db" -c "SELECT count(*) FILTER (WHERE large) || ' ' || count(*) FILTER (WHERE large IS NULL) FROM conversation")" = "0 0" ] ||
        fail "$old: rows from before the update are large or NULL"
    [ "$(sql -d "$db" -c "SELECT (get_or_create_conversation('u2', 'g2', 2)).large")" = f ] || fail "$old: a row from before returned large other than false"
    stamped=$(sql -d "$db" -c "INSERT INTO conversation_channel (channel_id, channel_type) VALUES ('g1', 1) RETURNING version > 0" \
                               -c "DELETE FROM conversation_channel")
    [ "$stamped" = t ] || fail "$old: a channel row was not stamped"
    if [ -n "$row_view" ]; then
        [ "$(sql -d "$db" -c "SELECT id FROM users_row_view")" = "$old_id" ] || fail "$old: a view over conversation_row broke"
        sql -d "$db" -c "DROP VIEW users_row_view"
    fi
    # The list of a user's rows from before the update: every one, the newest updated_at first;
    # then only what changes.
    expected=$(sql -d "$db" -c "SELECT string_agg(channel_id, ',' ORDER BY updated_at DESC, id DESC) FROM conversation WHERE uid = 'u7'")
    listed=$(sql -d "$db" -c "SELECT string_agg(channel_id, ',') FROM conversation_list('u7', NULL, NULL, 1000)")
    [ "$listed" = "$expected" ] || fail "$old: conversation_list('u7') gave $listed, not $expected"
    position=$(sql -d "$db" -c "SELECT position FROM conversation_list('u7', NULL, NULL, 1000) OFFSET 19")
    sql -d "$db" -c "SELECT conversation_hide('u7', 'g7', 1)" >/dev/null
    changed=$(sql -d "$db" -c "SELECT string_agg(channel_id || ' ' || hidden, ',') FROM conversation_list('u7', NULL, '$position')")
    [ "$changed" = "g7 true" ] || fail "$old: after hiding g7, conversation_list from the last position gave '$changed'"
    # A delete after the update is reported to the position before it.
    position=$(sql -d "$db" -c "SELECT position FROM conversation_list('u7', NULL, NULL, 1000) OFFSET 18")
    sql -d "$db" -c "DELETE FROM conversation WHERE uid = 'u7' AND channel_id = 'g57'" >/dev/null
    departed=$(sql -d "$db" -c "SELECT string_agg(channel_id || ' ' || departed, ',') FROM conversation_list('u7', NULL, '$position')")
    [ "$departed" = "g57 true" ] || fail "$old: after deleting g57, conversation_list from the last position gave '$departed'"
    # 0.10.0: a channel of rows from before is made large (a newcomer joins it), gets a message,
    # and is made per member again: each member reads the message unread, large or not. (u1 has
    # read g1 to 100000, as above for the releases with messages.)
    sql -d "$db" -c "SELECT conversation_message_arrived('g1', 1, ARRAY['u1'], 100000, NULL)" \
        -c "SELECT conversation_mark_read('u1', 'g1', 1, 100000)" >/dev/null
    [ "$(sql -d "$db" -c "SELECT conversation_channel_make_large('g1', 1, ARRAY['u1', 'joiner'])")" = 2 ] ||
        fail "$old: making g1 large did not make its two memberships"
    sql -d "$db" -c "SELECT conversation_message_arrived('g1', 1, ARRAY['u1', 'joiner'], 100001, NULL)" >/dev/null
    members="SELECT string_agg(format('%s %s %s %s', c.uid, c.unread_count, c.last_msg_seq, c.large), ',' ORDER BY c.uid)
             FROM unnest(ARRAY['joiner', 'u1']) AS m (member), LATERAL get_or_create_conversation(m.member, 'g1', 1) AS c"
    [ "$(sql -d "$db" -c "$members")" = "joiner 1 100001 t,u1 1 100001 t" ] || fail "$old: large g1 reads $(sql -d "$db" -c "$members")"
    [ "$(sql -d "$db" -c "SELECT conversation_channel_make_per_member('g1', 1)")" = 2 ] || fail "$old: g1 did not go back per member"
    [ "$(sql -d "$db" -c "$members")" = "joiner 1 100001 f,u1 1 100001 f" ] || fail "$old: g1 per member again reads $(sql -d "$db" -c "$members")"
    echo "ok: $old -> $current keeps all 1000 rows; the same $objects objects as a fresh install"
done

-- A sync reports the conversations that left the list since its position (departed = true, with
-- the key that left; hidden is true too): deleted by the application, a DBA or the CMD cleanup,
-- moved to another user, or to the other type's list. One made again since is the row, not a
-- departure. conversation_forget_departures keeps them until the retention, and a position that
-- needed one it forgot is refused (72000). Each statement here is a transaction of its own.
\set db pgconv_departures
\set db_options ''
\ir sql/fresh_database.sql
\pset null '(null)'
-- A client of alice syncing its list of one type from a position, page by page (size 2): what
-- it got (+ a conversation, - a departure) and the position it keeps.
CREATE FUNCTION sync(list_type int, INOUT at text, OUT got text) LANGUAGE plpgsql AS $$
DECLARE
    page record;
    n int;
BEGIN
    got := '';
    LOOP
        n := 0;
        FOR page IN SELECT * FROM conversation_list('alice', list_type, sync.at, 2) LOOP
            got := got || CASE WHEN page.departed THEN '-' ELSE '+' END || page.channel_id || ' ';
            sync.at := page.position;
            n := n + 1;
        END LOOP;
        EXIT WHEN n = 0;
    END LOOP;
    got := coalesce(nullif(got, ''), 'nothing');
EXCEPTION WHEN OTHERS THEN
    got := SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT count(*) AS created FROM generate_series(1, 6) AS i, get_or_create_conversation('alice', 'g' || i, 1);
SELECT count(*) AS created FROM get_or_create_conversation('alice', 'stale____cmd', 1);
SELECT at AS chats, got FROM sync(1, NULL::text) \gset
SELECT at AS cmds, got FROM sync(2, NULL::text) \gset

-- Deleted; moved to bob; moved to the CMD list; deleted and made again; made new.
DELETE FROM conversation WHERE uid = 'alice' AND channel_id = 'g1';
UPDATE conversation SET uid = 'bob' WHERE uid = 'alice' AND channel_id = 'g2';
UPDATE conversation SET channel_id = 'g3____cmd' WHERE uid = 'alice' AND channel_id = 'g3';
DELETE FROM conversation WHERE uid = 'alice' AND channel_id = 'g4';
SELECT count(*) AS made_again FROM get_or_create_conversation('alice', 'g4', 1);
SELECT count(*) AS created FROM get_or_create_conversation('alice', 'g7', 1);
SELECT channel_id, type, unread_count, last_msg_seq, created_at, hidden, departed
FROM conversation_list('alice', 1, :'chats') WHERE departed ORDER BY channel_id;
SELECT at AS held_chats FROM sync(1, :'chats') \gset
SELECT got AS chats_since FROM sync(1, :'chats');
SELECT got AS cmds_since FROM sync(2, :'cmds');
SELECT at AS chats FROM sync(1, :'chats') \gset
SELECT at AS cmds FROM sync(2, :'cmds') \gset
-- A client that syncs again from where it got to: nothing.
SELECT got AS chats_again FROM sync(1, :'chats');

-- The CMD cleanup's deletions.
UPDATE conversation SET updated_at = now() - interval '40 days' WHERE channel_id = 'stale____cmd';
SELECT at AS cmds FROM sync(2, :'cmds') \gset
CALL conversation_cleanup_cmd('30 days');
SELECT got AS after_cleanup FROM sync(2, :'cmds');

-- The retention: nothing younger than it is forgotten; a position taken before the newest one it
-- forgot (of any list) is refused, one taken after is not.
SELECT conversation_forget_departures('1 day') AS forgotten_younger_than_a_day;
SELECT conversation_forget_departures('0') AS forgotten_all;
SELECT count(*) AS kept, min(type) AS mark_type FROM conversation_departure;
SELECT got AS chats_after_forgetting FROM sync(1, :'held_chats');
SELECT at AS fresh FROM sync(1, NULL::text) \gset
DELETE FROM conversation WHERE uid = 'alice' AND channel_id = 'g5';
SELECT got AS after_forgetting_from_a_new_position FROM sync(1, :'fresh');
SELECT conversation_forget_departures(NULL);
SELECT conversation_forget_departures('-1 second');

-- A TRUNCATE takes every row out of every list: positions taken before it are refused (72000),
-- one taken after goes on. Without its trigger (disabled, or ENABLE without ALWAYS) a sync is
-- refused (55000).
SELECT at AS before_truncate FROM sync(1, NULL::text) \gset
TRUNCATE conversation;
SELECT got AS after_truncate FROM sync(1, :'before_truncate');
SELECT count(*) AS created FROM get_or_create_conversation('alice', 'g8', 1);
SELECT at AS after_truncate, got FROM sync(1, NULL::text) \gset
SELECT :'got' AS listed_after_truncate, (sync(1, :'after_truncate')).got AS synced_after_truncate;
ALTER TABLE conversation ENABLE TRIGGER conversation_truncate;
SELECT got AS truncate_trigger_not_always FROM sync(1, :'after_truncate');
ALTER TABLE conversation ENABLE ALWAYS TRIGGER conversation_truncate;
SELECT got AS truncate_trigger_always_again FROM sync(1, :'after_truncate');

-- The departure table renamed: a delete or a move cannot record its departure and is refused
-- (55000, nothing written), and so is a sync (its departures would be lost); named back, all work.
SELECT at AS before_rename FROM sync(1, NULL::text) \gset
ALTER TABLE conversation_departure RENAME TO departures_elsewhere;
SELECT error_of($$DELETE FROM conversation WHERE channel_id = 'g8'$$) AS delete_without_departures;
SELECT error_of($$UPDATE conversation SET channel_id = 'g9' WHERE channel_id = 'g8'$$) AS move_without_departures;
SELECT count(*) AS kept FROM conversation WHERE channel_id = 'g8';
SELECT got AS sync_without_departures FROM sync(1, :'before_rename');
ALTER TABLE departures_elsewhere RENAME TO conversation_departure;
DELETE FROM conversation WHERE channel_id = 'g8';
SELECT got AS sync_with_departures_again FROM sync(1, :'before_rename');

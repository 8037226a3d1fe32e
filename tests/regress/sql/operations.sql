-- What a DBA runs: find duplicates, import a legacy table merging them, watch growth, clean up
-- stale CMD conversations. pg_regress compares this file's output with expected/operations.out.
\set db pgconv_operations
\set db_options ''
\ir sql/fresh_database.sql
SET timezone = 'UTC';

-- A legacy table as apps that "check, then insert" leave it: the same key several times, with
-- diverging read positions. Column types as in WuKongIM's MySQL schema.
CREATE TABLE legacy_conversation (
    id bigint, uid varchar(40), channel_id varchar(100), channel_type smallint,
    unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
    created_at timestamp, updated_at timestamp);
INSERT INTO legacy_conversation VALUES
    (10, 'u1', 'g1', 2,  2, 10, 12, '2024-01-01 10:00', '2024-01-05 10:00'),
    (11, 'u1', 'g1', 2, 10,  5, 15, '2024-01-02 10:00', '2024-01-06 10:00'),
    (12, 'u1', 'g1', 2,  0, 12, 12, '2024-01-03 10:00', '2024-01-04 10:00'),
    (13, 'u2', 'g1', 2,  0,  3,  3, '2024-01-03 10:00', '2024-01-03 10:00'),
    (14, 'u1', 'c1____cmd', 1, 0, 0, 0, '2024-01-01 10:00', '2024-01-01 10:00'),
    (15, 'u1', 'c1____cmd', 1, 0, 0, 0, '2024-01-02 10:00', '2024-01-02 10:00');

SELECT * FROM conversation_duplicates('legacy_conversation');
-- The extension's own table: its primary key keeps this empty.
SELECT * FROM conversation_duplicates();

-- u2 already has a live conversation, created through the extension (id 1).
SELECT id FROM get_or_create_conversation('u2', 'g1', 2);

-- A dry run (the default) reports and writes nothing.
SELECT * FROM conversation_import('legacy_conversation');
SELECT count(*) FROM conversation;

-- The real run, 2 keys per chunk to show the progress notices.
SELECT * FROM conversation_import('legacy_conversation', dry_run => false, batch_size => 2);
-- u1/g1: the earliest id (10) and created_at, the greatest read position (12), last_msg_seq (15)
-- and updated_at; unread least(10, 15 - 12) = 3. u2 keeps the smaller of its ids (1).
SELECT id, uid, channel_id, channel_type, type, unread_count, readed_to_msg_seq, last_msg_seq, created_at,
       CASE WHEN updated_at > now() - interval '1 hour' THEN 'just now' ELSE updated_at::text END AS updated_at
FROM conversation ORDER BY id;
-- A second run changes nothing.
SELECT * FROM conversation_import('legacy_conversation', false);
-- New ids continue after every id of the source, merged-away ones included (15 was one).
SELECT id AS next_id FROM get_or_create_conversation('u3', 'g1', 2);

-- Ids never name two conversations. Live now: 1 (u2/g1), 10 (u1/g1), 14 (u1/c1____cmd) and 16
-- (u3/g1); the sequence has handed out everything up to 16. A legacy id is kept only if the
-- sequence never handed it out and no other key of the source holds it; a key that exists keeps
-- its live id. Every other key gets a new id, and the report says which.
CREATE TABLE legacy_ids (id bigint, uid text, channel_id text, channel_type integer);
INSERT INTO legacy_ids VALUES
    (16, 'v1', 'g5', 1),                          -- u3's live id: a new one
    (3, 'v2', 'g5', 1),                           -- handed out by the sequence before: a new one
    (500, 'v3', 'g5', 1),                         -- never handed out: kept
    (501, 'v4', 'g5', 1), (501, 'v5', 'g5', 1),   -- one id, two keys: neither keeps it
    (502, 'u3', 'g1', 2),                         -- u3 exists: it keeps 16
    (700, 'v6', 'g5', 1), (701, 'v6', 'g5', 1);   -- one key, two rows: the earliest, 700
SELECT * FROM conversation_import('legacy_ids');
SELECT uid, channel_id, legacy_id, id FROM pg_temp.conversation_import_id_changes ORDER BY legacy_id, uid;
SELECT * FROM conversation_import('legacy_ids', false);
SELECT uid, channel_id, legacy_id, id FROM pg_temp.conversation_import_id_changes ORDER BY legacy_id, uid;
SELECT id, uid, channel_id FROM conversation WHERE channel_id = 'g5' OR uid = 'u3' ORDER BY id;
SELECT count(*) = count(DISTINCT id) AS every_id_names_one_conversation FROM conversation;
-- Once more: nothing changes, no id moves.
SELECT inserted, updated, unchanged, ids_reassigned FROM conversation_import('legacy_ids', false);
-- New ids continue after every legacy id.
SELECT id AS next_id FROM get_or_create_conversation('after-import', 'g5', 1);

-- A failure half-way leaves nothing behind: a trigger refuses the last key, in the fourth chunk.
CREATE TABLE legacy_minimal (uid text, channel_id text, channel_type integer);
INSERT INTO legacy_minimal SELECT 'x' || i, 'g9', 1 FROM generate_series(1, 10) AS i;
CREATE FUNCTION refuse_x9() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uid = 'x9' THEN RAISE EXCEPTION 'refused %', NEW.uid; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_x9 BEFORE INSERT ON conversation FOR EACH ROW EXECUTE FUNCTION refuse_x9();
SET client_min_messages = warning;
SELECT error_of($$SELECT * FROM conversation_import('legacy_minimal', false, 3)$$);
RESET client_min_messages;
SELECT count(*) AS imported_from_failed_run FROM conversation WHERE channel_id = 'g9';
DROP TRIGGER refuse_x9 ON conversation;
-- Without the trigger it goes in; only the key columns exist, so the rest start at zero.
SELECT applied, keys, inserted FROM conversation_import('legacy_minimal', false);

-- Rows the table cannot hold: counted by a dry run, refused by a real one.
INSERT INTO legacy_minimal VALUES ('', 'g9', 1), ('y', 'g9', 300);
SELECT keys, invalid_rows FROM conversation_import('legacy_minimal');
SELECT error_of($$SELECT * FROM conversation_import('legacy_minimal', false)$$);
SELECT error_of($$SELECT * FROM conversation_import('pg_class', false)$$);
SELECT error_of($$SELECT * FROM conversation_import(NULL, false)$$);
SELECT error_of($$SELECT * FROM conversation_import('legacy_minimal', false, 0)$$);

-- Growth: a user who gained more than 20 conversations in the last hour.
SELECT count(*) FROM generate_series(1, 30) AS i, get_or_create_conversation('looping-client', 'g' || i, 1);
SELECT * FROM conversation_growth(20, '1 hour');
SELECT * FROM conversation_growth(30, '1 hour');

-- Cleanup: 25 stale CMD conversations (one imported, 24 idle for 31 days), one fresh CMD
-- conversation and one long-idle chat, which both stay.
SELECT count(*) FROM generate_series(1, 25) AS i, get_or_create_conversation('u' || i, 'c2____cmd', 1);
UPDATE conversation SET updated_at = now() - interval '31 days' WHERE channel_id = 'c2____cmd' AND uid <> 'u1';
UPDATE conversation SET updated_at = now() - interval '400 days' WHERE uid = 'u2' AND channel_id = 'g1';
CALL conversation_cleanup_cmd('30 days', 10);
SELECT uid, channel_id FROM conversation WHERE type = 2 OR uid = 'u2' ORDER BY uid;
CALL conversation_cleanup_cmd('30 days', 10);
-- The memberships of a large CMD channel stay, however old their rows: a row's updated_at is its
-- own last write, not its channel's last message.
SELECT conversation_channel_make_large('big____cmd', 1, ARRAY['u1', 'u2']);
UPDATE conversation SET updated_at = now() - interval '31 days' WHERE channel_id = 'big____cmd';
CALL conversation_cleanup_cmd('30 days', 10);
SELECT uid, large FROM conversation WHERE channel_id = 'big____cmd' ORDER BY uid;
SELECT conversation_channel_make_per_member('big____cmd', 1);
-- It commits between batches, so it cannot run inside a transaction block.
BEGIN;
CALL conversation_cleanup_cmd();
ROLLBACK;
SELECT error_of($$CALL conversation_cleanup_cmd('0 days')$$);
SELECT error_of($$CALL conversation_cleanup_cmd('1 day', 0)$$);
SELECT error_of($$CALL conversation_cleanup_cmd(NULL)$$);

-- A source with unread counts but no last_msg_seq: last_msg_seq becomes the least it can be
-- (read position + unread), so the merge rule keeps the unread count, and a second run finds the
-- row as the first left it.
CREATE TABLE legacy_unread (uid text, channel_id text, channel_type integer, id bigint, unread_count integer);
INSERT INTO legacy_unread VALUES ('legacy1', 'lg', 1, 900001, 2), ('legacy1', 'lg', 1, 900002, 3);
SELECT keys, inserted, updated, unchanged FROM conversation_import('legacy_unread', false);
SELECT id, unread_count, readed_to_msg_seq, last_msg_seq FROM conversation WHERE uid = 'legacy1';
SELECT keys, inserted, updated, unchanged FROM conversation_import('legacy_unread', false);
SELECT id, unread_count, readed_to_msg_seq, last_msg_seq FROM conversation WHERE uid = 'legacy1';
-- With a read position too: last is the greatest read + unread of its rows (43), unread what fits.
CREATE TABLE legacy_read (uid text, channel_id text, channel_type integer, readed_to_msg_seq bigint, unread_count integer);
INSERT INTO legacy_read VALUES ('legacy2', 'lg', 1, 40, 2), ('legacy2', 'lg', 1, 38, 5);
SELECT keys, inserted, updated, unchanged FROM conversation_import('legacy_read', false);
SELECT unread_count, readed_to_msg_seq, last_msg_seq FROM conversation WHERE uid = 'legacy2';
SELECT keys, inserted, updated, unchanged FROM conversation_import('legacy_read', false);

-- A list read inside a transaction that wrote conversations returns its writes uncommitted, so
-- the positions it hands out hold only if they commit: refused (72000) after a ROLLBACK, taken
-- as they are after a COMMIT; and a ROLLBACK TO SAVEPOINT that undoes writes a list returned
-- makes the COMMIT fail with 40001 (retry), never leaves a client with values no sync corrects.
\set db pgconv_list_in_transaction
\set db_options ''
\ir sql/fresh_database.sql
SELECT count(*) AS created FROM get_or_create_conversations('g1', 1, ARRAY['alice', 'bob']);
-- What the client holds, for each case.
CREATE FUNCTION synced(given text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    rows text;
BEGIN
    SELECT coalesce(string_agg(channel_id || ' unread=' || unread_count, ', '), 'nothing') INTO rows
    FROM conversation_list('alice', NULL, given);
    RETURN rows;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT position AS before FROM conversation_list('alice') LIMIT 1 \gset

-- Rolled back whole: the client was shown unread=1; the table says 0.
BEGIN;
SELECT conversation_message_arrived('g1', 1, ARRAY['alice', 'bob'], 1, 'bob');
SELECT unread_count AS shown, position AS rolled_back FROM conversation_list('alice') \gset
ROLLBACK;
SELECT :shown AS shown, synced(:'rolled_back') AS sync_after_rollback;

-- Committed: the position goes on.
BEGIN;
SELECT conversation_message_arrived('g1', 1, ARRAY['alice', 'bob'], 1, 'bob');
SELECT position AS committed FROM conversation_list('alice') \gset
COMMIT;
SELECT synced(:'committed') AS sync_after_commit;

-- Rolled back to a savepoint after a list returned the write: the COMMIT fails, so the position
-- is refused with the rest of the transaction.
BEGIN;
SAVEPOINT s;
SELECT conversation_message_arrived('g1', 1, ARRAY['alice', 'bob'], 2, 'bob');
SELECT unread_count AS shown, position AS undone FROM conversation_list('alice') \gset
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT :shown AS shown, synced(:'undone') AS sync_after_undone;
SELECT unread_count AS in_table FROM conversation WHERE uid = 'alice';

-- The same savepoint released, or rolled back before the list: nothing to refuse.
BEGIN;
SAVEPOINT s;
SELECT conversation_message_arrived('g1', 1, ARRAY['alice', 'bob'], 2, 'bob');
RELEASE SAVEPOINT s;
SELECT position AS released FROM conversation_list('alice') \gset
SAVEPOINT t;
SELECT conversation_message_arrived('g1', 1, ARRAY['alice', 'bob'], 3, 'bob');
ROLLBACK TO SAVEPOINT t;
SELECT position AS listed_after_rollback_to FROM conversation_list('alice') \gset
COMMIT;
SELECT synced(:'released') AS sync_after_release, synced(:'listed_after_rollback_to') AS sync_after_listed_rollback_to;
-- And every position of before is still good, and brings the table's state.
SELECT synced(:'before') AS sync_from_before, (SELECT unread_count FROM conversation WHERE uid = 'alice') AS in_table;

-- A delete is a write too: a list after it returns the departure, and its position is refused
-- once the transaction rolled back (the conversation is still there; 0.7.0 recorded nothing).
SELECT position AS before_delete FROM conversation_list('alice') \gset
BEGIN;
DELETE FROM conversation WHERE uid = 'alice' AND channel_id = 'g1';
SELECT channel_id AS shown_departed, position AS deleted FROM conversation_list('alice', NULL, :'before_delete') WHERE departed \gset
ROLLBACK;
SELECT :'shown_departed' AS shown_departed, synced(:'deleted') AS sync_after_rolled_back_delete;

-- pg_conversation 0.2.0 -> 0.3.0, two changes for speed; no column changes.
-- 1. The functions that return one conversation return it as conversation_row, a composite type
--    with the table's columns but none of its defaults, generated expression or CHECK constraints.
--    Called in FROM, a function returning the table's own row type makes PostgreSQL copy all of
--    those expressions, twice, on every call: about a sixth of a hit's time in the server.
-- 2. The key's limits are one CHECK constraint calling the extension's own validation, instead of
--    three CHECK expressions that PostgreSQL parsed and planned again for every INSERT and UPDATE
--    statement: about 15% more inserts per second, for every writer.
-- ALTER EXTENSION pg_conversation UPDATE runs this file; CREATE EXTENSION runs it after the
-- earlier versions' objects (src/lib.rs), so a fresh install and an upgraded one are the same.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.3.0'" to load this file. \quit

-- Kept column for column equal to the table (a pg_test checks it): the functions copy the table's
-- tuples into it as they are.
CREATE TYPE @extschema@.conversation_row AS (
    id                 bigint,
    uid                text,
    channel_id         text,
    channel_type       smallint,
    type               smallint,
    unread_count       integer,
    readed_to_msg_seq  bigint,
    last_msg_seq       bigint,
    deleted_at_msg_seq bigint,
    created_at         timestamptz,
    updated_at         timestamptz
);

COMMENT ON TYPE @extschema@.conversation_row IS
    'A row of the conversation table, as get_or_create_conversation and conversation_mark_read return it';

-- A function's return type cannot be altered, only dropped and created again. Anything of the
-- user's that depends on the old function (a view calling it, say) makes this update fail, and
-- changes nothing; grants made on the old functions must be made again (see README, "Upgrading").
DROP FUNCTION @extschema@.get_or_create_conversation(text, text, integer);

-- Returns the one conversation for the key, creating it if needed. See README.md for the lock
-- and isolation semantics. Not STRICT: NULL arguments raise 22004.
-- No SET search_path clause: the hit path resolves no names (it works on OIDs) and the insert
-- pins search_path to pg_catalog itself (src/kept.rs), so the clause would only cost every hit.
CREATE FUNCTION @extschema@.get_or_create_conversation(
    uid text, channel_id text, channel_type integer)
RETURNS @extschema@.conversation_row
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversation';

COMMENT ON FUNCTION @extschema@.get_or_create_conversation(text, text, integer) IS
    'The one conversation for (uid, channel_id, channel_type), created atomically if missing';

DROP FUNCTION @extschema@.conversation_mark_read(text, text, integer, bigint);

CREATE FUNCTION @extschema@.conversation_mark_read(
    uid text, channel_id text, channel_type integer, read_to_seq bigint)
RETURNS @extschema@.conversation_row
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_mark_read';

COMMENT ON FUNCTION @extschema@.conversation_mark_read(text, text, integer, bigint) IS
    'Moves readed_to_msg_seq forward (never back) and keeps unread_count consistent with it';

-- The key's limits, for writers that bypass get_or_create_conversation: the very validation the
-- functions run (src/key.rs), in one call. IMMUTABLE: it looks at its arguments only. STRICT: NULLs
-- are for the NOT NULL constraints to refuse.
CREATE FUNCTION @extschema@.conversation_key_is_valid(uid text, channel_id text, channel_type smallint)
RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_key_is_valid';

COMMENT ON FUNCTION @extschema@.conversation_key_is_valid(text, text, smallint) IS
    'Whether a key is within the limits get_or_create_conversation accepts; the table''s conversation_key_check';

-- Every existing row met the three old constraints, which say the same; adding the new one still
-- reads the whole table once, under the ACCESS EXCLUSIVE lock ALTER TABLE takes (README, "Upgrading").
ALTER TABLE @extschema@.conversation
    DROP CONSTRAINT conversation_uid_check,
    DROP CONSTRAINT conversation_channel_id_check,
    DROP CONSTRAINT conversation_channel_type_check,
    ADD CONSTRAINT conversation_key_check
        CHECK (@extschema@.conversation_key_is_valid(uid, channel_id, channel_type));

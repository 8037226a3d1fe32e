-- pg_conversation 0.9.0 -> 0.10.0: large channels (issue 19; README "Large channels";
-- docs/large-groups.md). Every channel stays per member until it is made large.
-- 1. conversation_channel gains members and member_digest: the member set a message last named
--    (its size, and the sum of a 64-bit hash of each uid): a message naming the same set reads
--    none of the members' rows. NULL: no rewrite (the table is empty until a channel is large).
-- 2. conversation_channel_make_large(channel_id, channel_type, member_uids) and
--    conversation_channel_make_per_member(channel_id, channel_type): a channel changes mode.
-- 3. conversation_cleanup_cmd keeps the memberships of large channels (their updated_at is not
--    when their channel last had a message).
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.10.0'" to load this file. \quit

ALTER TABLE @extschema@.conversation_channel ADD COLUMN members integer, ADD COLUMN member_digest bigint;
COMMENT ON COLUMN @extschema@.conversation_channel.members IS
    'How many members the last message that changed the member set named; NULL: not known yet';
COMMENT ON COLUMN @extschema@.conversation_channel.member_digest IS
    'The sum of a 64-bit hash of each of those members'' uids: the member set, in any order';

CREATE FUNCTION @extschema@.conversation_channel_make_large(channel_id text, channel_type integer, member_uids text[])
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_channel_make_large';
COMMENT ON FUNCTION @extschema@.conversation_channel_make_large(text, integer, text[]) IS
    'Makes a channel large: a message then writes its row in conversation_channel, not every member''s; returns how many conversations became its memberships';

CREATE FUNCTION @extschema@.conversation_channel_make_per_member(channel_id text, channel_type integer)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_channel_make_per_member';
COMMENT ON FUNCTION @extschema@.conversation_channel_make_per_member(text, integer) IS
    'Makes a large channel per member again: each membership keeps its values as they stand; returns how many conversations changed';

CREATE OR REPLACE PROCEDURE @extschema@.conversation_cleanup_cmd(
    idle interval DEFAULT '30 days', batch_size integer DEFAULT 1000, INOUT deleted bigint DEFAULT NULL)
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    cutoff pg_catalog.timestamptz;
    batch_deleted pg_catalog.int8;
    batches pg_catalog.int4 := 0;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF idle IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'idle and batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF idle OPERATOR(pg_catalog.<=) '0'::pg_catalog.interval THEN
        RAISE EXCEPTION 'idle must be a positive interval, not %', idle USING ERRCODE = '22023';
    END IF;
    IF batch_size OPERATOR(pg_catalog.<) 1 OR batch_size OPERATOR(pg_catalog.>) 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', batch_size USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.row_security_active('@extschema@.conversation'::pg_catalog.regclass) THEN
        RAISE EXCEPTION 'pg_conversation''s functions do not support row level security on table conversation'
            USING ERRCODE = '0A000',
                  HINT = 'Call them as a role that bypasses row level security (the table owner, or a role with BYPASSRLS).';
    END IF;
    cutoff := pg_catalog.now() OPERATOR(pg_catalog.-) idle;
    deleted := 0;
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        -- The oldest batch_size stale keys, then those rows, checked again: a row a message is
        -- updating right now is waited for, and then kept (its updated_at moved). By key, not by
        -- ctid and without FOR UPDATE, so that it also runs on a table distributed with Citus.
        -- A membership of a large channel is kept: its updated_at is its own last write, not its
        -- channel's last message (conversation_channel), which only its channel knows.
        DELETE FROM @extschema@.conversation AS c
        WHERE c.type OPERATOR(pg_catalog.=) 2 AND c.updated_at OPERATOR(pg_catalog.<) cutoff AND NOT c.large
          AND (c.uid, c.channel_id, c.channel_type) IN (
            SELECT x.uid, x.channel_id, x.channel_type FROM @extschema@.conversation AS x
            WHERE x.type OPERATOR(pg_catalog.=) 2 AND x.updated_at OPERATOR(pg_catalog.<) cutoff AND NOT x.large
            ORDER BY x.updated_at
            LIMIT batch_size);
        GET DIAGNOSTICS batch_deleted = ROW_COUNT;
        deleted := deleted OPERATOR(pg_catalog.+) batch_deleted;
        batches := batches OPERATOR(pg_catalog.+) 1;
        RAISE NOTICE 'pg_conversation cleanup: batch %: % CMD conversations deleted, % in all',
            batches, batch_deleted, deleted;
        COMMIT;
        EXIT WHEN batch_deleted OPERATOR(pg_catalog.<) batch_size;
    END LOOP;
END
$$;

-- pg_conversation 0.8.0 -> 0.9.0: the ground of large channels (issue 19; docs/large-groups.md).
-- Not used yet: no function makes a channel large in this version, so every row reads as before.
-- 1. Table conversation_channel: one row per large channel (its last message seq, when it last
--    changed, its version), updated once per message instead of every member's row. Stamped by
--    conversation_stamp('channel') as conversations are (same clock, ENABLE ALWAYS); dumped by
--    pg_dump as the conversation table is; fillfactor 50, so that a message's update stays HOT.
--    No grants: like the clock, it is read and written by the extension's functions themselves.
-- 2. conversation.large: true while the row is a membership of a large channel (default false,
--    no table rewrite), and index conversation_large_idx (uid, type) WHERE large: a user's large
--    channels, found without reading their other conversations. Built here, holding writes for
--    the build: on a big table build it first, CONCURRENTLY and under this name (upgrading.md).
-- 3. conversation_row and conversation_list_row gain large (a returned row is still a copy of
--    the table's).
-- Positions that clients hold stay valid: the stamps and the position format do not change.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.9.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. Channel state. The extension's own, as the clock is: its functions will read and write it
-- themselves (as its owner), so a role that may write conversations needs no privilege on it.
CREATE TABLE @extschema@.conversation_channel (
    channel_id   text        NOT NULL,
    channel_type smallint    NOT NULL,
    last_msg_seq bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    version      bigint      NOT NULL DEFAULT 0,
    CONSTRAINT conversation_channel_pkey PRIMARY KEY (channel_id, channel_type),
    CONSTRAINT conversation_channel_key_check
        CHECK (@extschema@.conversation_key_is_valid('-', channel_id, channel_type))
) WITH (fillfactor = 50);
CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.conversation_channel
    FOR EACH ROW EXECUTE FUNCTION @extschema@.conversation_stamp('channel');
ALTER TABLE @extschema@.conversation_channel ENABLE ALWAYS TRIGGER conversation_stamp;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conversation_channel', '');
COMMENT ON TABLE @extschema@.conversation_channel IS
    'One row per large channel: what a message changes for all its members at once (their rows have large = true)';
COMMENT ON COLUMN @extschema@.conversation_channel.last_msg_seq IS 'The greatest message seq that arrived';
COMMENT ON COLUMN @extschema@.conversation_channel.updated_at IS 'When the channel last changed (a message)';
COMMENT ON COLUMN @extschema@.conversation_channel.version IS
    'When the row last changed, as conversation.version; set by trigger conversation_stamp';

------------------------------------------------------------------------------------------------
-- 2. Memberships of large channels. One statement at a time, so that Citus applies each to every
-- shard of a distributed table (from the coordinator; a worker's shards get them from it). An
-- index a DBA built beforehand under this name is kept if it is valid, refused if not.
DO $$
DECLARE
    table_oid regclass := '@extschema@.conversation'::regclass;
    coordinator boolean := true;
    prebuilt record;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = $1)
                     OR (SELECT groupid = 0 FROM pg_catalog.pg_dist_local_group)'
            INTO coordinator USING table_oid;
    END IF;
    IF NOT coordinator THEN
        RETURN;
    END IF;
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        -- An update from before 0.8.0 runs 0.8.0's script first, in this transaction, and it
        -- turns propagation off for its triggers: the column must reach every shard and node.
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'on', true);
    END IF;
    EXECUTE 'ALTER TABLE @extschema@.conversation ADD COLUMN IF NOT EXISTS large boolean NOT NULL DEFAULT false';
    EXECUTE 'COMMENT ON COLUMN @extschema@.conversation.large IS ''A membership of a large channel (conversation_channel): its last_msg_seq, unread_count and updated_at are read from the channel''''s row''';
    SELECT i.indisvalid, i.indpred IS NOT NULL AS partial INTO prebuilt
    FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
    WHERE i.indrelid = table_oid AND c.relname = 'conversation_large_idx';
    IF FOUND AND NOT (prebuilt.indisvalid AND prebuilt.partial) THEN
        RAISE EXCEPTION 'index conversation_large_idx exists but is not a valid partial index'
            USING ERRCODE = '55000',
                  HINT = 'Drop it (DROP INDEX CONCURRENTLY conversation_large_idx), or build it again CONCURRENTLY as upgrading.md shows, then update.';
    END IF;
    EXECUTE 'CREATE INDEX IF NOT EXISTS conversation_large_idx ON @extschema@.conversation (uid, type) WHERE large';
END
$$;

------------------------------------------------------------------------------------------------
-- 3. The returned rows gain the column, in the table's order.
ALTER TYPE @extschema@.conversation_row ADD ATTRIBUTE large boolean;
ALTER TYPE @extschema@.conversation_list_row ADD ATTRIBUTE large boolean;

COMMENT ON FUNCTION @extschema@.conversation_stamp() IS
    'Trigger: sets version on every row written to conversation (recording the departures of rows deleted or moved to another key, and truncations) and, with argument ''channel'', to conversation_channel';

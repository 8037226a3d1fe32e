-- pg_conversation 0.4.0 -> 0.5.0: the conversation list clients read after every message.
-- 1. Every change to a conversation is stamped (column version, set by a trigger whoever
--    writes), so that a client can sync "what changed since my position" without losing a change
--    whose transaction commits after a later one was read.
-- 2. Hide and clear: column hidden, conversation_hide(), conversation_clear(); a message that
--    arrives brings a hidden conversation back.
-- 3. conversation_list(): newest first, one type or all, everything or what changed since a
--    position, in pages; conversation_unread(): the badge. Both index-backed.
-- 4. The list index replaces conversation_uid_updated_at_idx: one index entry per row, in one of
--    three partial indexes (unread, read, hidden), so a write pays for one list index, not two.
-- ALTER EXTENSION pg_conversation UPDATE runs this file; CREATE EXTENSION runs it after the
-- earlier versions' objects (src/lib.rs), so a fresh install and an updated one are the same.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.5.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. The change stamp (src/stamp.rs).

-- The generation of the transaction ids in this cluster: a restored dump, a pg_upgrade'd or a
-- Citus node's cluster starts a new one (the first write there adds its row), so versions keep
-- growing whatever the new cluster's transaction ids. Dumped with its rows. No unique key: the
-- first writers of a cluster each add the same row rather than wait for one another.
CREATE TABLE @extschema@.conversation_clock (
    system_identifier bigint      NOT NULL,
    generation        integer     NOT NULL CHECK (generation BETWEEN 0 AND 32767),
    started_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conversation_clock', '');
COMMENT ON TABLE @extschema@.conversation_clock IS
    'One row per cluster (pg_control_system().system_identifier) that wrote conversations: the generation of its versions';

CREATE FUNCTION @extschema@.conversation_stamp()
RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_stamp';

COMMENT ON FUNCTION @extschema@.conversation_stamp() IS
    'Trigger: sets version on every insert and update of a conversation (an insert that brings its own keeps it: restores)';

-- The table's new columns, trigger and indexes (4). Both columns are added without rewriting the
-- table (their defaults are constants); rows written before keep version 0 and sort by
-- updated_at. The list indexes: every row is in exactly one of them; a query names the predicate
-- of each it needs (src/list.rs); id makes the order total. They are built inside the update:
-- writes wait while they build (README, "Upgrading").
-- On Citus (a table conversation_distribute distributed) this runs on the coordinator, one
-- statement at a time, so that Citus applies each to every node and shard; the workers, which
-- Citus updates after the coordinator, put the trigger on their shards themselves, once their
-- update has created its function.
DO $$
DECLARE
    table_oid regclass := '@extschema@.conversation'::regclass;
    distributed boolean := false;
    coordinator boolean := true;
    shard record;
    changes text[] := ARRAY[
        'ALTER TABLE @extschema@.conversation ADD COLUMN version bigint NOT NULL DEFAULT 0, ADD COLUMN hidden boolean NOT NULL DEFAULT false',
        'DROP INDEX @extschema@.conversation_uid_updated_at_idx',
        'CREATE INDEX conversation_list_unread_idx ON @extschema@.conversation (uid, type, version, updated_at, id) WHERE unread_count > 0 AND NOT hidden',
        'CREATE INDEX conversation_list_read_idx ON @extschema@.conversation (uid, type, version, updated_at, id) WHERE unread_count <= 0 AND NOT hidden',
        'CREATE INDEX conversation_list_hidden_idx ON @extschema@.conversation (uid, type, version, updated_at, id) WHERE hidden',
        'COMMENT ON COLUMN @extschema@.conversation.version IS ''When the row last changed: generation * 2^48 + the writing transaction''''s id; set by trigger conversation_stamp''',
        'COMMENT ON COLUMN @extschema@.conversation.hidden IS ''Left out of conversation_list until a newer message arrives (conversation_hide)'''];
    stamp_trigger text := 'CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION @extschema@.conversation_stamp()';
    change text;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = $1)' INTO distributed USING table_oid;
        EXECUTE 'SELECT groupid = 0 FROM pg_catalog.pg_dist_local_group' INTO coordinator;
    END IF;
    IF distributed THEN
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    IF distributed AND NOT coordinator THEN
        -- A worker: its shards got the columns and indexes from the coordinator's update. Their
        -- triggers take Citus's names for a shard's (the table's, suffixed with the shard id).
        FOR shard IN EXECUTE 'SELECT s.shardid, pg_catalog.to_regclass(pg_catalog.format(''%I.%I'', n.nspname, c.relname || ''_'' || s.shardid)) AS relation
                              FROM pg_catalog.pg_dist_shard AS s JOIN pg_catalog.pg_dist_placement AS p USING (shardid)
                              JOIN pg_catalog.pg_class AS c ON c.oid = s.logicalrelid JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                              WHERE s.logicalrelid = $1 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)'
                       USING table_oid LOOP
            IF shard.relation IS NOT NULL THEN
                EXECUTE pg_catalog.format(stamp_trigger, 'conversation_stamp_' || shard.shardid, shard.relation);
            END IF;
        END LOOP;
        EXECUTE pg_catalog.format(stamp_trigger, 'conversation_stamp', table_oid);
        RETURN;
    END IF;
    FOREACH change IN ARRAY changes LOOP
        EXECUTE change;
    END LOOP;
    IF distributed THEN
        -- The coordinator's own table only: the workers' shards get theirs above.
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
    END IF;
    EXECUTE pg_catalog.format(stamp_trigger, 'conversation_stamp', table_oid);
    IF distributed THEN
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'on', true);
    END IF;
END
$$;

------------------------------------------------------------------------------------------------
-- The returned row gains the columns (in the table's order, so that a row is still returned as
-- a copy).
ALTER TYPE @extschema@.conversation_row
    ADD ATTRIBUTE version bigint,
    ADD ATTRIBUTE hidden boolean;

CREATE TYPE @extschema@.conversation_list_row AS (
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
    updated_at         timestamptz,
    version            bigint,
    hidden             boolean,
    position           text
);
COMMENT ON TYPE @extschema@.conversation_list_row IS
    'A row of conversation_list: the conversation, and the position to pass back to continue after it';

------------------------------------------------------------------------------------------------
-- 3. Reading the list (src/list.rs). STABLE: they read with the calling statement's snapshot, so
-- they run on hot standbys and in READ ONLY transactions. Not STRICT: NULL uid is 22004.

CREATE FUNCTION @extschema@.conversation_list(
    uid text, type integer DEFAULT NULL, "position" text DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF @extschema@.conversation_list_row
LANGUAGE c STABLE PARALLEL RESTRICTED SECURITY INVOKER ROWS 50
AS 'MODULE_PATHNAME', 'conversation_list';

COMMENT ON FUNCTION @extschema@.conversation_list(text, integer, text, integer) IS
    'A user''s conversations, newest change first; with a position, every one that changed since (hidden ones too)';

CREATE FUNCTION @extschema@.conversation_unread(
    uid text, type integer DEFAULT NULL, OUT unread_count bigint, OUT conversations bigint)
RETURNS record
LANGUAGE c STABLE PARALLEL RESTRICTED SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_unread';

COMMENT ON FUNCTION @extschema@.conversation_unread(text, integer) IS
    'A user''s unread messages and unread conversations, hidden ones left out (the app badge)';

------------------------------------------------------------------------------------------------
-- 2. Hide and clear (src/hide.rs, src/read_state.rs). up_to_msg_seq is the last message the
-- client showed: a message after it that arrived meanwhile is neither hidden nor cleared.

CREATE FUNCTION @extschema@.conversation_hide(
    uid text, channel_id text, channel_type integer, up_to_msg_seq bigint DEFAULT NULL)
RETURNS @extschema@.conversation_row
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_hide';

COMMENT ON FUNCTION @extschema@.conversation_hide(text, text, integer, bigint) IS
    'Leaves the conversation out of conversation_list until a newer message arrives; NULL if it does not exist';

CREATE FUNCTION @extschema@.conversation_clear(
    uid text, channel_id text, channel_type integer, up_to_msg_seq bigint DEFAULT NULL)
RETURNS @extschema@.conversation_row
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_clear';

COMMENT ON FUNCTION @extschema@.conversation_clear(text, text, integer, bigint) IS
    'Clears the history up to the last message (deleted_at_msg_seq), and reads it (unread 0); NULL if it does not exist';

------------------------------------------------------------------------------------------------
-- Citus (README, "Scaling out"): the stamp trigger goes to the shards, and the new functions of
-- one user's conversations run on the node of the user's shard, where a list's positions must be
-- taken (src/list.rs).
CREATE OR REPLACE FUNCTION @extschema@.conversation_distribute(shard_count integer DEFAULT 32)
RETURNS TABLE (step text, done text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_oid regclass := '@extschema@.conversation'::regclass;
    distributed_by text;
    user_function regprocedure;
    worker record;
    workers integer := 0;
BEGIN
    IF to_regproc('pg_catalog.create_distributed_table') IS NULL THEN
        RAISE EXCEPTION 'conversation_distribute needs Citus in this database'
            USING ERRCODE = '0A000',
                  HINT = 'Put citus first in shared_preload_libraries on every node, then CREATE EXTENSION citus on the coordinator.';
    END IF;
    IF shard_count IS NULL OR shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000, not %', shard_count USING ERRCODE = '22023';
    END IF;
    IF (SELECT groupid FROM pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'conversation_distribute runs on the coordinator'
            USING ERRCODE = '55000', HINT = 'Connect to the coordinator and run it there.';
    END IF;

    EXECUTE 'SELECT column_to_column_name(p.logicalrelid, p.partkey) FROM pg_dist_partition AS p WHERE p.logicalrelid = $1'
        INTO distributed_by USING table_oid;
    IF distributed_by IS NULL THEN
        -- The stamp trigger goes to every shard: Citus asks for this setting to copy a table's
        -- triggers (it runs them on the shards' nodes, where the stamp must be taken).
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
        PERFORM create_distributed_table(table_oid, 'uid', shard_count => shard_count);
        -- Citus copied the rows into the shards and left them in the local table, hidden.
        PERFORM truncate_local_data_after_distributing_table(table_oid);
        step := 'table'; done := format('distributed by uid in %s shards', shard_count); RETURN NEXT;
    ELSIF distributed_by = 'uid' THEN
        step := 'table'; done := 'already distributed by uid'; RETURN NEXT;
    ELSE
        RAISE EXCEPTION 'table conversation is distributed by %, not by uid', distributed_by
            USING ERRCODE = '55000',
                  HINT = 'The functions route by uid; undistribute_table(''conversation'') first, then run conversation_distribute again.';
    END IF;

    -- Every shard stamps its changes: a table distributed before 0.5.0, or a shard whose trigger
    -- was disabled or dropped (Citus puts the trigger on every shard; the setting lets it).
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    CREATE OR REPLACE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON @extschema@.conversation
        FOR EACH ROW EXECUTE FUNCTION @extschema@.conversation_stamp();
    step := 'stamp'; done := 'every shard stamps its changes (trigger conversation_stamp)'; RETURN NEXT;

    FOREACH user_function IN ARRAY ARRAY[
        '@extschema@.get_or_create_conversation(text, text, integer)',
        '@extschema@.find_conversation(text, text, integer)',
        '@extschema@.conversation_mark_read(text, text, integer, bigint)',
        '@extschema@.conversation_hide(text, text, integer, bigint)',
        '@extschema@.conversation_clear(text, text, integer, bigint)',
        '@extschema@.conversation_list(text, integer, text, integer)',
        '@extschema@.conversation_unread(text, integer)']::regprocedure[] LOOP
        PERFORM create_distributed_function(user_function, 'uid', colocate_with => table_oid::text);
    END LOOP;
    step := 'functions'; done := 'the functions of one user''s conversations run on the node of the user''s shard'; RETURN NEXT;

    -- Ids: a range per node group, so that no two nodes ever draw the same id. On the workers
    -- with Citus's own function (IF NOT EXISTS: the sequence is there; only its range changes,
    -- once); the coordinator keeps the first range.
    ALTER SEQUENCE @extschema@.conversation_id_seq MAXVALUE 281474976710656;
    FOR worker IN SELECT * FROM run_command_on_workers(format(
            'SELECT pg_catalog.worker_apply_sequence_command(%L, %L::pg_catalog.regtype)',
            'CREATE SEQUENCE IF NOT EXISTS @extschema@.conversation_id_seq AS bigint', 'bigint')) LOOP
        IF NOT worker.success THEN
            RAISE EXCEPTION 'could not give % the id range of its node group: %', worker.nodename || ':' || worker.nodeport, worker.result
                USING ERRCODE = '55000', HINT = 'Check that pg_conversation is installed on every node, then run conversation_distribute again.';
        END IF;
        workers := workers + 1;
    END LOOP;
    step := 'ids'; done := format('the coordinator and %s workers draw ids from ranges of their own', workers); RETURN NEXT;
END
$$;

-- pg_conversation 0.7.0 -> 0.8.0: departures. A sync now reports the conversations that left a
-- list: a row deleted (the CMD cleanup, a DBA, the application) and a row whose uid or channel_id
-- changed (which moves it to another user's list, or to the other type's).
-- 1. Table conversation_departure: one row per departure, written by the stamp trigger, read by
--    conversation_list from its index (uid, type, version, updated_at, id) as it reads the list
--    indexes. Not dumped: a restored database refuses the positions of the dumped one anyway.
-- 2. The stamp trigger fires on DELETE too (BEFORE INSERT OR UPDATE OR DELETE, ENABLE ALWAYS), on
--    the table, each partition and, on a Citus node, each shard here; and on TRUNCATE of the table
--    (trigger conversation_truncate, FOR EACH STATEMENT, ENABLE ALWAYS).
-- 3. conversation_list_row gains column departed: true for a conversation that left the list
--    (its key, id and type; hidden is true too, so a client that removes hidden rows removes it).
-- 4. conversation_forget_departures(older_than): the retention. Positions older than what it
--    forgot are refused (72000: list from the start).
-- 5. conversation_distribute puts the new trigger on every shard.
-- Positions that clients hold are refused once after this update (72000): the trigger changed,
-- and before it deletes were not recorded.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.8.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. Departures.
CREATE TABLE @extschema@.conversation_departure (
    uid text NOT NULL,
    type smallint NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    id bigint NOT NULL,
    channel_id text NOT NULL,
    channel_type integer NOT NULL
);
CREATE INDEX conversation_departure_list_idx ON @extschema@.conversation_departure (uid, type, version, updated_at, id);
COMMENT ON TABLE @extschema@.conversation_departure IS
    'Conversations that left a list (deleted, or their uid or channel_id changed), as conversation_list reports them; written by trigger conversation_stamp, kept until conversation_forget_departures';
COMMENT ON COLUMN @extschema@.conversation_departure.version IS
    'The stamp of the transaction that made it leave (as conversation.version); uid '''' and type -1: the mark below which departures were forgotten';
COMMENT ON COLUMN @extschema@.conversation_departure.updated_at IS 'When it left';

------------------------------------------------------------------------------------------------
-- 2. The stamp trigger fires on DELETE too. Each trigger that is not a partition's clone (a
-- clone follows its parent's) is made again with the new events, then every one is ENABLE
-- ALWAYS. A Citus node changes its own relations: its shards are among them.
DO $$
DECLARE
    stamp record;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    FOR stamp IN SELECT t.tgrelid::pg_catalog.regclass AS relation, t.tgname
                 FROM pg_catalog.pg_trigger AS t
                 WHERE t.tgfoid = '@extschema@.conversation_stamp()'::pg_catalog.regprocedure
                   AND t.tgparentid OPERATOR(pg_catalog.=) 0
                 ORDER BY t.tgrelid LOOP
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION @extschema@.conversation_stamp()',
                                  stamp.tgname, stamp.relation);
    END LOOP;
    FOR stamp IN SELECT t.tgrelid::pg_catalog.regclass AS relation, t.tgname
                 FROM pg_catalog.pg_trigger AS t
                 WHERE t.tgfoid = '@extschema@.conversation_stamp()'::pg_catalog.regprocedure AND t.tgenabled OPERATOR(pg_catalog.<>) 'A'
                 ORDER BY t.tgrelid LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', stamp.relation, stamp.tgname);
    END LOOP;
END
$$;

-- A TRUNCATE of the table leaves a mark in conversation_departure: positions taken before it are
-- refused (every row left). On the table (a partitioned one's partitions are truncated through it)
-- and, on a Citus node, on each shard here (Citus truncates the shards on their nodes).
DO $$
DECLARE
    stamped record;
BEGIN
    FOR stamped IN SELECT t.tgrelid::pg_catalog.regclass AS relation
                   FROM pg_catalog.pg_trigger AS t
                   WHERE t.tgfoid = '@extschema@.conversation_stamp()'::pg_catalog.regprocedure
                     AND t.tgparentid OPERATOR(pg_catalog.=) 0
                     AND (t.tgrelid = '@extschema@.conversation'::pg_catalog.regclass
                          OR pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL)
                   ORDER BY t.tgrelid LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER conversation_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.conversation_stamp()',
                                  stamped.relation);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER conversation_truncate', stamped.relation);
    END LOOP;
END
$$;

------------------------------------------------------------------------------------------------
-- 3. A row of the list says whether the conversation left it.
ALTER TYPE @extschema@.conversation_list_row ADD ATTRIBUTE departed boolean;
COMMENT ON TYPE @extschema@.conversation_list_row IS
    'A row of conversation_list: the conversation (or, departed, the key of one that left the list), and the position to pass back to continue after it';

------------------------------------------------------------------------------------------------
-- 4. The retention.
CREATE FUNCTION @extschema@.conversation_forget_departures(older_than interval DEFAULT '30 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this_generation int8;
    below int8;
    forgotten int8;
    newest int8;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be an interval of 0 or more, not %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- Only departures of transactions that every transaction running now has seen end (below
    -- this snapshot's oldest running id): a position held while an old transaction is still
    -- open (an orphaned prepared one, say) is not refused because of what is forgotten now.
    SELECT max(k.generation) INTO this_generation
    FROM @extschema@.conversation_clock AS k
    WHERE k.system_identifier = (SELECT s.system_identifier FROM pg_control_system() AS s)
      AND k.timeline = ('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::integer;
    IF this_generation IS NULL THEN
        -- This history has not written yet: every departure is of an earlier one.
        SELECT coalesce(max(k.generation) + 1, 0) INTO this_generation FROM @extschema@.conversation_clock AS k;
        below := this_generation << 48;
    ELSE
        below := (this_generation << 48) | pg_snapshot_xmin(pg_current_snapshot())::text::int8;
    END IF;
    WITH gone AS (
        DELETE FROM @extschema@.conversation_departure AS d
        WHERE d.uid <> '' AND d.updated_at < now() - older_than AND d.version < below
        RETURNING d.version)
    SELECT count(*), max(gone.version) INTO forgotten, newest FROM gone;
    IF newest IS NOT NULL THEN
        -- The mark: a position whose horizon did not see every departure below it is refused.
        INSERT INTO @extschema@.conversation_departure (uid, type, version, id, channel_id, channel_type)
        VALUES ('', -1, newest + 1, 0, '', 0);
        DELETE FROM @extschema@.conversation_departure AS d WHERE d.uid = '' AND d.type = -1 AND d.version < newest + 1;
    END IF;
    RETURN forgotten;
END
$$;
COMMENT ON FUNCTION @extschema@.conversation_forget_departures(interval) IS
    'Deletes departures older than older_than; positions that did not see them are refused (72000) from then on';

------------------------------------------------------------------------------------------------
-- 5. conversation_distribute: as 0.7.0's, its stamp firing on DELETE too, and the truncation
-- trigger on every shard (run it again after this update on a distributed table).
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
    CREATE OR REPLACE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.conversation
        FOR EACH ROW EXECUTE FUNCTION @extschema@.conversation_stamp();
    -- The truncation mark too: Citus truncates the shards, on their nodes.
    CREATE OR REPLACE TRIGGER conversation_truncate BEFORE TRUNCATE ON @extschema@.conversation
        FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.conversation_stamp();
    -- Also for Citus's own moves (logical replication) and writers under
    -- session_replication_role = replica.
    -- (One subcommand per ALTER TABLE: Citus propagates no more.)
    ALTER TABLE @extschema@.conversation ENABLE ALWAYS TRIGGER conversation_stamp;
    ALTER TABLE @extschema@.conversation ENABLE ALWAYS TRIGGER conversation_truncate;
    step := 'stamp'; done := 'every shard stamps its changes and truncations (triggers conversation_stamp, conversation_truncate, ENABLE ALWAYS)'; RETURN NEXT;

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

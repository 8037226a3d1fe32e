-- pg_conversation 0.6.0 -> 0.7.0: sync that stays exact, or refuses, on every path production
-- takes. The Rust library changes more than this file (positions say where in the cluster's
-- history they were taken and are refused elsewhere; the WAL they depend on is flushed before they
-- are handed out; a position taken before the stamp trigger was last made or enabled is
-- refused); the SQL objects that change:
-- 1. conversation_clock gains column timeline: a generation per (cluster, timeline), so a
--    promoted standby or a point-in-time recovery, which hand out transaction ids their old
--    history had already handed out, stamp in a generation of their own. This cluster's rows get
--    its current timeline.
-- 2. The stamp trigger fires ALWAYS: for logical replication's apply and for writers under
--    session_replication_role = replica (pg_restore --disable-triggers, replication tools, bulk
--    fixes) too. The library now stamps every row written, a version an INSERT brings too, and
--    the list refuses a table whose trigger is not ENABLE ALWAYS. conversation_distribute makes
--    it so on every shard.
-- Positions that clients hold are refused once after this update (72000, "list from the start"):
-- they were written by 0.6.0, without the point in history, before the trigger changed.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.7.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. A generation per timeline.
ALTER TABLE @extschema@.conversation_clock ADD COLUMN timeline integer;
COMMENT ON COLUMN @extschema@.conversation_clock.timeline IS
    'The timeline (pg_control_checkpoint().timeline_id) the generation was taken on; NULL: before 0.7.0, on another cluster';
COMMENT ON TABLE @extschema@.conversation_clock IS
    'One row per cluster (pg_control_system().system_identifier) and timeline that wrote conversations: the generation of its versions';
-- The WAL file name begins with the timeline being written, in hex.
UPDATE @extschema@.conversation_clock
SET timeline = ('x' || pg_catalog.left(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 8))::bit(32)::integer
WHERE system_identifier = (SELECT s.system_identifier FROM pg_catalog.pg_control_system() AS s);

------------------------------------------------------------------------------------------------
-- 2. The stamp fires always: on the table, each partition and, on a Citus node, each shard here
-- (every node runs this script; each changes its own relations).
DO $$
DECLARE
    stamp record;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    FOR stamp IN SELECT t.tgrelid::regclass AS relation, t.tgname
                 FROM pg_catalog.pg_trigger AS t
                 WHERE t.tgfoid = '@extschema@.conversation_stamp()'::pg_catalog.regprocedure AND t.tgenabled = 'O'
                 ORDER BY t.tgrelid LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', stamp.relation, stamp.tgname);
    END LOOP;
END
$$;

------------------------------------------------------------------------------------------------
-- conversation_distribute: as 0.5.0's, its trigger made ENABLE ALWAYS on every shard.
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
    -- Also for Citus's own moves (logical replication) and writers under
    -- session_replication_role = replica.
    ALTER TABLE @extschema@.conversation ENABLE ALWAYS TRIGGER conversation_stamp;
    step := 'stamp'; done := 'every shard stamps its changes (trigger conversation_stamp, ENABLE ALWAYS)'; RETURN NEXT;

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

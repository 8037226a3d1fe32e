-- pg_conversation 0.10.1 -> 0.11.0: large channels on Citus (issue 19, docs/large-groups.md).
-- conversation_distribute also makes conversation_channel a reference table, so that every node
-- reads the rows of large channels from its own placement; run it again on a cluster
-- distributed before (until then, channels there stay per member, as before).
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.11.0'" to load this file. \quit

CREATE OR REPLACE FUNCTION public.conversation_distribute(shard_count integer DEFAULT 32)
 RETURNS TABLE(step text, done text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    table_oid regclass := 'public.conversation'::regclass;
    distributed_by text;
    channel_oid regclass := 'public.conversation_channel'::regclass;
    channel_method text;
    coordinator_known boolean;
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
    CREATE OR REPLACE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE OR DELETE ON public.conversation
        FOR EACH ROW EXECUTE FUNCTION public.conversation_stamp();
    -- The truncation mark too: Citus truncates the shards, on their nodes.
    CREATE OR REPLACE TRIGGER conversation_truncate BEFORE TRUNCATE ON public.conversation
        FOR EACH STATEMENT EXECUTE FUNCTION public.conversation_stamp();
    -- Also for Citus's own moves (logical replication) and writers under
    -- session_replication_role = replica.
    -- (One subcommand per ALTER TABLE: Citus propagates no more.)
    ALTER TABLE public.conversation ENABLE ALWAYS TRIGGER conversation_stamp;
    ALTER TABLE public.conversation ENABLE ALWAYS TRIGGER conversation_truncate;
    step := 'stamp'; done := 'every shard stamps its changes and truncations (triggers conversation_stamp, conversation_truncate, ENABLE ALWAYS)'; RETURN NEXT;

    -- Large channels (docs/large-groups.md): every member's list reads its channel's row on the
    -- node of the member's shard, and messages read it on the coordinator, so conversation_channel
    -- becomes a reference table: a placement on every node in the metadata, written by Citus in
    -- one transaction, each stamped by its own node's copy of the trigger (ENABLE ALWAYS kept).
    -- A coordinator outside the metadata would get no placement: the table then stays here, and
    -- channels cannot be made large.
    EXECUTE 'SELECT p.partmethod::text || p.repmodel::text FROM pg_dist_partition AS p WHERE p.logicalrelid = $1'
        INTO channel_method USING channel_oid;
    EXECUTE 'SELECT EXISTS (SELECT FROM pg_dist_node AS n WHERE n.groupid = 0)' INTO coordinator_known;
    IF channel_method = 'nt' THEN
        step := 'channels'; done := 'conversation_channel is already a reference table'; RETURN NEXT;
    ELSIF channel_method IS NOT NULL THEN
        RAISE EXCEPTION 'table conversation_channel is a Citus table, but not a reference table'
            USING ERRCODE = '55000',
                  HINT = 'Every node reads every channel row: undistribute_table(''conversation_channel''), then run conversation_distribute again.';
    ELSIF NOT coordinator_known THEN
        step := 'channels'; done := 'conversation_channel stays on the coordinator, so channels stay per member: add the coordinator to the metadata (citus_set_coordinator_host), then run conversation_distribute again'; RETURN NEXT;
    ELSE
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
        PERFORM create_reference_table(channel_oid);
        PERFORM truncate_local_data_after_distributing_table(channel_oid);
        step := 'channels'; done := 'conversation_channel is a reference table: every node holds the channel rows of large channels'; RETURN NEXT;
    END IF;

    FOREACH user_function IN ARRAY ARRAY[
        'public.get_or_create_conversation(text, text, integer)',
        'public.find_conversation(text, text, integer)',
        'public.conversation_mark_read(text, text, integer, bigint)',
        'public.conversation_hide(text, text, integer, bigint)',
        'public.conversation_clear(text, text, integer, bigint)',
        'public.conversation_list(text, integer, text, integer)',
        'public.conversation_unread(text, integer)']::regprocedure[] LOOP
        PERFORM create_distributed_function(user_function, 'uid', colocate_with => table_oid::text);
    END LOOP;
    step := 'functions'; done := 'the functions of one user''s conversations run on the node of the user''s shard'; RETURN NEXT;

    -- Ids: a range per node group, so that no two nodes ever draw the same id. On the workers
    -- with Citus's own function (IF NOT EXISTS: the sequence is there; only its range changes,
    -- once); the coordinator keeps the first range.
    ALTER SEQUENCE public.conversation_id_seq MAXVALUE 281474976710656;
    FOR worker IN SELECT * FROM run_command_on_workers(format(
            'SELECT pg_catalog.worker_apply_sequence_command(%L, %L::pg_catalog.regtype)',
            'CREATE SEQUENCE IF NOT EXISTS public.conversation_id_seq AS bigint', 'bigint')) LOOP
        IF NOT worker.success THEN
            RAISE EXCEPTION 'could not give % the id range of its node group: %', worker.nodename || ':' || worker.nodeport, worker.result
                USING ERRCODE = '55000', HINT = 'Check that pg_conversation is installed on every node, then run conversation_distribute again.';
        END IF;
        workers := workers + 1;
    END LOOP;
    step := 'ids'; done := format('the coordinator and %s workers draw ids from ranges of their own', workers); RETURN NEXT;
END
$function$;
COMMENT ON FUNCTION public.conversation_distribute(integer) IS 'Distributes the conversation table by uid with Citus, makes the channel table a reference table, delegates the single-key functions, and gives every node its own id range; run again after adding a node';

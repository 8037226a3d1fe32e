-- pg_conversation 0.3.0 -> 0.4.0: the table as users change it, replicas, and hostile input.
-- 1. find_conversation(): the lookup that never writes (hot standbys, READ ONLY transactions).
-- 2. get_or_create_conversations(keys text): JSON text read strictly (a repeated field is an
--    error, which a jsonb value can no longer show).
-- 3. An index on id: applications look conversations up by the id they stored.
-- 4. conversation_import never gives one id to two keys, never changes a live row's id, and
--    reports the ids it could not keep.
-- 5. Every function refuses row level security (0A000) the same way, and every statement of the
--    SQL functions resolves its names and operators in pg_catalog whatever the caller's path.
-- 6. The C functions are declared one way: every declaration names a symbol of the same name
--    (up to 0.3.0 pgrx generated some, named <function>_wrapper; the library keeps those names
--    for databases not yet updated).
-- ALTER EXTENSION pg_conversation UPDATE runs this file; CREATE EXTENSION runs it after the
-- earlier versions' objects (src/lib.rs), so a fresh install and an updated one are the same.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.4.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. Lookup without writing (src/find.rs). STABLE: it reads with the calling statement's
-- snapshot. Not STRICT: a NULL argument is 22004, as everywhere; NULL means "no such
-- conversation".

CREATE FUNCTION @extschema@.find_conversation(uid text, channel_id text, channel_type integer)
RETURNS @extschema@.conversation_row
LANGUAGE c STABLE PARALLEL RESTRICTED SECURITY INVOKER
AS 'MODULE_PATHNAME', 'find_conversation';

COMMENT ON FUNCTION @extschema@.find_conversation(text, text, integer) IS
    'The conversation for (uid, channel_id, channel_type), or NULL; never writes, so it runs on replicas';

------------------------------------------------------------------------------------------------
-- 2. Batches: the JSON text form, and the C symbols renamed (6).

CREATE FUNCTION @extschema@.get_or_create_conversations(keys text)
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_text';

COMMENT ON FUNCTION @extschema@.get_or_create_conversations(text) IS
    'The conversations of a JSON array of {uid, channel_id, channel_type}, read strictly, created if missing; at most 10000 keys';

CREATE OR REPLACE FUNCTION @extschema@.get_or_create_conversations(keys jsonb)
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_jsonb';

CREATE OR REPLACE FUNCTION @extschema@.get_or_create_conversations(channel_id text, channel_type integer, uids text[])
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_members';

-- Until 0.3.0 pgrx wrote this declaration itself; from 0.4.0 it is written here like every other
-- (OR REPLACE: an updated database has it already, a fresh install gets it here).
CREATE OR REPLACE FUNCTION @extschema@.conversation_lock_key(uid text, channel_id text, channel_type integer)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_lock_key';

COMMENT ON FUNCTION @extschema@.conversation_lock_key(text, text, integer) IS
    'The advisory lock id (objid in pg_locks, classid 1131376246) taken while this key is created';

CREATE OR REPLACE FUNCTION @extschema@.conversation_stats(
    OUT preloaded boolean, OUT calls bigint, OUT hits bigint, OUT creates bigint,
    OUT lock_waits bigint, OUT races_resolved bigint, OUT errors bigint, OUT batch_calls bigint,
    OUT batch_keys bigint, OUT batch_creates bigint, OUT messages bigint, OUT reads bigint,
    OUT stats_reset timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL SAFE SECURITY INVOKER ROWS 1
AS 'MODULE_PATHNAME', 'conversation_stats_row';

CREATE OR REPLACE FUNCTION @extschema@.conversation_stats_reset()
RETURNS void
LANGUAGE c VOLATILE PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_stats_reset';

------------------------------------------------------------------------------------------------
-- 3. Lookups by id. Not unique: every unique index must lead with uid (so the table can be
-- distributed by uid); the extension's functions keep ids unique (the sequence, and the import
-- below). Built inside the update, so it blocks writes while it builds (README, "Upgrading").

CREATE INDEX conversation_id_idx ON @extschema@.conversation (id);

------------------------------------------------------------------------------------------------
-- 5. Checks and alerts refuse row level security like every function (they would otherwise see
-- only the rows a policy shows, and say so nowhere).

-- Its default source is now NULL, the extension's table looked up when it runs: a default of
-- 'conversation'::regclass made the function depend on the table's OID, which
-- conversation_partition replaces.
CREATE OR REPLACE FUNCTION @extschema@.conversation_duplicates(source regclass DEFAULT NULL)
RETURNS TABLE (uid text, channel_id text, channel_type integer, row_count bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    source := coalesce(source, '@extschema@.conversation'::regclass);
    IF row_security_active(source) THEN
        RAISE EXCEPTION 'pg_conversation''s functions do not support row level security on table %', source
            USING ERRCODE = '0A000',
                  HINT = 'Call them as a role that bypasses row level security (the table owner, or a role with BYPASSRLS).';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.uid::text, s.channel_id::text, s.channel_type::integer, count(*)
         FROM %s AS s
         GROUP BY 1, 2, 3 HAVING count(*) > 1
         ORDER BY 4 DESC, 1, 2, 3', source);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.conversation_growth(
    threshold integer DEFAULT 1000, window_length interval DEFAULT '1 hour')
RETURNS TABLE (uid text, created bigint, total bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF row_security_active('@extschema@.conversation'::regclass) THEN
        RAISE EXCEPTION 'pg_conversation''s functions do not support row level security on table conversation'
            USING ERRCODE = '0A000',
                  HINT = 'Call them as a role that bypasses row level security (the table owner, or a role with BYPASSRLS).';
    END IF;
    RETURN QUERY
    SELECT recent.uid, recent.created,
           (SELECT count(*) FROM @extschema@.conversation AS c WHERE c.uid = recent.uid)
    FROM (SELECT c.uid, count(*) AS created
          FROM @extschema@.conversation AS c
          WHERE c.created_at >= now() - window_length
          GROUP BY c.uid
          HAVING count(*) > threshold) AS recent
    ORDER BY recent.created DESC, recent.uid;
END
$$;

------------------------------------------------------------------------------------------------
-- 4. Import of a legacy table, merging duplicates, and keeping ids unique.
--
-- The source is any table (or view) with uid, channel_id and channel_type, and any of id,
-- unread_count, readed_to_msg_seq, last_msg_seq, deleted_at_msg_seq, created_at, updated_at.
-- Each key's rows merge into one: the earliest id and created_at; the greatest read position,
-- last_msg_seq, deleted_at_msg_seq and updated_at; an unread count no larger than
-- last_msg_seq - readed_to_msg_seq. A key already in the table keeps its row's id and is merged
-- the same way, so a second run changes nothing. One transaction: an error or a cancel leaves the
-- table as it was.
--
-- Ids: a legacy id is kept only if the id sequence never handed it out (it is above the
-- sequence's position when the import starts) and no other key in the source holds it; the
-- sequence then moves past every source id, merged-away ones included. Every other key gets a new
-- id: ids_reassigned counts them, and pg_temp.conversation_import_id_changes lists each
-- (key, legacy_id, id) until the session ends. So no id ever names two conversations, and an id an
-- application still holds never names another conversation.
--
-- The return type gains ids_reassigned, so the function is dropped and created again (grants on
-- it must be made again; README, "Upgrading").
DROP FUNCTION @extschema@.conversation_import(regclass, boolean, integer);

CREATE FUNCTION @extschema@.conversation_import(
    source regclass, dry_run boolean DEFAULT true, batch_size integer DEFAULT 10000)
RETURNS TABLE (applied boolean, source_rows bigint, keys bigint, duplicate_keys bigint,
               rows_merged_away bigint, invalid_rows bigint, inserted bigint, updated bigint,
               unchanged bigint, ids_reassigned bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    has_column jsonb;
    merged text;
    read_expr text;
    last_expr text;
    first_invalid text;
    total_keys bigint;
    done bigint := 0;
    chunk_inserted bigint;
    chunk_updated bigint;
    max_source_id bigint;
    handed_out bigint;
    sequence_max bigint;
    -- A constant, not now() in the statements: Citus takes only IMMUTABLE functions in the
    -- DO UPDATE clause of an INSERT into a distributed table.
    import_time timestamptz := now();
BEGIN
    IF source IS NULL OR dry_run IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'source, dry_run and batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size USING ERRCODE = '22023';
    END IF;
    IF row_security_active('@extschema@.conversation'::regclass) THEN
        RAISE EXCEPTION 'pg_conversation''s functions do not support row level security on table conversation'
            USING ERRCODE = '0A000',
                  HINT = 'Call them as a role that bypasses row level security (the table owner, or a role with BYPASSRLS).';
    END IF;
    SELECT jsonb_object_agg(a.attname, true) INTO has_column
    FROM pg_attribute AS a
    WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT (has_column ?& ARRAY['uid', 'channel_id', 'channel_type']) THEN
        RAISE EXCEPTION 'table % has no uid, channel_id or channel_type column', source
            USING ERRCODE = '42703';
    END IF;

    read_expr := CASE WHEN has_column ? 'readed_to_msg_seq' THEN 'max(s.readed_to_msg_seq)::bigint' ELSE '0' END;
    last_expr := CASE WHEN has_column ? 'last_msg_seq' THEN 'max(s.last_msg_seq)::bigint' ELSE '0' END;
    merged := format(
        'SELECT s.uid::text AS uid, s.channel_id::text AS channel_id, s.channel_type::integer AS channel_type,
                count(*) AS source_rows, %s AS legacy_id, %s AS created_at, %s AS updated_at,
                coalesce(%s, 0) AS readed_to_msg_seq, coalesce(%s, 0) AS last_msg_seq,
                coalesce(%s, 0) AS deleted_at_msg_seq, %s AS unread_count, %s AS max_source_id
         FROM %s AS s GROUP BY 1, 2, 3',
        CASE WHEN has_column ? 'id' THEN 'min(s.id)::bigint' ELSE 'NULL::bigint' END,
        CASE WHEN has_column ? 'created_at' THEN 'min(s.created_at)::timestamptz' ELSE 'NULL::timestamptz' END,
        CASE WHEN has_column ? 'updated_at' THEN 'max(s.updated_at)::timestamptz' ELSE 'NULL::timestamptz' END,
        read_expr, last_expr,
        CASE WHEN has_column ? 'deleted_at_msg_seq' THEN 'max(s.deleted_at_msg_seq)::bigint' ELSE '0' END,
        CASE
            WHEN has_column ? 'unread_count' AND (has_column ? 'last_msg_seq') THEN
                format('least(coalesce(max(s.unread_count), 0), greatest(coalesce(%s, 0) - coalesce(%s, 0), 0))::integer',
                       last_expr, read_expr)
            WHEN has_column ? 'unread_count' THEN 'coalesce(max(s.unread_count), 0)::integer'
            ELSE format('greatest(coalesce(%s, 0) - coalesce(%s, 0), 0)::integer', last_expr, read_expr)
        END,
        CASE WHEN has_column ? 'id' THEN 'max(s.id)::bigint' ELSE 'NULL::bigint' END,
        source);

    -- Left over by an earlier call in this transaction.
    IF to_regclass('pg_temp.pg_conversation_import') IS NOT NULL THEN
        DROP TABLE pg_temp.pg_conversation_import;
    END IF;
    -- shared_id: the legacy id is held by rows of more than one key of the source, so it names
    -- none of them for sure.
    EXECUTE format(
        'CREATE TEMP TABLE pg_conversation_import ON COMMIT DROP AS
         SELECT row_number() OVER (ORDER BY m.uid COLLATE "C", m.channel_id COLLATE "C", m.channel_type) AS n, m.*,
                m.legacy_id IN (%s) AS shared_id, NULL::bigint AS id
         FROM (%s) AS m',
        CASE WHEN has_column ? 'id' THEN
            format('SELECT s.id FROM %s AS s GROUP BY s.id
                    HAVING count(DISTINCT (s.uid::text, s.channel_id::text, s.channel_type::integer)) > 1', source)
        ELSE 'SELECT NULL::bigint WHERE false' END,
        merged);

    -- Rows the table's CHECKs would refuse: counted in a dry run, an error in a real one.
    SELECT count(*), min(format('(%L, %L, %s)', m.uid, m.channel_id, m.channel_type))
    INTO invalid_rows, first_invalid
    FROM pg_temp.pg_conversation_import AS m
    WHERE m.uid IS NULL OR m.uid = '' OR octet_length(m.uid) > 255
       OR m.channel_id IS NULL OR m.channel_id = '' OR octet_length(m.channel_id) > 255
       OR m.channel_type IS NULL OR m.channel_type NOT BETWEEN 0 AND 255;

    -- The id sequence's upper bound: the whole bigint range on one server; on Citus, this node
    -- group's range (conversation_distribute), above which ids belong to other nodes.
    SELECT s.seqmax INTO sequence_max FROM pg_sequence AS s
    WHERE s.seqrelid = '@extschema@.conversation_id_seq'::regclass;
    SELECT coalesce(sum(m.source_rows), 0), count(*),
           count(*) FILTER (WHERE m.source_rows > 1), coalesce(sum(m.source_rows - 1), 0),
           max(m.max_source_id) FILTER (WHERE m.max_source_id <= sequence_max)
    INTO source_rows, keys, duplicate_keys, rows_merged_away, max_source_id
    FROM pg_temp.pg_conversation_import AS m;
    applied := NOT $2;
    total_keys := keys;

    IF NOT $2 AND invalid_rows > 0 THEN
        RAISE EXCEPTION '% keys of % are not valid conversation keys, for example %', invalid_rows, source, first_invalid
            USING ERRCODE = '22023',
                  HINT = 'Fix or delete those rows first; conversation_import(source, true) counts them.';
    END IF;

    -- Where the id sequence stands: every id up to it may have been handed out. A real run moves
    -- the sequence past every source id first, while briefly holding a SHARE lock that waits for
    -- transactions writing the table and holds up new ones: with no one inserting, the position
    -- is exact and the jump cannot cross an id someone is drawing. The lock is taken in a
    -- subtransaction that is then rolled back, which releases it at once; the sequence change
    -- stays (sequences are not transactional).
    IF $2 THEN
        SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END INTO handed_out
        FROM @extschema@.conversation_id_seq AS s;
    ELSE
        BEGIN
            LOCK TABLE @extschema@.conversation IN SHARE MODE;
            SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END INTO handed_out
            FROM @extschema@.conversation_id_seq AS s;
            IF max_source_id > handed_out THEN
                PERFORM setval('@extschema@.conversation_id_seq', max_source_id);
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'PCI01';
        EXCEPTION WHEN SQLSTATE 'PCI01' THEN
            NULL;
        END;
    END IF;

    -- Each key's id: an existing row's own; else its legacy id if that is safe to keep; else a
    -- new one (drawn by the INSERT, above every source id).
    UPDATE pg_temp.pg_conversation_import AS m
    SET id = CASE WHEN c.id IS NOT NULL THEN c.id
                  WHEN m.legacy_id > handed_out AND m.legacy_id <= sequence_max AND NOT m.shared_id
                  THEN m.legacy_id END
    FROM (SELECT i.n, c.id
          FROM pg_temp.pg_conversation_import AS i
          LEFT JOIN @extschema@.conversation AS c
                 ON c.uid = i.uid AND c.channel_id = i.channel_id AND c.channel_type = i.channel_type) AS c
    WHERE c.n = m.n;

    IF $2 THEN
        -- What a real run would do, from the rows as they are now; nothing is written.
        SELECT count(*) FILTER (WHERE c.uid IS NULL), count(*) FILTER (WHERE c.uid IS NOT NULL)
        INTO inserted, updated
        FROM pg_temp.pg_conversation_import AS m
        LEFT JOIN @extschema@.conversation AS c
               ON c.uid = m.uid AND c.channel_id = m.channel_id AND c.channel_type = m.channel_type;
        unchanged := NULL;  -- known only by comparing each merged row: a real run reports it
    ELSE
        inserted := 0;
        updated := 0;
        WHILE done < total_keys LOOP
            -- In key order, so that the import and concurrent batches never deadlock.
            WITH upserted AS (
                INSERT INTO @extschema@.conversation AS c
                    (id, uid, channel_id, channel_type, unread_count, readed_to_msg_seq, last_msg_seq,
                     deleted_at_msg_seq, created_at, updated_at)
                SELECT coalesce(m.id, nextval('@extschema@.conversation_id_seq')), m.uid, m.channel_id,
                       m.channel_type, m.unread_count, m.readed_to_msg_seq, m.last_msg_seq, m.deleted_at_msg_seq,
                       coalesce(m.created_at, m.updated_at, import_time), coalesce(m.updated_at, m.created_at, import_time)
                FROM pg_temp.pg_conversation_import AS m
                WHERE m.n > done AND m.n <= done + batch_size
                ORDER BY m.n
                -- A row that exists keeps its id: applications hold it.
                -- A source without times proposes the import's time: a row that exists keeps its
                -- own then (so a second run changes nothing).
                ON CONFLICT (uid, channel_id, channel_type) DO UPDATE SET
                    created_at = least(c.created_at, excluded.created_at),
                    updated_at = greatest(c.updated_at, nullif(excluded.updated_at, import_time)),
                    readed_to_msg_seq = greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq),
                    last_msg_seq = greatest(c.last_msg_seq, excluded.last_msg_seq),
                    deleted_at_msg_seq = greatest(c.deleted_at_msg_seq, excluded.deleted_at_msg_seq),
                    unread_count = least(greatest(c.unread_count, excluded.unread_count),
                                         greatest(greatest(c.last_msg_seq, excluded.last_msg_seq)
                                                  - greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq), 0))
                -- Only rows the merge changes get a new version: a second run writes nothing.
                WHERE (c.created_at, c.updated_at, c.readed_to_msg_seq, c.last_msg_seq,
                       c.deleted_at_msg_seq, c.unread_count)
                      IS DISTINCT FROM
                      (least(c.created_at, excluded.created_at),
                       greatest(c.updated_at, nullif(excluded.updated_at, import_time)),
                       greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq),
                       greatest(c.last_msg_seq, excluded.last_msg_seq),
                       greatest(c.deleted_at_msg_seq, excluded.deleted_at_msg_seq),
                       least(greatest(c.unread_count, excluded.unread_count),
                             greatest(greatest(c.last_msg_seq, excluded.last_msg_seq)
                                      - greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq), 0)))
                RETURNING c.xmax = 0 AS was_inserted)
            SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE NOT was_inserted)
            INTO chunk_inserted, chunk_updated
            FROM upserted;
            inserted := inserted + chunk_inserted;
            updated := updated + chunk_updated;
            done := least(done + batch_size, total_keys);
            RAISE NOTICE 'pg_conversation import from %: % of % keys (% %%)',
                source, done, total_keys, (100 * done / total_keys);
        END LOOP;
        unchanged := total_keys - inserted - updated;
        -- The ids the rows ended with (a key created concurrently keeps the id its creator drew).
        UPDATE pg_temp.pg_conversation_import AS m SET id = c.id
        FROM @extschema@.conversation AS c
        WHERE c.uid = m.uid AND c.channel_id = m.channel_id AND c.channel_type = m.channel_type;
    END IF;

    -- Which legacy ids did not survive, until the session ends (a dry run leaves id NULL where a
    -- new id would be drawn).
    IF to_regclass('pg_temp.conversation_import_id_changes') IS NOT NULL THEN
        DROP TABLE pg_temp.conversation_import_id_changes;
    END IF;
    CREATE TEMP TABLE conversation_import_id_changes ON COMMIT PRESERVE ROWS AS
    SELECT m.uid, m.channel_id, m.channel_type, m.legacy_id, m.id
    FROM pg_temp.pg_conversation_import AS m
    WHERE m.legacy_id IS NOT NULL AND m.id IS DISTINCT FROM m.legacy_id;
    SELECT count(*) INTO ids_reassigned FROM pg_temp.conversation_import_id_changes;
    IF ids_reassigned > 0 THEN
        RAISE NOTICE 'pg_conversation import from %: % legacy ids % kept: SELECT * FROM pg_temp.conversation_import_id_changes',
            source, ids_reassigned, CASE WHEN $2 THEN 'would not be' ELSE 'were not' END;
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION @extschema@.conversation_import(regclass, boolean, integer) IS
    'Imports a table of conversations, merging duplicate keys and keeping ids unique; dry_run (the default) only reports';

------------------------------------------------------------------------------------------------
-- Cleanup of stale CMD conversations. A procedure commits, and COMMIT ends what set_config(...,
-- true) pinned, so every type, operator and function here is schema-qualified: nothing depends on
-- the caller's search_path, not its variables' types (resolved when PL/pgSQL first compiles it, in
-- the caller's session), nor what runs between a COMMIT and the next pin.
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
        DELETE FROM @extschema@.conversation AS c
        WHERE c.type OPERATOR(pg_catalog.=) 2 AND c.updated_at OPERATOR(pg_catalog.<) cutoff
          AND (c.uid, c.channel_id, c.channel_type) IN (
            SELECT x.uid, x.channel_id, x.channel_type FROM @extschema@.conversation AS x
            WHERE x.type OPERATOR(pg_catalog.=) 2 AND x.updated_at OPERATOR(pg_catalog.<) cutoff
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

------------------------------------------------------------------------------------------------
-- 7. Scale-out with Citus: one call makes a running database distributed (README, "Scaling out").
-- Run on the coordinator; safe to run again, and to be run again after citus_add_node.
--   - the table is distributed by uid (every unique key starts with uid), its rows moved into
--     the shards; the coordinator's now hidden local copy is emptied;
--   - the single-key functions are registered for delegation, colocated with the table: a call
--     runs on the node holding the key's shard, where it probes the shard directly;
--   - every node group draws ids from its own range of the id sequence (Citus's own
--     worker_apply_sequence_command: group g from (g << 48) + 1), the coordinator from the first.
-- Citus's functions are called by name: they exist only where Citus is installed, and the
-- function says so (0A000) where it is not.
CREATE FUNCTION @extschema@.conversation_distribute(shard_count integer DEFAULT 32)
RETURNS TABLE (step text, done text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_oid regclass := '@extschema@.conversation'::regclass;
    distributed_by text;
    single_key_function regprocedure;
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

    FOREACH single_key_function IN ARRAY ARRAY[
        '@extschema@.get_or_create_conversation(text, text, integer)',
        '@extschema@.find_conversation(text, text, integer)',
        '@extschema@.conversation_mark_read(text, text, integer, bigint)']::regprocedure[] LOOP
        PERFORM create_distributed_function(single_key_function, 'uid', colocate_with => table_oid::text);
    END LOOP;
    step := 'functions'; done := 'get_or_create_conversation, find_conversation and conversation_mark_read run on the node of the key''s shard'; RETURN NEXT;

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

COMMENT ON FUNCTION @extschema@.conversation_distribute(integer) IS
    'Distributes the conversation table by uid with Citus, delegates the single-key functions, and gives every node its own id range; run again after adding a node';

------------------------------------------------------------------------------------------------
-- 8. Hash partitioning on one server (README, "Scaling out"): the table converted in place, every
-- row kept, under an ACCESS EXCLUSIVE lock for as long as the rows take to move. The functions
-- route each key to its partition with PostgreSQL's own hashing and probe it there.
-- The partitions are ordinary tables named conversation_p<remainder>; the new table takes the old
-- one's columns, defaults, constraints, indexes (by their names), triggers, owner and grants, and
-- its place in the extension; the id sequence moves to it. Row level security policies are not
-- copied (the functions refuse row level security anyway). Partition tables that exist already
-- (a restored dump's) are attached: that is how a partitioned table is restored (README).
CREATE FUNCTION @extschema@.conversation_partition(partitions integer DEFAULT 16)
RETURNS TABLE (step text, done text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_table regclass := '@extschema@.conversation'::regclass;
    old_name text := 'conversation_unpartitioned';
    item record;
    column_list text;
    moved bigint;
    distributed boolean;
    copies text[];
    statement text;
BEGIN
    IF partitions IS NULL OR partitions < 2 OR partitions > 1024 THEN
        RAISE EXCEPTION 'partitions must be between 2 and 1024, not %', partitions USING ERRCODE = '22023';
    END IF;
    IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = old_table) <> 'r' THEN
        RAISE EXCEPTION 'table conversation is already partitioned'
            USING ERRCODE = '55000', HINT = 'Nothing to do: the functions route every key to its partition.';
    END IF;
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = $1)'
            INTO distributed USING old_table;
        IF distributed THEN
            RAISE EXCEPTION 'table conversation is distributed with Citus, which places its shards itself'
                USING ERRCODE = '55000';
        END IF;
    END IF;
    IF to_regclass('@extschema@.' || old_name) IS NOT NULL THEN
        RAISE EXCEPTION 'a table %.% is in the way', '@extschema@', old_name
            USING ERRCODE = '55000', HINT = 'Rename or drop it, then run conversation_partition again.';
    END IF;
    LOCK TABLE @extschema@.conversation IN ACCESS EXCLUSIVE MODE;

    -- The old table's indexes (a primary key as its constraint) and triggers, as SQL that makes
    -- them on the new table under their names.
    SELECT array_agg(CASE WHEN k.conname IS NOT NULL
                          THEN format('ALTER TABLE @extschema@.conversation ADD CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid))
                          ELSE regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \S+ ON \S+ ',
                                              'CREATE \1INDEX ' || quote_ident(c.relname) || ' ON @extschema@.conversation ') END
                     ORDER BY i.indisprimary DESC, c.relname)
    INTO copies
    FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
    LEFT JOIN pg_constraint AS k ON k.conindid = i.indexrelid AND k.conrelid = old_table
    WHERE i.indrelid = old_table;
    copies := copies || ARRAY(SELECT regexp_replace(pg_get_triggerdef(t.oid), ' ON \S+ ', ' ON @extschema@.conversation ')
                              FROM pg_trigger AS t WHERE t.tgrelid = old_table AND NOT t.tgisinternal ORDER BY t.tgname);

    -- The old table and its indexes step aside; the new ones take their names.
    EXECUTE format('ALTER TABLE @extschema@.conversation RENAME TO %I', old_name);
    FOR item IN SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
                WHERE i.indrelid = old_table LOOP
        EXECUTE format('ALTER INDEX @extschema@.%I RENAME TO %I', item.relname, left(item.relname, 50) || '_unpartitioned');
    END LOOP;
    EXECUTE format('CREATE TABLE @extschema@.conversation (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                    INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY HASH (uid)',
                   old_name);
    EXECUTE format('ALTER TABLE @extschema@.conversation OWNER TO %I',
                   (SELECT r.rolname FROM pg_class AS c JOIN pg_roles AS r ON r.oid = c.relowner WHERE c.oid = old_table));
    FOR item IN SELECT a.grantee, a.privilege_type, a.is_grantable
                FROM pg_class AS c, aclexplode(c.relacl) AS a WHERE c.oid = old_table AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON @extschema@.conversation TO %s%s', item.privilege_type,
                       CASE WHEN item.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(item.grantee::regrole::text) END,
                       CASE WHEN item.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    -- The id sequence belongs to the new table (dropping the old one would drop it otherwise).
    ALTER SEQUENCE @extschema@.conversation_id_seq OWNED BY @extschema@.conversation.id;

    -- The old table's indexes and triggers, on the new one, under the old names.
    FOREACH statement IN ARRAY copies LOOP
        EXECUTE statement;
    END LOOP;
    -- A partition table that exists already (restored from a dump, where it could not be
    -- attached to the extension's new, plain table) is attached with its rows; the others are made.
    FOR item IN SELECT r, to_regclass(format('@extschema@.%I', 'conversation_p' || r)) AS existing
                FROM generate_series(0, partitions - 1) AS r LOOP
        IF item.existing IS NULL THEN
            EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.conversation FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                           'conversation_p' || item.r, partitions, item.r);
        ELSE
            EXECUTE format('ALTER TABLE @extschema@.conversation ATTACH PARTITION %s FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                           item.existing, partitions, item.r);
        END IF;
    END LOOP;
    step := 'table'; done := format('partitioned by hash on uid into conversation_p0 .. conversation_p%s', partitions - 1); RETURN NEXT;

    -- The rows, every column but the generated one.
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO column_list
    FROM pg_attribute AS a WHERE a.attrelid = old_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    EXECUTE format('INSERT INTO @extschema@.conversation (%s) SELECT %s FROM @extschema@.%I', column_list, column_list, old_name);
    GET DIAGNOSTICS moved = ROW_COUNT;
    step := 'rows'; done := format('%s conversations moved', moved); RETURN NEXT;

    -- The new table is the extension's; the old one goes.
    EXECUTE format('ALTER EXTENSION pg_conversation DROP TABLE @extschema@.%I', old_name);
    ALTER EXTENSION pg_conversation ADD TABLE @extschema@.conversation;
    EXECUTE format('DROP TABLE @extschema@.%I', old_name);
    EXECUTE 'ANALYZE @extschema@.conversation';
    step := 'done'; done := 'back up the table with pg_dump as README "Scaling out" says'; RETURN NEXT;
END
$$;

COMMENT ON FUNCTION @extschema@.conversation_partition(integer) IS
    'Converts the conversation table in place into one hash-partitioned by uid, every row kept';

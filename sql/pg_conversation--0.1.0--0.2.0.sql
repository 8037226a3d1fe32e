-- pg_conversation 0.1.0 -> 0.2.0: batches, message arrival, read state, counters, and the
-- operations DBAs run (duplicate checks, import of legacy tables, growth alert, CMD cleanup).
-- ALTER EXTENSION pg_conversation UPDATE runs this file; CREATE EXTENSION runs it after the
-- 0.1.0 objects (src/lib.rs), so a fresh install and an upgraded one hold the same objects.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.2.0'" to load this file. \quit

-- New indexes. Inside an extension script they cannot be built CONCURRENTLY: on a large table
-- the update blocks writes while they build (see README, "Upgrading").
-- Stale CMD conversations, oldest first, for conversation_cleanup_cmd(). Partial: chats never
-- pay for it.
CREATE INDEX conversation_cmd_updated_at_idx
    ON @extschema@.conversation (updated_at) WHERE type = 2;
-- Conversations created in a time window, for conversation_growth(). BRIN: rows are appended in
-- creation order, so a few pages of summaries cover the table and creation pays almost nothing.
CREATE INDEX conversation_created_at_brin
    ON @extschema@.conversation USING brin (created_at);

------------------------------------------------------------------------------------------------
-- Batches (src/batch.rs). Rows come back ordered by input_position: the 1-based position of the
-- first occurrence of each distinct key; later duplicates are folded into it.

CREATE FUNCTION @extschema@.get_or_create_conversations(keys jsonb)
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_from_jsonb_wrapper';

COMMENT ON FUNCTION @extschema@.get_or_create_conversations(jsonb) IS
    'The conversations of a jsonb array of {uid, channel_id, channel_type}, created if missing; at most 10000 keys';

CREATE FUNCTION @extschema@.get_or_create_conversations(channel_id text, channel_type integer, uids text[])
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_for_members_wrapper';

COMMENT ON FUNCTION @extschema@.get_or_create_conversations(text, integer, text[]) IS
    'The conversations of the members of one channel, created if missing; at most 10000 uids';

------------------------------------------------------------------------------------------------
-- Messages and read state (src/message.rs, src/read_state.rs). Not STRICT: NULLs raise 22004,
-- except sender_uid, which may be NULL for a system message.

CREATE FUNCTION @extschema@.conversation_message_arrived(
    channel_id text, channel_type integer, member_uids text[], message_seq bigint, sender_uid text)
RETURNS integer
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_message_arrived';

COMMENT ON FUNCTION @extschema@.conversation_message_arrived(text, integer, text[], bigint, text) IS
    'Creates missing member conversations and advances last_msg_seq and unread counts; idempotent per message_seq';

CREATE FUNCTION @extschema@.conversation_mark_read(
    uid text, channel_id text, channel_type integer, read_to_seq bigint)
RETURNS @extschema@.conversation
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_mark_read';

COMMENT ON FUNCTION @extschema@.conversation_mark_read(text, text, integer, bigint) IS
    'Moves readed_to_msg_seq forward (never back) and keeps unread_count consistent with it';

------------------------------------------------------------------------------------------------
-- Counters (src/stats.rs): kept in shared memory when pg_conversation is in
-- shared_preload_libraries; otherwise the view says so (preloaded = false).

CREATE FUNCTION @extschema@.conversation_stats(
    OUT preloaded boolean, OUT calls bigint, OUT hits bigint, OUT creates bigint,
    OUT lock_waits bigint, OUT races_resolved bigint, OUT errors bigint, OUT batch_calls bigint,
    OUT batch_keys bigint, OUT batch_creates bigint, OUT messages bigint, OUT reads bigint,
    OUT stats_reset timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL SAFE SECURITY INVOKER ROWS 1
AS 'MODULE_PATHNAME', 'conversation_stats_row_wrapper';

CREATE VIEW @extschema@.conversation_stats AS
    SELECT * FROM @extschema@.conversation_stats();

-- As pg_stat_statements: everyone may read the counters (they name no user, key or row).
GRANT SELECT ON @extschema@.conversation_stats TO PUBLIC;

COMMENT ON VIEW @extschema@.conversation_stats IS
    'get_or_create_conversation and friends since server start or the last conversation_stats_reset()';

CREATE FUNCTION @extschema@.conversation_stats_reset()
RETURNS void
LANGUAGE c VOLATILE PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_stats_reset_all_wrapper';

-- As pg_stat_statements_reset: only superusers, or whom they grant it to.
REVOKE ALL ON FUNCTION @extschema@.conversation_stats_reset() FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Checks and alerts.

-- Every key held by more than one row of a table: always empty for the extension's own table
-- (its primary key forbids it); pass a legacy table to see what conversation_import will merge.
CREATE FUNCTION @extschema@.conversation_duplicates(
    source regclass DEFAULT '@extschema@.conversation')
RETURNS TABLE (uid text, channel_id text, channel_type integer, row_count bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT s.uid::text, s.channel_id::text, s.channel_type::integer, count(*)
         FROM %s AS s
         GROUP BY 1, 2, 3 HAVING count(*) > 1
         ORDER BY 4 DESC, 1, 2, 3', source);
END
$$;

COMMENT ON FUNCTION @extschema@.conversation_duplicates(regclass) IS
    'Keys held by more than one row of a table of conversations; empty for the extension''s own table';

-- Users who gained more than `threshold` conversations in the last `window_length`: the symptom
-- of a client creating conversations in a loop, or of duplicates coming back from elsewhere.
CREATE FUNCTION @extschema@.conversation_growth(
    threshold integer DEFAULT 1000, window_length interval DEFAULT '1 hour')
RETURNS TABLE (uid text, created bigint, total bigint)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT recent.uid, recent.created,
           (SELECT count(*) FROM @extschema@.conversation AS c WHERE c.uid = recent.uid)
    FROM (SELECT c.uid, count(*) AS created
          FROM @extschema@.conversation AS c
          WHERE c.created_at >= now() - window_length
          GROUP BY c.uid
          HAVING count(*) > threshold) AS recent
    ORDER BY recent.created DESC, recent.uid
$$;

COMMENT ON FUNCTION @extschema@.conversation_growth(integer, interval) IS
    'Users whose conversation count grew by more than threshold within window_length';

------------------------------------------------------------------------------------------------
-- Import of a legacy table, merging duplicates.
--
-- The source is any table (or view) with uid, channel_id and channel_type, and any of id,
-- unread_count, readed_to_msg_seq, last_msg_seq, deleted_at_msg_seq, created_at, updated_at.
-- Each key's rows merge into one: the earliest id and created_at; the greatest read position,
-- last_msg_seq, deleted_at_msg_seq and updated_at; an unread count no larger than
-- last_msg_seq - readed_to_msg_seq. A key already in the table is merged the same way, so a
-- second run changes nothing. One transaction: an error or a cancel leaves the table as it was.
CREATE FUNCTION @extschema@.conversation_import(
    source regclass, dry_run boolean DEFAULT true, batch_size integer DEFAULT 10000)
RETURNS TABLE (applied boolean, source_rows bigint, keys bigint, duplicate_keys bigint,
               rows_merged_away bigint, invalid_rows bigint, inserted bigint, updated bigint,
               unchanged bigint)
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
BEGIN
    IF source IS NULL OR dry_run IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'source, dry_run and batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size USING ERRCODE = '22023';
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
                count(*) AS source_rows, %s AS id, %s AS created_at, %s AS updated_at,
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
    EXECUTE format(
        'CREATE TEMP TABLE pg_conversation_import ON COMMIT DROP AS
         SELECT row_number() OVER (ORDER BY m.uid COLLATE "C", m.channel_id COLLATE "C", m.channel_type) AS n, m.*
         FROM (%s) AS m', merged);

    -- Rows the table's CHECKs would refuse: counted in a dry run, an error in a real one.
    SELECT count(*), min(format('(%L, %L, %s)', m.uid, m.channel_id, m.channel_type))
    INTO invalid_rows, first_invalid
    FROM pg_temp.pg_conversation_import AS m
    WHERE m.uid IS NULL OR m.uid = '' OR octet_length(m.uid) > 255
       OR m.channel_id IS NULL OR m.channel_id = '' OR octet_length(m.channel_id) > 255
       OR m.channel_type IS NULL OR m.channel_type NOT BETWEEN 0 AND 255;

    SELECT coalesce(sum(m.source_rows), 0), count(*),
           count(*) FILTER (WHERE m.source_rows > 1), coalesce(sum(m.source_rows - 1), 0)
    INTO source_rows, keys, duplicate_keys, rows_merged_away
    FROM pg_temp.pg_conversation_import AS m;
    applied := NOT $2;
    total_keys := keys;

    IF $2 THEN
        -- What a real run would do, from the rows as they are now; nothing is written.
        SELECT count(*) FILTER (WHERE c.uid IS NULL), count(*) FILTER (WHERE c.uid IS NOT NULL)
        INTO inserted, updated
        FROM pg_temp.pg_conversation_import AS m
        LEFT JOIN @extschema@.conversation AS c
               ON c.uid = m.uid AND c.channel_id = m.channel_id AND c.channel_type = m.channel_type;
        unchanged := NULL;  -- known only by comparing each merged row: a real run reports it
        RETURN NEXT;
        RETURN;
    END IF;

    IF invalid_rows > 0 THEN
        RAISE EXCEPTION '% keys of % are not valid conversation keys, for example %', invalid_rows, source, first_invalid
            USING ERRCODE = '22023',
                  HINT = 'Fix or delete those rows first; conversation_import(source, true) counts them.';
    END IF;

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
                   coalesce(m.created_at, m.updated_at, now()), coalesce(m.updated_at, m.created_at, now())
            FROM pg_temp.pg_conversation_import AS m
            WHERE m.n > done AND m.n <= done + batch_size
            ORDER BY m.n
            ON CONFLICT (uid, channel_id, channel_type) DO UPDATE SET
                id = least(c.id, excluded.id),
                created_at = least(c.created_at, excluded.created_at),
                updated_at = greatest(c.updated_at, excluded.updated_at),
                readed_to_msg_seq = greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq),
                last_msg_seq = greatest(c.last_msg_seq, excluded.last_msg_seq),
                deleted_at_msg_seq = greatest(c.deleted_at_msg_seq, excluded.deleted_at_msg_seq),
                unread_count = least(greatest(c.unread_count, excluded.unread_count),
                                     greatest(greatest(c.last_msg_seq, excluded.last_msg_seq)
                                              - greatest(c.readed_to_msg_seq, excluded.readed_to_msg_seq), 0))
            -- Only rows the merge changes get a new version: a second run writes nothing.
            WHERE (c.id, c.created_at, c.updated_at, c.readed_to_msg_seq, c.last_msg_seq,
                   c.deleted_at_msg_seq, c.unread_count)
                  IS DISTINCT FROM
                  (least(c.id, excluded.id), least(c.created_at, excluded.created_at),
                   greatest(c.updated_at, excluded.updated_at),
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

    -- New ids start after every id the source held, merged-away ones included: an application
    -- may still hold those, and must never find them on another conversation.
    PERFORM setval('@extschema@.conversation_id_seq', m.max_id)
    FROM (SELECT greatest((SELECT max(i.max_source_id) FROM pg_temp.pg_conversation_import AS i),
                          (SELECT max(c.id) FROM @extschema@.conversation AS c)) AS max_id) AS m,
         @extschema@.conversation_id_seq AS s
    WHERE m.max_id > s.last_value OR (NOT s.is_called AND m.max_id >= s.last_value);
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION @extschema@.conversation_import(regclass, boolean, integer) IS
    'Imports a table of conversations, merging duplicate keys; dry_run (the default) only reports';

------------------------------------------------------------------------------------------------
-- Cleanup of stale CMD conversations, in batches, each its own transaction: no lock is held
-- for longer than one batch, and rows someone is using right now are skipped (SKIP LOCKED).
-- A procedure, because it commits between batches: CALL it outside a transaction block, by hand
-- or from pg_cron (README). It cannot carry a SET search_path clause (that forbids COMMIT), so it
-- pins search_path itself at the start of each transaction.
CREATE PROCEDURE @extschema@.conversation_cleanup_cmd(
    idle interval DEFAULT '30 days', batch_size integer DEFAULT 1000, INOUT deleted bigint DEFAULT NULL)
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    cutoff timestamptz;
    batch_deleted bigint;
    batches integer := 0;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF idle IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'idle and batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF idle <= interval '0' THEN
        RAISE EXCEPTION 'idle must be a positive interval, not %', idle USING ERRCODE = '22023';
    END IF;
    IF batch_size NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', batch_size USING ERRCODE = '22023';
    END IF;
    cutoff := now() - idle;
    deleted := 0;
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        DELETE FROM @extschema@.conversation AS c
        WHERE c.ctid = ANY (ARRAY(
            SELECT x.ctid FROM @extschema@.conversation AS x
            WHERE x.type = 2 AND x.updated_at < cutoff
            ORDER BY x.updated_at
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS batch_deleted = ROW_COUNT;
        deleted := deleted + batch_deleted;
        batches := batches + 1;
        RAISE NOTICE 'pg_conversation cleanup: batch %: % CMD conversations deleted, % in all',
            batches, batch_deleted, deleted;
        COMMIT;
        EXIT WHEN batch_deleted < batch_size;
    END LOOP;
END
$$;

COMMENT ON PROCEDURE @extschema@.conversation_cleanup_cmd(interval, integer, bigint) IS
    'Deletes CMD conversations idle for longer than idle, batch_size rows per transaction';

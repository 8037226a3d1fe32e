-- pg_conversation 0.5.0 -> 0.6.0: hardening. The Rust library changes more than this
-- file (list indexes read directly only while valid and ready, inputs measured before they are
-- read, positions bounded, reads bounded ahead of the last message); the SQL objects that change:
-- 1. conversation_partition locks the table before it reads anything (a second call finds the
--    table partitioned: 55000), refuses up front a partition count the lock table cannot hold
--    (53200, with the count that fits), and makes the triggers after moving the rows, each enabled
--    or disabled as it was.
-- 2. conversation_import from a source without last_msg_seq keeps the source's unread counts
--    (last_msg_seq becomes the greatest readed_to_msg_seq + unread_count of its rows, the least it
--    can be), so a second run changes nothing.
-- Positions that clients hold stay valid across this update: the position format and the stamps
-- do not change.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.6.0'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- 1. Hash partitioning on one server (README, "Scaling out").
CREATE OR REPLACE FUNCTION @extschema@.conversation_partition(partitions integer DEFAULT 16)
RETURNS TABLE (step text, done text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_table regclass;
    old_name text := 'conversation_unpartitioned';
    item record;
    column_list text;
    moved bigint;
    distributed boolean;
    copies text[];
    statement text;
    trigger_copies text[];
    trigger_states text[];
    index_count integer;
    locks_needed bigint;
    lock_capacity bigint;
BEGIN
    IF partitions IS NULL OR partitions < 2 OR partitions > 1024 THEN
        RAISE EXCEPTION 'partitions must be between 2 and 1024, not %', partitions USING ERRCODE = '22023';
    END IF;
    -- Locked before anything is read: a second call waits here for the first and then finds the
    -- table the first one made (the lock follows the name to it).
    LOCK TABLE @extschema@.conversation IN ACCESS EXCLUSIVE MODE;
    old_table := to_regclass('@extschema@.conversation');
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
    -- The conversion creates every partition, its indexes and its TOAST table in one transaction,
    -- and holds a lock on each until it commits. Refused up front, before anything is changed,
    -- when that is more than the server's lock table is sized for (PostgreSQL's own count:
    -- max_locks_per_transaction * (max_connections + max_prepared_transactions)).
    -- Measured: a partition takes a lock on itself, its TOAST table and index, each of its indexes
    -- and two objects (its row types); the old table, the new one and their indexes about six
    -- partitions' worth.
    SELECT count(*) INTO index_count FROM pg_index AS i WHERE i.indrelid = old_table;
    locks_needed := (partitions + 6)::bigint * (index_count + 5);
    lock_capacity := current_setting('max_locks_per_transaction')::bigint
                     * (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint);
    IF locks_needed > lock_capacity THEN
        RAISE EXCEPTION '% partitions need about % locks in one transaction; this server''s lock table holds %',
                partitions, locks_needed, lock_capacity
            USING ERRCODE = '53200',
                  HINT = format('Use at most %s partitions, or set max_locks_per_transaction to at least %s (a restart) and run it again. Nothing was changed.',
                                greatest(lock_capacity / (index_count + 5) - 6, 0),
                                (locks_needed + current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint - 1)
                                / (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint));
    END IF;

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
    -- Triggers are made after the rows have moved (moving a row is not a change: neither the stamp
    -- nor a trigger of the application's fires for it), each enabled or disabled as it was.
    trigger_copies := ARRAY(SELECT regexp_replace(pg_get_triggerdef(t.oid), ' ON \S+ ', ' ON @extschema@.conversation ')
                            FROM pg_trigger AS t WHERE t.tgrelid = old_table AND NOT t.tgisinternal ORDER BY t.tgname);
    trigger_states := ARRAY(SELECT format('ALTER TABLE @extschema@.conversation %s TRIGGER %I',
                                          CASE t.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END,
                                          t.tgname)
                            FROM pg_trigger AS t
                            WHERE t.tgrelid = old_table AND NOT t.tgisinternal AND t.tgenabled <> 'O' ORDER BY t.tgname);

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

    -- The old table's indexes, on the new one, under the old names.
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

    FOREACH statement IN ARRAY trigger_copies || trigger_states LOOP
        EXECUTE statement;
    END LOOP;
    step := 'triggers';
    done := coalesce((SELECT string_agg(t.tgname || CASE t.tgenabled WHEN 'D' THEN ' (disabled, as it was)'
                                                               WHEN 'R' THEN ' (replica only, as it was)'
                                                               WHEN 'A' THEN ' (always, as it was)' ELSE '' END,
                                        ', ' ORDER BY t.tgname)
                      FROM pg_trigger AS t WHERE t.tgrelid = to_regclass('@extschema@.conversation') AND NOT t.tgisinternal),
                     'none');
    RETURN NEXT;

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

------------------------------------------------------------------------------------------------
-- 2. Import of a legacy table (README, "Repairing and importing a legacy table").
CREATE OR REPLACE FUNCTION @extschema@.conversation_import(
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
    -- Without last_msg_seq, the least it can be: a row's read position plus the unread messages
    -- after it, the greatest over the key's rows. So the merge rule (unread at most last - read)
    -- keeps what the source's unread counts can mean, and a second run finds every row as the
    -- first left it.
    last_expr := CASE
        WHEN has_column ? 'last_msg_seq' THEN 'max(s.last_msg_seq)::bigint'
        WHEN has_column ? 'unread_count' THEN format('max(%s + greatest(coalesce(s.unread_count, 0), 0))::bigint',
                                                     CASE WHEN has_column ? 'readed_to_msg_seq' THEN 'coalesce(s.readed_to_msg_seq, 0)' ELSE '0' END)
        ELSE '0' END;
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
            WHEN has_column ? 'unread_count' THEN
                format('least(coalesce(max(s.unread_count), 0), greatest(coalesce(%s, 0) - coalesce(%s, 0), 0))::integer',
                       last_expr, read_expr)
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

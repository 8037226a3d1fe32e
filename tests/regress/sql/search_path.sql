-- Look-alikes: an unprivileged role puts a schema first on the search path (with pg_catalog listed
-- last, so that it is searched last) holding operators for every comparison and arithmetic on the
-- types the extension's SQL uses, functions and aggregates named like the functions it calls, and
-- domains named like the types it casts to. Each one raises as soon as it runs. Every function and
-- procedure of the extension is then called with that path, as a superuser and through SECURITY
-- DEFINER wrappers (a common way to grant them): all succeed, so no look-alike ran. (PostgreSQL's
-- rule since CVE-2018-1058: an extension's statements resolve every name under a pinned path or
-- schema-qualified.)
\set db pgconv_search_path
\set db_options ''
\ir sql/fresh_database.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS pgconv_attacker;
RESET client_min_messages;
CREATE ROLE pgconv_attacker;
CREATE SCHEMA evil AUTHORIZATION pgconv_attacker;
GRANT USAGE ON SCHEMA evil TO PUBLIC;

SET ROLE pgconv_attacker;
DO $do$
DECLARE
    o record;
    types regtype[] := ARRAY['text', 'name', 'oid', 'regclass', 'int2', 'int4', 'int8', 'bool', 'tid', 'jsonb',
                             'timestamptz', 'interval', 'text[]', 'int2[]', 'anyarray', 'anyelement']::regtype[];
    made integer := 0;
BEGIN
    -- Operators: each binary operator of pg_catalog between those types, again in evil.
    FOR o IN SELECT p.oid, p.oprname, p.oprleft::regtype AS l, p.oprright::regtype AS r, p.oprresult::regtype AS res
             FROM pg_operator AS p
             WHERE p.oprnamespace = 'pg_catalog'::regnamespace AND p.oprkind = 'b'
               AND p.oprleft = ANY (types) AND p.oprright = ANY (types) LOOP
        EXECUTE format($f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s LANGUAGE plpgsql AS
                          $b$BEGIN RAISE EXCEPTION USING MESSAGE = %L; END$b$ $f$,
                       'operator_' || o.oid, o.l, o.r, o.res, format('look-alike operator %s(%s, %s) ran', o.oprname, o.l, o.r));
        EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.%I)',
                       o.oprname, o.l, o.r, 'operator_' || o.oid);
        made := made + 1;
    END LOOP;
    RAISE NOTICE 'look-alike operators: %', CASE WHEN made > 200 THEN 'more than 200' ELSE made::text END;
    -- Functions named like those the extension's SQL calls, with pg_catalog's signatures (those an
    -- unprivileged role can write: not "any").
    made := 0;
    FOR o IN SELECT p.oid, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
                    pg_get_function_result(p.oid) AS res
             FROM pg_proc AS p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
               AND p.proname = ANY (ARRAY['now', 'unnest', 'set_config', 'current_setting', 'nextval', 'setval',
                                          'octet_length', 'to_regclass', 'row_security_active', 'right', 'left',
                                          'length', 'jsonb_object_agg', 'textlen', 'btint8cmp', 'int84lt',
                                          'texteq', 'generate_series', 'array_length', 'cardinality'])
               AND pg_get_function_identity_arguments(p.oid) NOT LIKE '%"any"%' LOOP
        EXECUTE format($f$CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS
                          $b$BEGIN RAISE EXCEPTION USING MESSAGE = %L; END$b$ $f$,
                       o.proname, o.args, o.res, format('look-alike function %s(%s) ran', o.proname, o.args));
        made := made + 1;
    END LOOP;
    RAISE NOTICE 'look-alike functions: %', CASE WHEN made > 30 THEN 'more than 30' ELSE made::text END;
END $do$;
-- Aggregates: count(*), min, max and sum of the types the import merges.
CREATE FUNCTION evil.step(bigint) RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''look-alike aggregate ran''; END';
CREATE FUNCTION evil.step(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''look-alike aggregate ran''; END';
CREATE FUNCTION evil.step(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''look-alike aggregate ran''; END';
CREATE AGGREGATE evil.count(*) (SFUNC = evil.step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.min(bigint) (SFUNC = evil.step, STYPE = bigint);
CREATE AGGREGATE evil.max(bigint) (SFUNC = evil.step, STYPE = bigint);
CREATE AGGREGATE evil.sum(bigint) (SFUNC = evil.step, STYPE = bigint);
CREATE AGGREGATE evil.min(timestamptz) (SFUNC = evil.step, STYPE = timestamptz);
CREATE AGGREGATE evil.max(timestamptz) (SFUNC = evil.step, STYPE = timestamptz);
-- Types: a cast to one of these names would run the domain's check.
CREATE FUNCTION evil.checked(anyelement) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''look-alike type ran''; END';
CREATE DOMAIN evil.text AS pg_catalog.text CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.int2 AS pg_catalog.int2 CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.int4 AS pg_catalog.int4 CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.int8 AS pg_catalog.int8 CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.jsonb AS pg_catalog.jsonb CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.timestamptz AS pg_catalog.timestamptz CHECK (evil.checked(VALUE));
CREATE DOMAIN evil.regclass AS pg_catalog.regclass CHECK (evil.checked(VALUE));
RESET ROLE;

-- They work: with evil first, these plain expressions run look-alikes (so the test can fail).
SET search_path = evil, public, pg_catalog;
SELECT now();
SELECT 1::bigint < 2;
SELECT 'a'::text = 'b';
SELECT count(*) FROM pg_class;
SELECT 1::int2;
RESET search_path;

-- A legacy table for the import, stale CMD rows for the cleanup, and the wrappers.
CREATE TABLE legacy (id bigint, uid text, channel_id text, channel_type integer, readed_to_msg_seq bigint,
                     last_msg_seq bigint, unread_count integer, created_at timestamptz, updated_at timestamptz);
INSERT INTO legacy VALUES (100, 'l1', 'g1', 1, 3, 5, 2, now(), now()), (101, 'l1', 'g1', 1, 4, 5, 1, now(), now()),
                          (102, 'l2', 'g1', 1, 0, 0, 0, now(), now());
CREATE FUNCTION wrapped_get_or_create(text, text, integer) RETURNS conversation_row
    LANGUAGE sql SECURITY DEFINER AS 'SELECT * FROM public.get_or_create_conversation($1, $2, $3)';
CREATE FUNCTION wrapped_find(text, text, integer) RETURNS conversation_row
    LANGUAGE sql SECURITY DEFINER AS 'SELECT * FROM public.find_conversation($1, $2, $3)';
CREATE FUNCTION wrapped_batch(text, integer, text[]) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.get_or_create_conversations($1, $2, $3)';
CREATE FUNCTION wrapped_batch(text) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.get_or_create_conversations($1)';
CREATE FUNCTION wrapped_batch(jsonb) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.get_or_create_conversations($1)';
CREATE FUNCTION wrapped_message(text, integer, text[], bigint, text) RETURNS integer
    LANGUAGE sql SECURITY DEFINER AS 'SELECT public.conversation_message_arrived($1, $2, $3, $4, $5)';
CREATE FUNCTION wrapped_read(text, text, integer, bigint) RETURNS conversation_row
    LANGUAGE sql SECURITY DEFINER AS 'SELECT * FROM public.conversation_mark_read($1, $2, $3, $4)';
CREATE FUNCTION wrapped_duplicates(regclass) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.conversation_duplicates($1)';
CREATE FUNCTION wrapped_growth() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.conversation_growth(0, ''1 day'')';
CREATE FUNCTION wrapped_import(regclass, boolean) RETURNS text
    LANGUAGE sql SECURITY DEFINER AS 'SELECT i::pg_catalog.text FROM public.conversation_import($1, $2) AS i';
CREATE FUNCTION wrapped_stats() RETURNS boolean
    LANGUAGE sql SECURITY DEFINER AS 'SELECT s.preloaded FROM public.conversation_stats AS s';
CREATE FUNCTION wrapped_lock_key(text, text, integer) RETURNS integer
    LANGUAGE sql SECURITY DEFINER AS 'SELECT public.conversation_lock_key($1, $2, $3)';
CREATE FUNCTION wrapped_list(text) RETURNS text
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.string_agg(l.channel_id, '','') FROM public.conversation_list($1) AS l';
CREATE FUNCTION wrapped_sync(text) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT pg_catalog.count(*) FROM public.conversation_list($1, NULL,
        (SELECT l.position FROM public.conversation_list($1) AS l LIMIT 1))';
CREATE FUNCTION wrapped_unread(text) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT u.unread_count FROM public.conversation_unread($1) AS u';
CREATE FUNCTION wrapped_hide(text, text, integer) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER AS 'SELECT h.hidden FROM public.conversation_hide($1, $2, $3) AS h';
CREATE FUNCTION wrapped_clear(text, text, integer) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS 'SELECT c.deleted_at_msg_seq FROM public.conversation_clear($1, $2, $3) AS c';
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO pgconv_attacker;

-- As a superuser, with the look-alikes first on the path.
SET search_path = evil, public, pg_catalog;
SELECT uid FROM get_or_create_conversation('u1', 'g1', 1);
SELECT uid FROM get_or_create_conversation('u1', 'g1', 1);
SELECT uid FROM find_conversation('u1', 'g1', 1);
SELECT input_position, uid FROM get_or_create_conversations('g1', 1, ARRAY['u1', 'u2']);
SELECT input_position, uid FROM get_or_create_conversations('[{"uid": "u3", "channel_id": "g1", "channel_type": 1}]');
SELECT input_position, uid FROM get_or_create_conversations('[{"uid": "u4", "channel_id": "g1", "channel_type": 1}]'::pg_catalog.jsonb);
SELECT conversation_message_arrived('g1', 1, ARRAY['u1', 'u2', 'u5'], 1, 'u1');
SELECT uid, readed_to_msg_seq FROM conversation_mark_read('u2', 'g1', 1, 1);
SELECT * FROM conversation_duplicates('legacy');
SELECT * FROM conversation_duplicates();
SELECT * FROM conversation_growth(100, '1 day');
SELECT applied, keys, inserted FROM conversation_import('legacy');
SELECT applied, keys, inserted, ids_reassigned FROM conversation_import('legacy', false);
SELECT preloaded FROM conversation_stats;
SELECT conversation_stats_reset();
SELECT conversation_lock_key('u1', 'g1', 1);
SELECT channel_id, unread_count FROM conversation_list('u1');
SELECT count(*) FROM conversation_list('u1', NULL, (SELECT position FROM conversation_list('u1') LIMIT 1));
SELECT unread_count, conversations FROM conversation_unread('u5');
SELECT hidden FROM conversation_hide('u5', 'g1', 1);
SELECT deleted_at_msg_seq, unread_count FROM conversation_clear('u5', 'g1', 1);
INSERT INTO public.conversation (uid, channel_id, channel_type) VALUES ('u9', 'g9____cmd', 2);
UPDATE public.conversation SET updated_at = pg_catalog.now() OPERATOR(pg_catalog.-) '40 days'::pg_catalog.interval
WHERE uid OPERATOR(pg_catalog.=) 'u9';
CALL conversation_cleanup_cmd('30 days', 1);
RESET search_path;

-- As the unprivileged role, through the SECURITY DEFINER wrappers (run as their superuser owner).
SET ROLE pgconv_attacker;
SET search_path = evil, public, pg_catalog;
SELECT uid FROM wrapped_get_or_create('a1', 'g1', 1);
SELECT uid FROM wrapped_get_or_create('a1', 'g1', 1);
SELECT uid FROM wrapped_find('a1', 'g1', 1);
SELECT wrapped_batch('g2', 1, ARRAY['a1', 'a2']);
SELECT wrapped_batch('[{"uid": "a3", "channel_id": "g2", "channel_type": 1}]'::pg_catalog.text);
SELECT wrapped_batch('[{"uid": "a4", "channel_id": "g2", "channel_type": 1}]'::pg_catalog.jsonb);
SELECT wrapped_message('g2', 1, ARRAY['a1', 'a2'], 1, 'a1');
SELECT uid, readed_to_msg_seq FROM wrapped_read('a2', 'g2', 1, 1);
SELECT wrapped_duplicates('legacy');
SELECT wrapped_growth();
SELECT wrapped_import('legacy', true);
SELECT wrapped_import('legacy', false);
SELECT wrapped_stats();
SELECT wrapped_lock_key('a1', 'g1', 1);
SELECT wrapped_list('a1');
SELECT wrapped_sync('a1');
SELECT wrapped_unread('a2');
SELECT wrapped_hide('a2', 'g2', 1);
SELECT wrapped_clear('a2', 'g2', 1);
RESET search_path;
RESET ROLE;

SELECT count(*) AS conversations, count(DISTINCT id) AS ids FROM conversation;
\c postgres
DROP DATABASE pgconv_search_path;
DROP ROLE pgconv_attacker;

-- What a careless or hostile client sends: every refusal has its SQLSTATE (never XX000), names
-- the element at fault, and writes nothing: no row, no sequence value, no lock.
\set db pgconv_bad_input
\set db_options ''
\ir sql/fresh_database.sql
CREATE FUNCTION written() RETURNS text LANGUAGE sql AS $$
    SELECT format('rows=%s last_id=%s', (SELECT count(*) FROM conversation),
                  (SELECT last_value || CASE WHEN is_called THEN '' ELSE ' (none drawn)' END FROM conversation_id_seq))
$$;
SELECT written();

-- JSON keys: channel_type is judged by its value, whatever its form or size.
CREATE FUNCTION json_key(channel_type text) RETURNS text LANGUAGE sql AS $$
    SELECT format('[{"uid": "u", "channel_id": "g", "channel_type": %s}]', channel_type)
$$;
SELECT number, error_of(format('SELECT get_or_create_conversations(%L::jsonb)', json_key(number))) AS as_jsonb,
       error_of(format('SELECT get_or_create_conversations(%L)', json_key(number))) AS as_text
FROM unnest(ARRAY['1e400', '-1e400', '9223372036854775807', '9223372036854775808', '256', '-1',
                  '1.5', '1e-2', '"1"', 'true', '[]', '{}']) AS number;
SELECT written();
-- Integral values in any form are integers: 2.0, 1e2 and -0 are 2, 100 and 0.
SELECT k.channel_type, c.channel_type AS stored
FROM unnest(ARRAY['2.0', '1e2', '-0']) AS k(channel_type),
     get_or_create_conversations(json_key(k.channel_type)) AS c;

-- Nesting: refused at the first value of the wrong type, never recursed into.
SELECT error_of(format('SELECT get_or_create_conversations(%L::jsonb)', repeat('[', 200) || repeat(']', 200)));
SELECT error_of(format('SELECT get_or_create_conversations(%L)', repeat('[', 200) || repeat(']', 200)));
SELECT error_of(format('SELECT get_or_create_conversations(%L)',
                       '[{"uid": ' || repeat('[', 5000) || repeat(']', 5000) || ', "channel_id": "g", "channel_type": 1}]'));
-- Repeated fields: the text form reads the JSON as written and refuses them; a jsonb value has
-- already kept only the last (PostgreSQL's rule for jsonb), so it cannot.
SELECT error_of($$SELECT get_or_create_conversations('[{"uid": "a", "uid": "b", "channel_id": "g", "channel_type": 1}]')$$);
SELECT '[{"uid": "a", "uid": "b", "channel_id": "g", "channel_type": 1}]'::jsonb AS what_jsonb_keeps;
-- Not JSON, not an array, not objects, unknown fields, missing fields, NULLs, \u0000.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT get_or_create_conversations('[{"uid": "a"')$$,
    $$SELECT get_or_create_conversations('[] []')$$,
    $$SELECT get_or_create_conversations('{"uid": "a"}')$$,
    $$SELECT get_or_create_conversations('"a"'::jsonb)$$,
    $$SELECT get_or_create_conversations('[1, 2]')$$,
    $$SELECT get_or_create_conversations('[["a", "g", 1]]')$$,
    $$SELECT get_or_create_conversations('[{"uid": "a", "channelId": "g", "channel_type": 1}]')$$,
    $$SELECT get_or_create_conversations('[{"uid": "a", "channel_type": 1}]')$$,
    $$SELECT get_or_create_conversations('[{"uid": null, "channel_id": "g", "channel_type": 1}]')$$,
    $$SELECT get_or_create_conversations('[{"uid": "a\u0000b", "channel_id": "g", "channel_type": 1}]')$$,
    $$SELECT get_or_create_conversations(NULL::text)$$,
    $$SELECT get_or_create_conversations(NULL::jsonb)$$]) AS statement;
SELECT written();

-- Arrays: more than one dimension, NULL elements, empty strings.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT get_or_create_conversations('g', 1, ARRAY[['a', 'b'], ['c', 'd']])$$,
    $$SELECT conversation_message_arrived('g', 1, ARRAY[['a', 'b'], ['c', 'd']], 1, 'a')$$,
    $$SELECT get_or_create_conversations('g', 1, ARRAY['a', NULL])$$,
    $$SELECT get_or_create_conversations('g', 1, ARRAY['a', ''])$$]) AS statement;
-- Other lower bounds are fine: elements are numbered 1, 2, ... as given.
SELECT input_position, uid FROM get_or_create_conversations('g', 1, '[0:1]={x,y}'::text[]);

-- Sizes: refused from the input's header, before anything is read (tests/race memory mode
-- measures the memory this takes for a million keys).
SELECT error_of($$SELECT get_or_create_conversations('g', 1, array_fill('u'::text, ARRAY[10001]))$$);
SELECT error_of($$SELECT get_or_create_conversations(
    (SELECT jsonb_agg(jsonb_build_object('uid', 'u' || i, 'channel_id', 'g', 'channel_type', 1))
     FROM generate_series(1, 10001) AS i))$$);
SELECT error_of($$SELECT get_or_create_conversations(
    (SELECT json_agg(json_build_object('uid', 'u' || i, 'channel_id', 'g', 'channel_type', 1))::text
     FROM generate_series(1, 10001) AS i))$$);

-- Single keys: channel_type beyond a byte, NULLs, empty and over-long ids.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT get_or_create_conversation('u', 'g', 2147483647)$$,
    $$SELECT find_conversation('u', 'g', -1)$$,
    $$SELECT find_conversation(NULL, 'g', 1)$$,
    $$SELECT conversation_mark_read('u', 'g', 1, 0)$$,
    $$SELECT conversation_lock_key('', 'g', 1)$$,
    $$SELECT get_or_create_conversation(repeat('u', 256), 'g', 1)$$]) AS statement;
-- The list, the badge, hide and clear: a uid and a type as ever; a position only as
-- conversation_list returned it, for the same list; a page of 1 to 1000; a seq of 0 or more.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT conversation_list(NULL)$$,
    $$SELECT conversation_list('')$$,
    $$SELECT conversation_list(repeat('u', 256))$$,
    $$SELECT conversation_list('u', 32768)$$,
    $$SELECT conversation_list('u', 1, NULL, 0)$$,
    $$SELECT conversation_list('u', 1, NULL, 1001)$$,
    $$SELECT conversation_list('u', 1, NULL, NULL)$$,
    $$SELECT conversation_list('u', 1, 'a position')$$,
    $$SELECT conversation_list('u', 1, '1/1/1/0/-/-/-')$$,
    $$SELECT conversation_list('u', 1, '2/1/1:1/1:0/-/-/-')$$,
    $$SELECT conversation_list('u', 1, '2/2/' || (SELECT system_identifier FROM pg_control_system()) || ':' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/1:0/0:5:5:/-/-')$$,
    $$SELECT conversation_list('u', 1, '2/1/1:1/1:0/0:5:5:/-/-')$$,
    $$SELECT conversation_list('u', 1, '2/1/' || (SELECT system_identifier FROM pg_control_system()) || ':1/1:0/0:5:5:/-/-')$$,
    $$SELECT conversation_list('u', 1, repeat('9', 1048577))$$,
    $$SELECT conversation_unread(NULL)$$,
    $$SELECT conversation_unread('u', -32769)$$,
    $$SELECT conversation_hide('u', '', 1)$$,
    $$SELECT conversation_hide('u', 'g', 1, -1)$$,
    $$SELECT conversation_clear('u', 'g', 256)$$,
    $$SELECT conversation_clear('u', 'g', 1, -1)$$]) AS statement;
-- Sizes refused from the stored size alone, before the value is read: an id longer than a key
-- may be (the sender's too), and batch values bigger than their keys can take.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT conversation_message_arrived('g', 1, ARRAY['u'], 1, repeat('s', 256))$$,
    $$SELECT get_or_create_conversations('g', 1, ARRAY[repeat('u', 3000000)])$$,
    $$SELECT get_or_create_conversations(jsonb_build_array(jsonb_build_object('uid', 'u', 'channel_id', 'g', 'channel_type', 1, 'junk', repeat('x', 1100000))))$$,
    $$SELECT get_or_create_conversations(repeat(' ', 41000000) || '[]')$$]) AS statement;
-- A read position, or a clear, more than 1000 past the last message: refused, nothing created.
SELECT statement, error_of(statement) FROM unnest(ARRAY[
    $$SELECT conversation_mark_read('u', 'g', 1, 9223372036854775807)$$,
    $$SELECT conversation_mark_read('u', 'g', 1, 1001)$$]) AS statement;
-- Only the integral JSON keys above were written, and the '[0:1]' array's two.
SELECT written();
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
\c postgres
DROP DATABASE pgconv_bad_input;

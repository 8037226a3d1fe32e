-- Databases that are not UTF8: keys are the database's own text, compared and counted as the
-- bytes it stores. Every function works with non-ASCII keys, one row per key. (This file is
-- UTF-8; the server converts it to each database's encoding.)

-- LATIN1: 'é' is one byte here.
\set db pgconv_latin1
\set db_options 'ENCODING ''LATIN1'' LC_COLLATE ''C'' LC_CTYPE ''C'' TEMPLATE template0'
\ir sql/fresh_database.sql
SELECT current_setting('server_encoding') AS server_encoding;
SELECT uid, channel_id, octet_length(uid) AS uid_bytes FROM get_or_create_conversation('józef', 'grupa-åøæ', 1);
SELECT uid, channel_id, octet_length(uid) AS uid_bytes FROM get_or_create_conversation('józef', 'grupa-åøæ', 1);
SELECT uid, channel_id FROM get_or_create_conversation('josé', 'café', 1);
SELECT input_position, uid FROM get_or_create_conversations('café', 1, ARRAY['josé', 'müller', 'josé']);
SELECT input_position, uid, channel_id FROM get_or_create_conversations('[{"uid": "josé", "channel_id": "café", "channel_type": 1}, {"uid": "ñandú", "channel_id": "café", "channel_type": 1}]');
SELECT input_position, uid, channel_id FROM get_or_create_conversations('[{"uid": "josé", "channel_id": "café", "channel_type": 1}]'::jsonb);
SELECT conversation_message_arrived('café', 1, ARRAY['josé', 'müller', 'ñandú'], 1, 'josé');
SELECT uid, readed_to_msg_seq, unread_count FROM conversation_mark_read('müller', 'café', 1, 1);
SELECT uid, last_msg_seq FROM find_conversation('ñandú', 'café', 1);
SELECT conversation_lock_key('josé', 'café', 1) = conversation_lock_key('josé', 'café', 1) AS stable_lock_key;
-- The limit counts this database's bytes: 255 LATIN1 characters fit, as in the CHECK constraint.
SELECT octet_length(uid) FROM get_or_create_conversation(repeat('é', 255), 'café', 1);
SELECT error_of($$SELECT get_or_create_conversation(repeat('é', 256), 'café', 1)$$);
SELECT error_of($$INSERT INTO conversation (uid, channel_id, channel_type) VALUES (repeat('é', 256), 'café', 1)$$);
-- A character LATIN1 has no equivalent for, in JSON: PostgreSQL's own conversion error.
SELECT error_of($$SELECT get_or_create_conversations('[{"uid": "\u20ac", "channel_id": "café", "channel_type": 1}]')$$);
SELECT count(*) AS rows, count(DISTINCT (uid, channel_id, channel_type)) AS keys FROM conversation;
SELECT uid, channel_id FROM conversation ORDER BY uid COLLATE "C", channel_id COLLATE "C";

-- SQL_ASCII: no encoding at all; any bytes are a key, UTF-8 or not.
\c postgres
\set db pgconv_sql_ascii
\set db_options 'ENCODING ''SQL_ASCII'' LC_COLLATE ''C'' LC_CTYPE ''C'' TEMPLATE template0'
\ir sql/fresh_database.sql
SET client_encoding = 'SQL_ASCII';
SELECT current_setting('server_encoding') AS server_encoding;
-- 0xff 0xfe is not UTF-8.
SELECT encode(convert_to(uid, 'SQL_ASCII'), 'hex') AS uid_bytes FROM get_or_create_conversation(E'u\xff\xfe', 'g', 1);
SELECT encode(convert_to(uid, 'SQL_ASCII'), 'hex') AS uid_bytes FROM get_or_create_conversation(E'u\xff\xfe', 'g', 1);
SELECT input_position, encode(convert_to(uid, 'SQL_ASCII'), 'hex') AS uid_bytes
FROM get_or_create_conversations('g', 1, ARRAY[E'u\xff\xfe', E'v\x80']);
SELECT conversation_message_arrived('g', 1, ARRAY[E'u\xff\xfe', E'v\x80'], 1, E'v\x80');
SELECT unread_count FROM conversation_mark_read(E'u\xff\xfe', 'g', 1, 1);
SELECT find_conversation(E'v\x80', 'g', 1) IS NOT NULL AS found;
-- JSON is UTF-8 (RFC 8259): JSON text holding other bytes is refused with PostgreSQL's own error.
SELECT error_of($$SELECT get_or_create_conversations(E'[{"uid": "u\xff", "channel_id": "g", "channel_type": 1}]')$$);
SELECT count(*) AS rows, count(DISTINCT (uid, channel_id, channel_type)) AS keys FROM conversation;
\c postgres
DROP DATABASE pgconv_latin1;
DROP DATABASE pgconv_sql_ascii;

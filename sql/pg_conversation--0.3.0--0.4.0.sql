-- pg_conversation 0.3.0 -> 0.4.0: the table as users change it, and hostile input.
-- (Work in progress.)
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.4.0'" to load this file. \quit

CREATE FUNCTION @extschema@.find_conversation(uid text, channel_id text, channel_type integer)
RETURNS @extschema@.conversation_row
LANGUAGE c STABLE PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'find_conversation';

CREATE FUNCTION @extschema@.get_or_create_conversations(keys text)
RETURNS TABLE (input_position integer, id bigint, uid text, channel_id text, channel_type smallint,
               type smallint, unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint,
               deleted_at_msg_seq bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversations_text';

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

CREATE OR REPLACE FUNCTION @extschema@.conversation_lock_key(uid text, channel_id text, channel_type integer)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_lock_key';

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

CREATE INDEX conversation_id_idx ON @extschema@.conversation (id);

-- Row level security on the conversation table: every function that reads or writes it refuses
-- (0A000) for a role the policies apply to, the same way, rather than bypassing the policies
-- (a probe of the index cannot apply them) or applying them to half of what it does. Roles that
-- bypass row level security (the owner, BYPASSRLS) are served as ever.
\set db pgconv_row_security
\set db_options ''
\ir sql/fresh_database.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS pgconv_tenant;
RESET client_min_messages;
SELECT uid FROM get_or_create_conversation('u1', 'g1', 1);
CREATE ROLE pgconv_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON conversation TO pgconv_tenant;
GRANT USAGE ON SEQUENCE conversation_id_seq TO pgconv_tenant;
CREATE TABLE legacy (uid text, channel_id text, channel_type integer);
GRANT SELECT ON legacy TO pgconv_tenant;
ALTER TABLE conversation ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON conversation USING (uid = current_user);

CREATE TABLE calls (statement text);
GRANT SELECT ON calls TO pgconv_tenant;
INSERT INTO calls VALUES
    ($$SELECT get_or_create_conversation('u1', 'g1', 1)$$),
    ($$SELECT get_or_create_conversation('pgconv_tenant', 'g1', 1)$$),
    ($$SELECT find_conversation('u1', 'g1', 1)$$),
    ($$SELECT get_or_create_conversations('g1', 1, ARRAY['u1'])$$),
    ($$SELECT get_or_create_conversations('[{"uid": "u1", "channel_id": "g1", "channel_type": 1}]')$$),
    ($$SELECT get_or_create_conversations('[{"uid": "u1", "channel_id": "g1", "channel_type": 1}]'::jsonb)$$),
    ($$SELECT conversation_message_arrived('g1', 1, ARRAY['u1'], 1, 'u1')$$),
    ($$SELECT conversation_mark_read('u1', 'g1', 1, 1)$$),
    ($$SELECT conversation_list('u1')$$),
    ($$SELECT conversation_unread('u1')$$),
    ($$SELECT conversation_hide('u1', 'g1', 1)$$),
    ($$SELECT conversation_clear('u1', 'g1', 1)$$),
    ($$SELECT conversation_duplicates()$$),
    ($$SELECT conversation_growth()$$),
    ($$SELECT conversation_import('legacy')$$),
    ($$SELECT conversation_import('legacy', false)$$);
-- A role the policy applies to.
SET ROLE pgconv_tenant;
SELECT statement, error_of(statement) FROM calls;
\set VERBOSITY terse
CALL conversation_cleanup_cmd('30 days');
\set VERBOSITY default
RESET ROLE;
-- The owner bypasses the policies (as FORCE ROW LEVEL SECURITY would not let it).
SELECT statement, error_of(statement) FROM calls;
CALL conversation_cleanup_cmd('30 days');
SELECT count(*) AS conversations FROM conversation;
\c postgres
DROP DATABASE pgconv_row_security;
DROP ROLE pgconv_tenant;

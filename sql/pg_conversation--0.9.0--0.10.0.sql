-- pg_conversation 0.9.0 -> 0.10.0: large channels (issue 19; README "Large channels";
-- docs/large-groups.md). Every channel stays per member until it is made large.
-- 1. conversation_channel gains members and member_digest: the member set a message last named
--    (its size, and the sum of a 64-bit hash of each uid): a message naming the same set reads
--    none of the members' rows. NULL: no rewrite (the table is empty until a channel is large).
-- 2. conversation_channel_make_large(channel_id, channel_type, member_uids) and
--    conversation_channel_make_per_member(channel_id, channel_type): a channel changes mode.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.10.0'" to load this file. \quit

ALTER TABLE @extschema@.conversation_channel ADD COLUMN members integer, ADD COLUMN member_digest bigint;
COMMENT ON COLUMN @extschema@.conversation_channel.members IS
    'How many members the last message that changed the member set named; NULL: not known yet';
COMMENT ON COLUMN @extschema@.conversation_channel.member_digest IS
    'The sum of a 64-bit hash of each of those members'' uids: the member set, in any order';

CREATE FUNCTION @extschema@.conversation_channel_make_large(channel_id text, channel_type integer, member_uids text[])
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_channel_make_large';
COMMENT ON FUNCTION @extschema@.conversation_channel_make_large(text, integer, text[]) IS
    'Makes a channel large: a message then writes its row in conversation_channel, not every member''s; returns how many conversations became its memberships';

CREATE FUNCTION @extschema@.conversation_channel_make_per_member(channel_id text, channel_type integer)
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'conversation_channel_make_per_member';
COMMENT ON FUNCTION @extschema@.conversation_channel_make_per_member(text, integer) IS
    'Makes a large channel per member again: each membership keeps its values as they stand; returns how many conversations changed';

-- pg_conversation: the objects a DBA sees. Installed by CREATE EXTENSION pg_conversation.
-- @extschema@ is the schema the extension was created in (the first on search_path by default).

-- One row per (uid, channel_id, channel_type): a user's view of a chat or CMD channel,
-- modelled on WuKongIM's conversation record.
CREATE SEQUENCE @extschema@.conversation_id_seq AS bigint;

CREATE TABLE @extschema@.conversation (
    id                 bigint      NOT NULL DEFAULT nextval('@extschema@.conversation_id_seq'::regclass),
    uid                text        NOT NULL,
    channel_id         text        NOT NULL,
    channel_type       smallint    NOT NULL,
    -- 2 for a CMD channel (channel_id ends in ____cmd), 1 for a chat; derived, so never wrong.
    type               smallint    NOT NULL GENERATED ALWAYS AS
                           (CASE WHEN pg_catalog.right(channel_id, 7) = '____cmd' THEN 2 ELSE 1 END) STORED,
    unread_count       integer     NOT NULL DEFAULT 0,
    readed_to_msg_seq  bigint      NOT NULL DEFAULT 0,
    last_msg_seq       bigint      NOT NULL DEFAULT 0,
    deleted_at_msg_seq bigint      NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The key. Every unique constraint starts with uid, so the table can later be
    -- hash-partitioned or distributed by uid without a schema change.
    CONSTRAINT conversation_pkey PRIMARY KEY (uid, channel_id, channel_type),
    -- The same limits get_or_create_conversation enforces, for writers that bypass it.
    CONSTRAINT conversation_uid_check
        CHECK (uid <> '' AND pg_catalog.octet_length(uid) <= 255),
    CONSTRAINT conversation_channel_id_check
        CHECK (channel_id <> '' AND pg_catalog.octet_length(channel_id) <= 255),
    CONSTRAINT conversation_channel_type_check
        CHECK (channel_type BETWEEN 0 AND 255),
    CONSTRAINT conversation_unread_count_check
        CHECK (unread_count >= 0)
);

ALTER SEQUENCE @extschema@.conversation_id_seq OWNED BY @extschema@.conversation.id;

-- A user's conversation list, most recent first.
CREATE INDEX conversation_uid_updated_at_idx
    ON @extschema@.conversation (uid, updated_at DESC);
-- Every conversation of one channel (fan-out, cleanup).
CREATE INDEX conversation_channel_idx
    ON @extschema@.conversation (channel_id, channel_type);

-- Rows and the id sequence belong to the user, not to the extension: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conversation', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conversation_id_seq', '');

COMMENT ON TABLE @extschema@.conversation IS
    'One conversation per (uid, channel_id, channel_type); create rows with get_or_create_conversation()';

-- Returns the one conversation for the key, creating it if needed. See README.md for the lock
-- and isolation semantics. Not STRICT: NULL arguments raise 22004.
-- No SET search_path clause: the hit path resolves no names (it works on OIDs) and the insert
-- pins search_path to pg_catalog itself (src/insert.rs), so the clause would only cost every hit.
CREATE FUNCTION @extschema@.get_or_create_conversation(
    uid text, channel_id text, channel_type integer)
RETURNS @extschema@.conversation
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS 'MODULE_PATHNAME', 'get_or_create_conversation';

COMMENT ON FUNCTION @extschema@.get_or_create_conversation(text, text, integer) IS
    'The one conversation for (uid, channel_id, channel_type), created atomically if missing';

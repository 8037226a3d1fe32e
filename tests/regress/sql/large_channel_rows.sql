-- The rows of large channels as the list, the badge and sync read them: at the TID this backend
-- found each at last (relation/channel_rows.rs), checked, never trusted. After the table is
-- rewritten, after a row is deleted and made again, when another channel's row takes the line
-- a remembered row left, and when VACUUM cuts the table's end past a remembered row, every read
-- gives the channel's own values, and no error. One session: what it remembers carries over.
-- (VACUUM here also updates the table's statistics, which makes the session forget; isolation
-- spec channel_rows plays a reader that keeps a line another row took.)
\set db pgconv_large_channel_rows
\set db_options ''
\ir sql/fresh_database.sql
-- What `member` reads of channel `ch`, every way: its list's row, its badge, the row itself.
CREATE FUNCTION reads(member text, ch text) RETURNS text LANGUAGE sql AS $$
    SELECT format('list %s/%s, badge %s, find %s/%s',
        (SELECT l.last_msg_seq FROM conversation_list(member) AS l WHERE l.channel_id = ch),
        (SELECT l.unread_count FROM conversation_list(member) AS l WHERE l.channel_id = ch),
        (SELECT u.unread_count FROM conversation_unread(member) AS u),
        (SELECT f.last_msg_seq FROM find_conversation(member, ch, 1) AS f),
        (SELECT f.unread_count FROM find_conversation(member, ch, 1) AS f))
$$;
SELECT conversation_channel_make_large('x', 1, ARRAY['m1', 'm2']);
SELECT conversation_message_arrived('x', 1, ARRAY['m1', 'm2'], 1, 'm1');
SELECT reads('m2', 'x') AS first_read;
SELECT reads('m2', 'x') AS read_again;
-- Rewritten: every row at another TID.
VACUUM FULL conversation_channel;
SELECT conversation_message_arrived('x', 1, ARRAY['m1', 'm2'], 2, 'm1');
SELECT reads('m2', 'x') AS after_vacuum_full;
-- Deleted (per member) and made again (large): a new row.
SELECT conversation_channel_make_per_member('x', 1);
SELECT reads('m2', 'x') AS per_member;
SELECT conversation_channel_make_large('x', 1, ARRAY['m1', 'm2']);
SELECT conversation_message_arrived('x', 1, ARRAY['m1', 'm2'], 3, 'm1');
SELECT reads('m2', 'x') AS made_again;
-- Another channel's row takes the line x's row left: x's row alone at the table's first line
-- (rewritten), read there, deleted; the page vacuumed; y made large lands on that line.
VACUUM FULL conversation_channel;
SELECT reads('m2', 'x') AS at_the_first_line;
SELECT ctid AS x_line FROM conversation_channel WHERE channel_id = 'x' \gset
SELECT conversation_channel_make_per_member('x', 1);
VACUUM conversation_channel;
SELECT conversation_channel_make_large('y', 1, ARRAY['n1']);
-- (Its messages update it on its page: the line stays the root of its versions.)
SELECT ctid = :'x_line' AS y_took_x_line FROM conversation_channel WHERE channel_id = 'y';
SELECT conversation_message_arrived('y', 1, ARRAY['n1'], 50, NULL);
SELECT conversation_channel_make_large('x', 1, ARRAY['m1', 'm2']);
SELECT conversation_message_arrived('x', 1, ARRAY['m1', 'm2'], 4, 'm1');
SELECT reads('m2', 'x') AS x_not_y;
SELECT reads('n1', 'y') AS y_itself;
-- The table's end cut by VACUUM past a remembered row: z's row far down the table, read there;
-- the rows before it and z's deleted, the table cut; z made large again near its start.
INSERT INTO conversation_channel (channel_id, channel_type) SELECT 'pad' || i, 1 FROM generate_series(1, 3000) AS i;
SELECT conversation_channel_make_large('z', 1, ARRAY['k1']);
SELECT conversation_message_arrived('z', 1, ARRAY['k1'], 7, NULL);
SELECT (ctid::text::point)[0] AS z_block FROM conversation_channel WHERE channel_id = 'z' \gset
SELECT :z_block > 2 AS z_far_down;
SELECT reads('k1', 'z') AS z_far_down_read;
DELETE FROM conversation_channel WHERE channel_id LIKE 'pad%';
SELECT conversation_channel_make_per_member('z', 1);
VACUUM conversation_channel;
SELECT pg_relation_size('conversation_channel') / current_setting('block_size')::int <= :z_block AS cut_before_z;
SELECT conversation_channel_make_large('z', 1, ARRAY['k1']);
SELECT conversation_message_arrived('z', 1, ARRAY['k1'], 8, NULL);
SELECT reads('k1', 'z') AS z_after_the_cut;

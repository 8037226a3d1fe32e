-- The counters, in a cluster that preloads pg_conversation as production does. pg_regress runs
-- this file alone on its cluster, so the differences below are this file's calls and no one
-- else's (the counters are cluster-wide: a test that shares its server cannot count exactly).
SELECT preloaded FROM conversation_stats;
CREATE TEMP TABLE counted_before AS SELECT * FROM conversation_stats;
CREATE FUNCTION counted_since_start() RETURNS TABLE (
    calls bigint, hits bigint, creates bigint, lock_waits bigint, races_resolved bigint,
    errors bigint, batch_calls bigint, batch_keys bigint, batch_creates bigint, messages bigint,
    reads bigint)
LANGUAGE sql AS $$
    SELECT s.calls - b.calls, s.hits - b.hits, s.creates - b.creates,
           s.lock_waits - b.lock_waits, s.races_resolved - b.races_resolved,
           s.errors - b.errors, s.batch_calls - b.batch_calls, s.batch_keys - b.batch_keys,
           s.batch_creates - b.batch_creates, s.messages - b.messages, s.reads - b.reads
    FROM conversation_stats s, counted_before b
$$;

-- One creation, then two hits: three calls.
SELECT uid, channel_id FROM get_or_create_conversation('stats_u1', 'stats_g1', 2);
SELECT uid, channel_id FROM get_or_create_conversation('stats_u1', 'stats_g1', 2);
SELECT uid, channel_id FROM get_or_create_conversation('stats_u1', 'stats_g1', 2);
-- A refused key is an error, not a call.
SELECT get_or_create_conversation('', 'stats_g1', 2);
-- One batch of three members, two of them new.
SELECT count(*) FROM get_or_create_conversations('stats_g1', 2, ARRAY['stats_u1', 'stats_u2', 'stats_u3']);
-- A message counts as a message and as a batch of its members (here two, both existing).
SELECT conversation_message_arrived('stats_g1', 2, ARRAY['stats_u1', 'stats_u2'], 1, 'stats_u1');
SELECT readed_to_msg_seq, unread_count FROM conversation_mark_read('stats_u2', 'stats_g1', 2, 1);
SELECT * FROM counted_since_start();

-- (Who may reset them: pg_test only_superusers_may_reset_the_counters.)
SELECT conversation_stats_reset();
SELECT calls, hits, creates, errors, batch_keys, stats_reset > now() - interval '1 minute' AS reset_just_now
FROM conversation_stats;

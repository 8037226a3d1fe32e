-- This cluster does not preload pg_conversation: the counters view says so instead of showing
-- zeros that would look like an idle server. (stats.sql runs where the library is preloaded.)
SELECT * FROM conversation_stats;
SELECT get_or_create_conversation('u1', 'g1', 1) IS NOT NULL AS works_without_preloading;
SELECT conversation_stats_reset();

#!/usr/bin/env bash
# The documented way to schedule the CMD cleanup works: pg_cron (15: Debian's postgresql-15-cron,
# 1.4; 18: pg_cron 1.6.7 built by scripts/setup_citus.sh) runs CALL conversation_cleanup_cmd(...)
# on its own, and stale CMD conversations go while chats and fresh CMD conversations stay. Starts
# its own cluster (pg_cron must be preloaded), so it takes up to a minute: the job is scheduled by
# the minute, as README.md shows it.
#   tests/pg_cron.sh DIR PORT
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$1 PORT=$2
fail() { echo "FAILED: $*"; exit 1; }
bash scripts/cluster.sh start "$DIR" "$PORT" "shared_preload_libraries=pg_cron" "cron.database_name=pgconv_cron" \
    "cron.use_background_workers=on" "max_worker_processes=16"
trap 'bash scripts/cluster.sh stop "$DIR"' EXIT
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres "$@"; }

sql -c "DROP DATABASE IF EXISTS pgconv_cron" -c "CREATE DATABASE pgconv_cron" 2>/dev/null
sql -d pgconv_cron >/dev/null <<'SQL'
CREATE EXTENSION pg_cron;
CREATE EXTENSION pg_conversation;
SELECT count(*) FROM generate_series(1, 50) AS i, get_or_create_conversation('u' || i, 'c' || i || '____cmd', 1);
SELECT count(*) FROM generate_series(1, 10) AS i, get_or_create_conversation('u' || i, 'g' || i, 2);
-- 40 stale CMD conversations, 10 fresh ones, and 10 chats idle just as long (chats are kept).
UPDATE conversation SET updated_at = now() - interval '40 days' WHERE type = 2 AND uid NOT IN ('u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9', 'u10');
UPDATE conversation SET updated_at = now() - interval '40 days' WHERE type = 1;
-- As README.md shows it, with a small batch so the run takes several.
SELECT cron.schedule('pg_conversation-cleanup', '* * * * *', $$CALL conversation_cleanup_cmd('30 days', 15)$$);
SQL

for _ in $(seq 1 100); do
    state=$(sql -d pgconv_cron -c "SELECT status FROM cron.job_run_details WHERE status IN ('succeeded', 'failed') LIMIT 1")
    [ -n "$state" ] && break
    sleep 1
done
details=$(sql -d pgconv_cron -c "SELECT status || ': ' || return_message FROM cron.job_run_details ORDER BY start_time")
[ "${state:-}" = succeeded ] || fail "pg_cron did not run the cleanup successfully within 100 s: ${details:-no run}"
counts=$(sql -d pgconv_cron -c "SELECT count(*) FILTER (WHERE type = 2) || ' ' || count(*) FILTER (WHERE type = 1) FROM conversation")
[ "$counts" = "10 10" ] || fail "after the scheduled cleanup: $counts (CMD, chat) rows, expected 10 10"
echo "ok: pg_cron ran the cleanup ($details); 40 stale CMD conversations went, 10 fresh ones and 10 chats stayed"

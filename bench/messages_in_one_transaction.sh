#!/usr/bin/env bash
# Messages to one group inside one transaction against the same messages committed one by one:
# the first grows with the square of the count (README, "Commit each message"), the second
# linearly. Prints the seconds each took, side by side, for 100, 200 and 400 messages to a group
# of 100 members. A benchmark, not a test: run it on a quiet machine.
#   bash bench/messages_in_one_transaction.sh      uses the cluster named by PGHOST, PGPORT, PGUSER
set -euo pipefail
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d pgconv_quadratic "$@"; }
members="ARRAY(SELECT 'm' || i FROM generate_series(1, 100) AS i)"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS pgconv_quadratic" -c "CREATE DATABASE pgconv_quadratic"
sql -c "CREATE EXTENSION pg_conversation"
seconds() { local start=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $start" | bc; }
echo "| messages | one transaction (s) | one transaction each (s) | ratio |"
echo "|---:|---:|---:|---:|"
for n in 100 200 400; do
    sql -c "SELECT count(*) FROM get_or_create_conversations('one-$n', 2, $members)" -c "SELECT count(*) FROM get_or_create_conversations('each-$n', 2, $members)" >/dev/null
    one=$(seconds sql -c "BEGIN" -c "SELECT sum(conversation_message_arrived('one-$n', 2, $members, s, 'm1')) FROM generate_series(1, $n) AS s" -c "COMMIT")
    each=$(seconds sql -c "SELECT count(*) FROM generate_series(1, $n) AS s" \
        -f <(for s in $(seq 1 "$n"); do echo "SELECT conversation_message_arrived('each-$n', 2, $members, $s, 'm1');"; done))
    printf '| %s | %.2f | %.2f | %.1f |\n' "$n" "$one" "$each" "$(echo "scale=3; $one / $each" | bc)"
done
psql -X -q -d postgres -c "DROP DATABASE pgconv_quadratic"

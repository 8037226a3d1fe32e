#!/usr/bin/env bash
# Two builds of the library side by side, each workload mixed in one pgbench run (each
# transaction picks a script at random), so that the machine's noise falls on every approach
# alike: get_or_create_conversation's hit and miss (called in FROM, as bench.py's
# "get_or_create_conversation") from each build, with the plain SELECT and the plain INSERT of the
# same rows; conversation_list's first page of 20, with one indexed read of 20 rows (bench/lists.py's
# reference), a sync with nothing changed, and the list, the badge and that sync of users of 20
# large channels; conversation_message_arrived, a new message to a group of 100 (with the single UPDATE
# of its members' rows in a copy) and a redelivered one to a group of 1,000 (with reading their
# rows). Each build's mean latency comes from pgbench's transaction log; reported as speed x the
# plain statement, per run, with the median and spread over the runs.
#   bash bench/builds.sh OLD.so NEW.so [SECONDS] [RUNS]     (20 s and 5 runs by default)
# OLD.so and NEW.so are library files (copy target/release/pg_conversation.so, or the installed
# one, aside after each build). The extension's objects come from the installed build; each
# build's get_or_create_conversation, conversation_list and conversation_message_arrived are
# declared from its own file (old_build, old_list, old_message and new_..., in the extension's
# schema, where the functions look for the table), so both are loaded in the same backends. On a
# private cluster (/tmp/pg_conversation-builds, port 55450; 18: -pg18, 55550), on PostgreSQL
# PGCONV_PG (15 by default, or 18).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
source bench/two_builds.sh
[ $# -ge 2 ] || { sed -n '2,19p' "$0"; exit 2; }
DIR=${PGCONV_BENCH_DIR:-/tmp/pg_conversation-builds$PG_SUFFIX}
PORT=${PGCONV_BENCH_PORT:-$((55450 + PG_PORT_OFFSET))}
SECONDS_PER_RUN=${3:-20} RUNS=${4:-5}

start_two_builds "$1" "$2"
# The plain statements' table is the extension's exactly (indexes, stamp trigger), filled the
# same way, in the same order.
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_conversation;
CREATE SCHEMA bench;
CREATE FUNCTION old_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/old.so', 'get_or_create_conversation';
CREATE FUNCTION new_build(text, text, integer) RETURNS conversation_row VOLATILE LANGUAGE c
    AS '$DIR/libs/new.so', 'get_or_create_conversation';
CREATE FUNCTION old_list(text, integer, text, integer) RETURNS SETOF conversation_list_row STABLE ROWS 50 LANGUAGE c
    AS '$DIR/libs/old.so', 'conversation_list';
CREATE FUNCTION new_list(text, integer, text, integer) RETURNS SETOF conversation_list_row STABLE ROWS 50 LANGUAGE c
    AS '$DIR/libs/new.so', 'conversation_list';
CREATE FUNCTION old_unread(text, integer, OUT unread_count bigint, OUT conversations bigint) RETURNS record STABLE LANGUAGE c
    AS '$DIR/libs/old.so', 'conversation_unread';
CREATE FUNCTION new_unread(text, integer, OUT unread_count bigint, OUT conversations bigint) RETURNS record STABLE LANGUAGE c
    AS '$DIR/libs/new.so', 'conversation_unread';
CREATE FUNCTION old_message(text, integer, text[], bigint, text) RETURNS integer VOLATILE LANGUAGE c
    AS '$DIR/libs/old.so', 'conversation_message_arrived';
CREATE FUNCTION new_message(text, integer, text[], bigint, text) RETURNS integer VOLATILE LANGUAGE c
    AS '$DIR/libs/new.so', 'conversation_message_arrived';
CREATE TABLE bench.plain (LIKE conversation INCLUDING ALL);
CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON bench.plain
    FOR EACH ROW EXECUTE FUNCTION conversation_stamp();
CREATE SEQUENCE bench.plain_id_seq OWNED BY bench.plain.id;
ALTER TABLE bench.plain ALTER id SET DEFAULT nextval('bench.plain_id_seq');
INSERT INTO bench.plain (uid, channel_id, channel_type) SELECT 'u' || u, 'g' || c || suffix, kind
    FROM generate_series(1, 1000) u, generate_series(1, 50) c, (VALUES ('', 1), ('____cmd', 2)) AS k(suffix, kind);
INSERT INTO conversation (uid, channel_id, channel_type) SELECT uid, channel_id, channel_type FROM bench.plain ORDER BY id;
-- The list's reference: the same rows, read the usual way (0.3.0's index).
CREATE TABLE bench.list_plain AS SELECT * FROM conversation;
CREATE INDEX ON bench.list_plain (uid, updated_at DESC);
-- Groups: 200 of 100 members ('grp'), 20 of 1,000 ('big'), their conversations made by a first
-- message; the plain statements' copy of them in a table of the extension's kind.
CREATE SEQUENCE bench.seq START 2;
CREATE TABLE bench.groups (channel_id text PRIMARY KEY, members text[]);
INSERT INTO bench.groups SELECT 'grp' || g, ARRAY(SELECT 'u' || ((g * 37 + m * 7) % 1000 + 1) FROM generate_series(1, 100) m)
    FROM generate_series(1, 200) g;
INSERT INTO bench.groups SELECT 'big' || g, ARRAY(SELECT 'u' || m FROM generate_series(1, 1000) m) FROM generate_series(1, 20) g;
SELECT count(conversation_message_arrived(channel_id, 2, members, 1, NULL)) FROM bench.groups;
CREATE TABLE bench.message_plain (LIKE conversation INCLUDING ALL);
CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON bench.message_plain
    FOR EACH ROW EXECUTE FUNCTION conversation_stamp();
INSERT INTO bench.message_plain (uid, channel_id, channel_type, last_msg_seq, unread_count)
    SELECT uid, channel_id, channel_type, last_msg_seq, unread_count FROM conversation WHERE channel_id LIKE 'grp%' OR channel_id LIKE 'big%';
-- Users of large channels ('w'): the 'u' users' conversations, and each a member of 20 of 200
-- large channels of 100 members ('lg'), each channel at message 5.
INSERT INTO conversation (uid, channel_id, channel_type) SELECT 'w' || substr(uid, 2), channel_id, channel_type FROM bench.plain ORDER BY id;
CREATE TABLE bench.large_groups AS SELECT 'lg' || g AS channel_id,
    ARRAY(SELECT 'w' || u FROM generate_series(1, 1000) u WHERE u % 10 = g % 10) AS members FROM generate_series(1, 200) g;
SELECT count(conversation_channel_make_large(channel_id, 1, members)) FROM bench.large_groups;
SELECT count(conversation_message_arrived(channel_id, 1, members, 5, NULL)) FROM bench.large_groups;
VACUUM ANALYZE;
SQL
# Hits: one of the 100,000 rows. Misses: a fresh key (from 4 billion) each time.
key='\set u random(1, 1000)
\set c random(1, 50)
\set t random(1, 2)'
fresh='\set u random(1, 2000000000)
\set c random(1, 2000000000)'
channel="CASE WHEN :t = 1 THEN 'g' || :c ELSE 'g' || :c || '____cmd' END"
printf '%s\nSELECT id FROM bench.plain WHERE uid = %s AND channel_id = %s AND channel_type = :t;\n' "$key" "'u' || :u" "$channel" >"$DIR/scripts/hit_plain.sql"
for build in old new; do
    printf '%s\nSELECT id FROM %s_build(%s, %s, :t);\n' "$key" "$build" "'u' || :u" "$channel" >"$DIR/scripts/hit_$build.sql"
    printf '%s\nSELECT id FROM %s_build(%s, %s, 1);\n' "$fresh" "$build" "'m' || :u" "'c' || :c" >"$DIR/scripts/miss_$build.sql"
done
printf '%s\nSELECT * FROM bench.list_plain WHERE uid = %s ORDER BY updated_at DESC LIMIT 20;\n' "$key" "'u' || :u" >"$DIR/scripts/list_plain.sql"
for build in old new; do
    printf '%s\nSELECT * FROM %s_list(%s, 1, NULL, 20);\n' "$key" "$build" "'u' || :u" >"$DIR/scripts/list_$build.sql"
done
# Users of 20 large channels: their list and badge, against the same indexed read of 20 rows of
# a user of the same conversations without them, and the usual sum over the rows.
printf '%s\nSELECT * FROM bench.list_plain WHERE uid = %s ORDER BY updated_at DESC LIMIT 20;\n' "$key" "'u' || :u" >"$DIR/scripts/large_list_plain.sql"
printf '%s\nSELECT sum(unread_count) FROM bench.list_plain WHERE uid = %s AND channel_type = 1;\n' "$key" "'u' || :u" >"$DIR/scripts/large_badge_plain.sql"
for build in old new; do
    printf '%s\nSELECT * FROM %s_list(%s, 1, NULL, 20);\n' "$key" "$build" "'w' || :u" >"$DIR/scripts/large_list_$build.sql"
    printf '%s\nSELECT * FROM %s_unread(%s, 1);\n' "$key" "$build" "'w' || :u" >"$DIR/scripts/large_badge_$build.sql"
done
# A sync with nothing changed of a user without large channels (u1) and of one with them (w1):
# from the position after a whole first pass (as bench/lists.py takes it), against an indexed
# read of 20 rows of u1.
last_position() {
    psql -X -qAt -c "SELECT position FROM conversation_list('$1', 1, $2, 1000) WITH ORDINALITY ORDER BY ordinality DESC LIMIT 1"
}
for user in u1 w1; do
    position=$(last_position "$user" NULL)
    while next=$(last_position "$user" "'$position'") && [ -n "$next" ]; do position=$next; done
    workload=$([ "$user" = u1 ] && echo sync || echo large_sync)
    printf 'SELECT * FROM bench.list_plain WHERE uid = %s ORDER BY updated_at DESC LIMIT 20;\n' "'u1'" >"$DIR/scripts/${workload}_plain.sql"
    for build in old new; do
        printf 'SELECT * FROM %s_list(%s, 1, %s, 20);\n' "$build" "'$user'" "'$position'" >"$DIR/scripts/${workload}_$build.sql"
    done
done
# Messages: a new one to a group of 100, against the usual single UPDATE of its members; a
# redelivery (seq 1, which every member has) to a group of 1,000, against reading their rows.
# Each client sends to groups of its own (two single UPDATEs of one group can deadlock).
group='\set g random(0, 99) * 2 + :client_id + 1'
big='\set g random(1, 20)'
printf '%s\nWITH s AS (SELECT nextval(%s) AS v) UPDATE bench.message_plain AS c SET last_msg_seq = s.v, updated_at = now(), unread_count = c.unread_count + 1 FROM s WHERE c.channel_id = %s AND c.channel_type = 2 AND c.last_msg_seq < s.v;\n' \
    "$group" "'bench.seq'" "'grp' || :g" >"$DIR/scripts/message_plain.sql"
printf '%s\nSELECT count(*) FROM bench.message_plain AS c JOIN bench.groups AS g USING (channel_id) WHERE g.channel_id = %s AND c.channel_type = 2 AND c.uid = ANY (g.members);\n' \
    "$big" "'big' || :g" >"$DIR/scripts/redelivery_plain.sql"
for build in old new; do
    printf '%s\nSELECT %s_message(channel_id, 2, members, nextval(%s), NULL) FROM bench.groups WHERE channel_id = %s;\n' \
        "$group" "$build" "'bench.seq'" "'grp' || :g" >"$DIR/scripts/message_$build.sql"
    printf '%s\nSELECT %s_message(channel_id, 2, members, 1, NULL) FROM bench.groups WHERE channel_id = %s;\n' \
        "$big" "$build" "'big' || :g" >"$DIR/scripts/redelivery_$build.sql"
done
printf '%s\nINSERT INTO bench.plain (uid, channel_id, channel_type) VALUES (%s, %s, 1) RETURNING id;\n' "$fresh" "'m' || :u" "'c' || :c" >"$DIR/scripts/miss_plain.sql"

# One workload: the plain statement at weight 2 (as many calls reach its table as reach the
# extension's), each build at 1. Prints "run script mean_latency_us" per run.
mixed() {
    local workload=$1
    for run in $(seq "$RUNS"); do
        rm -f "$DIR"/log/*
        (cd "$DIR/log" && pgbench -n -M prepared -c 2 -j 2 -T "$SECONDS_PER_RUN" -l --sampling-rate 0.2 \
            -f "$DIR/scripts/${workload}_plain.sql@2" -f "$DIR/scripts/${workload}_old.sql" \
            -f "$DIR/scripts/${workload}_new.sql" >"$DIR/pgbench.out" 2>&1) ||
            { cat "$DIR/pgbench.out" >&2; exit 1; }
        cat "$DIR"/log/pgbench_log.* | awk -v run="$run" '{n[$4]++; s[$4] += $3} END {for (k in n) print run, k, s[k] / n[k]}'
    done
}

report() {
    python3 -c '
import collections, statistics, sys
workload, reference = sys.argv[1:]
latency = collections.defaultdict(dict)
for line in sys.stdin:
    run, script, mean = line.split()
    latency[int(script)][run] = float(mean)
runs = sorted(latency[0])
print(f"\n### {workload}\n")
print(f"| build | mean latency (us), per run | x {reference} (median of runs) | spread |")
print("|---|---|---:|---:|")
for script, name in ((1, "old"), (2, "new")):
    speed = [latency[0][run] / latency[script][run] for run in runs]
    means = " ".join(f"{latency[script][run]:.1f}" for run in runs)
    print(f"| {name} | {means} | {statistics.median(speed):.3f} | {min(speed):.3f}-{max(speed):.3f} |")
' "$@"
}

echo "## Two builds side by side: $(psql -X -qAt -c 'SHOW server_version'), $RUNS runs of $SECONDS_PER_RUN s, 2 clients"
echo "old: $1"
echo "new: $2"
mixed hit | report "hit (FROM form)" "plain SELECT"
mixed miss | report "miss (FROM form)" "plain INSERT"
mixed list | report "conversation_list, first page of 20 (1 of 1,000 users of 50 chats)" "indexed read of 20 rows"
mixed large_list | report "conversation_list, first page of 20 (a user of 50 chats and 20 large channels)" "indexed read of 20 rows"
mixed large_badge | report "conversation_unread (a user of 50 chats and 20 large channels)" "sum over the user's rows"
mixed sync | report "conversation_list, a sync with nothing changed (1 of 1,000 users of 50 chats)" "indexed read of 20 rows"
mixed large_sync | report "conversation_list, a sync with nothing changed (a user of 50 chats and 20 large channels)" "indexed read of 20 rows"
mixed message | report "conversation_message_arrived, a new message to a group of 100" "UPDATE of its members"
mixed redelivery | report "conversation_message_arrived, a redelivered message to a group of 1,000" "SELECT of its members' rows"

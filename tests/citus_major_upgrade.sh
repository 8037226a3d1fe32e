#!/usr/bin/env bash
# A Citus cluster moved from PostgreSQL 15 / Citus 13.2 to PostgreSQL 18 / Citus 14.0, every node
# (coordinator and two workers) with pg_upgrade, as docs/upgrading.md ("Moving a Citus cluster
# from 15 / Citus 13.2 to 18 / Citus 14.0") describes:
#   1. on 15: the table distributed, conversations created through every node, a list position
#      taken; then citus_prepare_pg_upgrade() on every node, and every node stopped;
#   2. every node: a copy of its data directory without Debian 15.20's pg_attver options, initdb
#      of 18 (same encoding and locale, no data checksums as on 15), pg_upgrade --link from the copy;
#   3. on 18: ALTER EXTENSION citus UPDATE and citus_finish_pg_upgrade() on every node.
# Then every conversation and id is there, each node group keeps its id range (and its sequence
# goes on from where it was), the functions are still delegated, the list works, and the position
# taken on 15 is refused (72000, the client lists from the start), never answered wrongly.
#   tests/citus_major_upgrade.sh DIR PORT     (nodes on PORT..PORT+2; pg_upgrade uses PORT+10, +11)
# Needs Citus 13.2 and pg_conversation installed for 15, Citus 14.0 and pg_conversation for 18.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DIR=$(realpath -m "$1") PORT=$2
NODES=(coordinator worker1 worker2)
fail() { echo "FAILED: $*"; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }
node() { local port=$1; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U postgres -d pgconv_citus "$@"; }
coordinator() { node "$PORT" "$@"; }
each_node() { local i; for i in 0 1 2; do node $((PORT + i)) "$@"; done; }
stop_all() {
    local n
    for n in "${NODES[@]}"; do
        for bindir in "$(pg_bindir_of 15)" "$(pg_bindir_of 18)"; do
            as_postgres "$bindir/pg_ctl" -D "$DIR/$n/data" status >/dev/null 2>&1 &&
                as_postgres "$bindir/pg_ctl" -D "$DIR/$n/data" -m fast -w stop >/dev/null 2>&1 || true
        done
    done
}

pg_use 15
bash scripts/citus_cluster.sh stop "$DIR" 2>/dev/null || true
rm -rf "$DIR"
trap stop_all EXIT
PGCONV_CITUS_PRELOAD=pg_conversation PGCONV_CITUS_DB=pgconv_citus bash scripts/citus_cluster.sh start "$DIR" "$PORT"
coordinator -c "CREATE EXTENSION pg_conversation" >/dev/null
coordinator -c "SELECT count(*) FROM generate_series(1, 50) AS i, get_or_create_conversation('before' || i, 'g' || (i % 7), 1)" >/dev/null
coordinator -c "SELECT count(*) FROM conversation_distribute(8)" >/dev/null
# Through every node: delegated to the key's node, each drawing from its own id range.
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    node "$p" -c "SELECT count(*) FROM generate_series(1, 50) AS i, get_or_create_conversation('on$p-' || i, 'g' || (i % 5), 1)" >/dev/null
done
coordinator -c "SELECT conversation_message_arrived('lg1', 1, ARRAY['lister', 'other'], 1, 'other')" >/dev/null
position=$(coordinator -c "SELECT position FROM conversation_list('lister', 1)")
rows_query="SELECT uid || ' ' || channel_id || ' ' || channel_type || ' ' || id || ' ' || unread_count || ' ' || last_msg_seq FROM conversation ORDER BY uid, channel_id, channel_type"
coordinator -c "$rows_query" >"$DIR/rows-15"
sequences_query="SELECT groupid || ' ' || (SELECT coalesce(last_value, 0) || ' ' || min_value || ' ' || max_value FROM pg_sequences WHERE sequencename = 'conversation_id_seq') FROM pg_dist_local_group"
each_node -c "$sequences_query" >"$DIR/sequences-15"
delegated_query="SELECT count(*) FROM pg_catalog.pg_dist_object WHERE distribution_argument_index IS NOT NULL"
delegated=$(coordinator -c "$delegated_query")
[ "$(wc -l <"$DIR/rows-15")" = 202 ] || fail "$(wc -l <"$DIR/rows-15") rows on 15, expected 202"
[ "$(cut -d' ' -f1 "$DIR/sequences-15" | sort -u | wc -l)" = 3 ] || fail "node groups on 15: $(cat "$DIR/sequences-15")"
echo "ok: on 15 / $(coordinator -c "SELECT split_part(citus_version(), ' ', 2)"): 202 conversations, id ranges: $(tr '\n' ';' <"$DIR/sequences-15")"

# Every node records its Citus metadata for the upgrade, then stops.
each_node -c "SELECT citus_prepare_pg_upgrade()" >/dev/null
bash scripts/citus_cluster.sh stop "$DIR"

# Every node: an 18 cluster beside it, pg_upgrade --link from a copy of its 15 data directory;
# the 15 data kept as data-15 (the way back).
BIN15=$(pg_bindir_of 15) BIN18=$(pg_bindir_of 18)
started=$(date +%s)
for n in "${NODES[@]}"; do
    # Debian's 15.20 stores an attribute option pg_attver that 18 refuses (docs/upgrading.md,
    # "Upgrading PostgreSQL"): removed from a copy of the node, which is what pg_upgrade then
    # moves; the node's own data directory stays as 15 made it.
    as_postgres cp -a "$DIR/$n/data" "$DIR/$n/data-copy"
    as_postgres "$BIN15/pg_ctl" -D "$DIR/$n/data-copy" -l "$DIR/$n/copy.log" -o "-p $((PORT + 12))" -w start >/dev/null ||
        fail "the copy of $n does not start"
    for db in template1 postgres pgconv_citus; do
        PGOPTIONS="-c client_min_messages=warning" "$BIN15/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p $((PORT + 12)) -U postgres -d "$db" -c "
            UPDATE pg_attribute
            SET attoptions = nullif(ARRAY(SELECT o FROM unnest(attoptions) AS o WHERE o NOT LIKE 'pg_attver=%'), '{}')
            WHERE attrelid >= 16384 AND EXISTS (SELECT FROM unnest(attoptions) AS o WHERE o LIKE 'pg_attver=%')" >/dev/null
    done
    as_postgres "$BIN15/pg_ctl" -D "$DIR/$n/data-copy" -m fast -w stop >/dev/null
    as_postgres "$BIN18/initdb" -D "$DIR/$n/data-18" -U postgres --auth=trust -E UTF8 --no-locale --no-data-checksums >"$DIR/$n/initdb-18.log" ||
        fail "initdb of 18 for $n failed"
    echo "include_if_exists = 'citus_cluster.conf'" | as_postgres tee -a "$DIR/$n/data-18/postgresql.conf" >/dev/null
    as_postgres cp "$DIR/$n/data/citus_cluster.conf" "$DIR/$n/data-18/"
    (cd "$DIR/$n" && as_postgres "$BIN18/pg_upgrade" -b "$BIN15" -B "$BIN18" -d "$DIR/$n/data-copy" -D "$DIR/$n/data-18" \
        -U postgres -p $((PORT + 10)) -P $((PORT + 11)) -s "$DIR/$n" --link >"$DIR/$n/pg_upgrade.log" 2>&1) ||
        { tail -20 "$DIR/$n/pg_upgrade.log"; find "$DIR/$n/data-18/pg_upgrade_output.d" -name '*.log' -exec tail -20 {} \; 2>/dev/null; fail "pg_upgrade of $n failed"; }
    as_postgres mv "$DIR/$n/data" "$DIR/$n/data-15"
    as_postgres mv "$DIR/$n/data-18" "$DIR/$n/data"
done
pg_use 18
for n in "${NODES[@]}"; do
    as_postgres "$BIN18/pg_ctl" -D "$DIR/$n/data" -l "$DIR/$n/server-18.log" -w start >/dev/null || fail "$n does not start on 18"
done
# Citus's extension to 14.0 on every node, then its metadata restored.
each_node -c "ALTER EXTENSION citus UPDATE" >/dev/null
# Citus 14.0's citus_finish_pg_upgrade() reads the partition keys saved by its own
# citus_prepare_pg_upgrade() for a move to 18 (public.pg_dist_partkeys_pre_18_upgrade), which
# 13.2's does not make; from 15 that table would be empty (the keys are all in 13.2's
# pg_dist_partkeys_pre_16_upgrade, which the same call rebuilds for 18): made empty here.
each_node -c "CREATE TABLE IF NOT EXISTS public.pg_dist_partkeys_pre_18_upgrade (logicalrelid regclass, col_name text)" >/dev/null
each_node -c "SELECT citus_finish_pg_upgrade()" >/dev/null
echo "ok: every node moved to $(coordinator -c "SELECT split_part(version(), ' ', 2)") / $(coordinator -c "SELECT split_part(citus_version(), ' ', 2)") in $(( $(date +%s) - started )) s"

coordinator -c "$rows_query" >"$DIR/rows-18"
diff "$DIR/rows-15" "$DIR/rows-18" >/dev/null || fail "the conversations changed across the move: $(diff "$DIR/rows-15" "$DIR/rows-18" | head -5)"
each_node -c "$sequences_query" >"$DIR/sequences-18"
diff "$DIR/sequences-15" "$DIR/sequences-18" >/dev/null || fail "the id ranges changed: $(cat "$DIR/sequences-15") then $(cat "$DIR/sequences-18")"
echo "ok: every conversation and id is there; every node group keeps its id range and its sequence"

# The position taken on 15 names the old clusters: refused (72000), never answered from 18.
refused=$(coordinator -c "SELECT * FROM conversation_list('lister', 1, '$position')" 2>&1 || true)
grep -q "position was returned by another server" <<<"$refused" || fail "a position of 15 was not refused after the move: $refused"
echo "ok: a position taken before the move is refused (72000)"

# New conversations through every node: delegated, ids from each group's range, none reused.
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    node "$p" -c "SELECT count(*) FROM generate_series(1, 50) AS i, get_or_create_conversation('after$p-' || i, 'g' || (i % 5), 1)" >/dev/null
done
ids=$(coordinator -c "SELECT count(*) || ' ' || count(DISTINCT id) FROM conversation")
[ "$ids" = "352 352" ] || fail "after new conversations on 18: $ids (rows, distinct ids), expected 352 352"
each_node -c "$sequences_query" >"$DIR/sequences-after"
paste -d' ' "$DIR/sequences-15" "$DIR/sequences-after" | while read -r group last min max group2 last2 min2 max2; do
    [ "$group" = "$group2" ] && [ "$min" = "$min2" ] && [ "$max" = "$max2" ] && [ "$last2" -ge "$last" ] ||
        fail "node group $group: its id range moved ($last $min $max, then $last2 $min2 $max2)"
done
expect() {
    local got
    got=$(coordinator -c "$3" 2>&1 || true)
    [ "$got" = "$2" ] || fail "$1: got '$got', expected '$2'"
    echo "ok: $1"
}
expect "the functions still delegated by uid" "$delegated" "$delegated_query"
expect "a hit on a conversation of 15" "$(grep '^before1 g1 1 ' "$DIR/rows-15" | cut -d' ' -f4)" \
    "SELECT id FROM get_or_create_conversation('before1', 'g1', 1)"
expect "the list from the start" "lg1 1" "SELECT channel_id || ' ' || unread_count FROM conversation_list('lister', 1)"
position=$(coordinator -c "SELECT position FROM conversation_list('lister', 1)")
coordinator -c "SELECT conversation_message_arrived('lg1', 1, ARRAY['lister', 'other'], 2, 'other')" >/dev/null
expect "a sync from a position taken on 18" "lg1 2" \
    "SELECT channel_id || ' ' || unread_count FROM conversation_list('lister', 1, '$position')"
expect "the badge" "2 1" "SELECT unread_count || ' ' || conversations FROM conversation_unread('lister')"
expect "a call per row, pushed down to the shards" "50" \
    "SELECT count(*) FROM (SELECT get_or_create_conversation(uid, channel_id, channel_type) FROM conversation LIMIT 50) AS c"
echo "ok: on 18 the functions are delegated, the ids stay unique and in range, and the list goes on"

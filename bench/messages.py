#!/usr/bin/env python3
"""Message arrival: what a message to a group costs, side by side.

For groups of 10, 100 and 1,000 members (20,000 member conversations of each size), 4 clients
send messages at once, each to random groups of its own. Approaches, each on its own copy of the same rows:

- the 0.3.0 schema (its columns and indexes exactly) with the usual idiom: one UPDATE of the
  channel's conversations (what the issue's 518 bytes per member update were measured on);
- this release's table with the same UPDATE (the table's own cost: its indexes, its stamp);
- conversation_message_arrived on the extension's table (the function's cost on top);
- one row per channel instead (read diffusion): what O(1) writes per message would cost;
- issue 19's large mode, prototyped: the channel row and the sender's read position;
- conversation_message_arrived to large channels (0.10.0; its own groups of the same members,
  made large, each with a message before the runs so that its member set is known), a member
  sending: what the function writes is the channel row and the sender's.

Per approach and group size: messages per second, and per member of the group the WAL (records
and full-page images, from pg_waldump) and the index entries written, the rows updated per
message and the share of HOT updates; then the
table's and its indexes' size after the run. A CHECKPOINT before every run, so every run pays the
full-page images of the pages it touches first, alike.
usage: messages.py [--smoke]
"""

import os
import re
import statistics
import subprocess
import time

from harness import PGBENCH, SMOKE, header, psql, run_pgbench

SIZES = [10, 100] if SMOKE else [10, 100, 1000]
CONVERSATIONS_PER_SIZE = 400 if SMOKE else 20000
USERS = 5000
ROUNDS = 1 if SMOKE else 5
SECONDS = 1 if SMOKE else 5
CLIENTS = 4

# name -> (table, its statement for one message to group :g of size {G}, {T} the table)
UPDATE = ("WITH s AS (SELECT nextval('bench.msg_seq') AS v) "
          "UPDATE {T} AS c SET last_msg_seq = s.v, updated_at = now(),{UNHIDE} "
          "unread_count = CASE WHEN c.readed_to_msg_seq < s.v THEN c.unread_count + 1 ELSE c.unread_count END "
          "FROM s WHERE c.channel_id = 's{G}-g' || :g AND c.channel_type = 2 AND c.last_msg_seq < s.v;\n")
APPROACHES = {
    "0.3.0 schema, one UPDATE (the usual idiom)": ("bench.m030", UPDATE.replace("{UNHIDE}", "")),
    "this release's table, one UPDATE": ("bench.m_now", UPDATE.replace("{UNHIDE}", " hidden = false,")),
    "conversation_message_arrived": ("conversation",
        "SELECT conversation_message_arrived('s{G}-g' || :g, 2, m.members, nextval('bench.msg_seq'), NULL) "
        "FROM bench.groups AS m WHERE m.size = {G} AND m.g = :g;\n"),
    # What the issue asks to consider for large groups: one row per channel, members' unread
    # derived when read. It writes O(1) rows per message; bench/lists.py measures what reading
    # the list and the badge then costs.
    "read diffusion: one channel row per message": ("bench.channels",
        "UPDATE bench.channels SET last_msg_seq = nextval('bench.msg_seq'), last_msg_at = now() "
        "WHERE channel_id = 's{G}-g' || :g AND channel_type = 2;\n"),
    # Issue 19's large mode as docs/large-groups.md plans it: the channel row, and the sender's
    # own read position (their membership, a row of this release's table, stamped). Two rows
    # whatever the group's size.
    "conversation_message_arrived, large channels": ("conversation,conversation_channel",
        "SELECT conversation_message_arrived('s{G}-L' || :g, 2, m.members, nextval('bench.msg_seq'), m.members[1]) "
        "FROM bench.groups AS m WHERE m.size = {G} AND m.g = :g;\n"),
    "large mode, prototyped: the channel row and the sender's read position": ("bench.channels",
        "WITH s AS (UPDATE bench.channels SET last_msg_seq = nextval('bench.msg_seq'), last_msg_at = now() "
        "WHERE channel_id = 's{G}-g' || :g AND channel_type = 2 RETURNING last_msg_seq) "
        "UPDATE bench.m_now AS c SET readed_to_msg_seq = s.last_msg_seq, updated_at = now() FROM s "
        "WHERE c.uid = 'user' || ((:g * 37 + 101) % " + str(USERS) + ") AND c.channel_id = 's{G}-g' || :g "
        "AND c.channel_type = 2;\n"),
}
REFERENCE = "0.3.0 schema, one UPDATE (the usual idiom)"

# The 0.3.0 table as its install script made it (sql/releases/pg_conversation--0.3.0.sql).
TABLE_030 = """
CREATE TABLE bench.m030 (
    id bigint NOT NULL DEFAULT nextval('bench.m030_id_seq'), uid text NOT NULL, channel_id text NOT NULL,
    channel_type smallint NOT NULL,
    type smallint NOT NULL GENERATED ALWAYS AS (CASE WHEN pg_catalog.right(channel_id, 7) = '____cmd' THEN 2 ELSE 1 END) STORED,
    unread_count integer NOT NULL DEFAULT 0, readed_to_msg_seq bigint NOT NULL DEFAULT 0,
    last_msg_seq bigint NOT NULL DEFAULT 0, deleted_at_msg_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (uid, channel_id, channel_type),
    CHECK (conversation_key_is_valid(uid, channel_id, channel_type)), CHECK (unread_count >= 0));
CREATE INDEX ON bench.m030 (uid, updated_at DESC);
CREATE INDEX ON bench.m030 (channel_id, channel_type);
CREATE INDEX ON bench.m030 (updated_at) WHERE type = 2;
CREATE INDEX ON bench.m030 USING brin (created_at)"""


def load():
    members = ("SELECT {G}, g, ARRAY(SELECT 'user' || ((g * 37 + m * 101) % " + str(USERS) + ") FROM generate_series(1, {G}) AS m) "
               "FROM generate_series(1, {GROUPS}) AS g")
    statements = ["DROP SCHEMA IF EXISTS bench CASCADE", "CREATE SCHEMA bench", "TRUNCATE conversation",
                  "CREATE SEQUENCE bench.msg_seq", "CREATE SEQUENCE bench.m030_id_seq", TABLE_030,
                  # This release's table exactly, with its stamp trigger.
                  "CREATE TABLE bench.m_now (LIKE conversation INCLUDING ALL)",
                  "CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON bench.m_now "
                  "FOR EACH ROW EXECUTE FUNCTION conversation_stamp()",
                  "CREATE TABLE bench.groups (size integer, g integer, members text[], PRIMARY KEY (size, g))",
                  "CREATE TABLE bench.channels (channel_id text, channel_type smallint, last_msg_seq bigint NOT NULL DEFAULT 0, "
                  "last_msg_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (channel_id, channel_type))"]
    statements += [f"INSERT INTO bench.groups {members.format(G=size, GROUPS=CONVERSATIONS_PER_SIZE // size)}" for size in SIZES]
    for table in ["bench.m030", "bench.m_now", "conversation"]:
        statements.append(f"INSERT INTO {table} (uid, channel_id, channel_type) "
                          f"SELECT m, 's' || size || '-g' || g, 2 FROM bench.groups, unnest(members) AS m "
                          f"ON CONFLICT DO NOTHING")
    statements.append("INSERT INTO bench.channels (channel_id, channel_type) SELECT 's' || size || '-g' || g, 2 FROM bench.groups")
    # The large channels: made large (their memberships created), and a first message each, which
    # records the member set (later messages naming the same set look at no member's row).
    statements.append("TRUNCATE conversation_channel")
    statements.append("SELECT count(conversation_channel_make_large('s' || size || '-L' || g, 2, members)) FROM bench.groups")
    statements.append("SELECT count(conversation_message_arrived('s' || size || '-L' || g, 2, members, nextval('bench.msg_seq'), NULL)) "
                      "FROM bench.groups")
    statements.append("VACUUM ANALYZE")
    for statement in statements:
        psql(statement)


def wal_stats(start, end):
    """(record bytes, full-page image bytes, index entries written) between two WAL positions."""
    data = psql("SHOW data_directory")
    waldump = [os.path.join(os.path.dirname(PGBENCH), "pg_waldump"),
               "-p", os.path.join(data, "pg_wal"), "-s", start, "-e", end, "--stats=record"]
    if os.geteuid() == 0:
        waldump = ["sudo", "-u", "postgres"] + waldump
    out = subprocess.run(waldump, capture_output=True, text=True, check=True).stdout
    records = images = entries = 0
    for line in out.splitlines():
        m = re.match(r"(\S+/\S+)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)", line)
        if m:
            records += int(m.group(3))
            images += int(m.group(4))
            if m.group(1) in ("Btree/INSERT_LEAF", "Btree/INSERT_POST"):
                entries += int(m.group(2))
    return records, images, entries


def updates(tables):
    """Rows updated and HOT updates so far in `tables` (comma-separated)."""
    names = ", ".join(f"'{t}'::regclass" for t in tables.split(","))
    out = psql(f"SELECT sum(n_tup_upd), sum(n_tup_hot_upd) FROM pg_stat_user_tables WHERE relid IN ({names})")
    return [int(v) for v in out.split("|")]


def main():
    load()
    header("message arrival",
           f"{CONVERSATIONS_PER_SIZE} member conversations per group size, {USERS} users; {CLIENTS} clients sending "
           f"to random groups, {ROUNDS} rounds x {SECONDS} s per approach, approaches alternating; "
           f"a CHECKPOINT before every run")
    runs = [(size, a) for size in SIZES for a in APPROACHES]
    results = {run: {"tps": [], "messages": 0, "updates": 0, "hot": 0, "records": 0, "images": 0, "entries": 0}
               for run in runs}
    for round_no in range(ROUNDS):
        for size, approach in runs[round_no % len(runs):] + runs[:round_no % len(runs)]:
            table, statement = APPROACHES[approach]
            groups = CONVERSATIONS_PER_SIZE // size
            # Each client its own groups: messages to one group queue on its rows (the function
            # locks them in one order; the plain UPDATE deadlocks, as its rows move between pages).
            script = (f"\\set g random(0, {groups // CLIENTS - 1}) * {CLIENTS} + :client_id + 1\n"
                      + statement.replace("{T}", table).replace("{G}", str(size)))
            psql("CHECKPOINT")
            start = psql("SELECT pg_current_wal_insert_lsn()")
            before = updates(table)
            tps, messages, errors = run_pgbench(script, CLIENTS, SECONDS)
            if errors:
                raise SystemExit(f"{approach}, groups of {size}: {errors} errors")
            end = psql("SELECT pg_current_wal_insert_lsn()")
            time.sleep(0.5)  # the backends flush their table statistics as they exit
            after = updates(table)
            records, images, entries = wal_stats(start, end)
            r = results[(size, approach)]
            r["tps"].append(tps)
            r["messages"] += messages
            r["updates"] += after[0] - before[0]
            r["hot"] += after[1] - before[1]
            r["records"] += records
            r["images"] += images
            r["entries"] += entries
    for size in SIZES:
        print(f"### groups of {size}\n")
        print("| approach | messages/s | x 0.3.0 idiom | WAL bytes / member | of which full pages | "
              "index entries / member | rows updated / message | HOT updates |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        ref = results[(size, REFERENCE)]
        for approach in APPROACHES:
            r = results[(size, approach)]
            members = max(r["messages"] * size, 1)  # every member's conversation advances once per message
            ratio = statistics.median(t / rt for t, rt in zip(r["tps"], ref["tps"]))
            print(f"| {approach} | {statistics.median(r['tps']):.0f} | {ratio:.2f} | {(r['records'] + r['images']) / members:.0f} | "
                  f"{r['images'] / members:.0f} | {r['entries'] / members:.2f} | {r['updates'] / max(r['messages'], 1):.0f} | "
                  f"{100 * r['hot'] / max(r['updates'], 1):.0f}% |")
        print()
    print("### size after the run (every group size)\n")
    print("| approach | table | indexes |\n|---|---:|---:|")
    for approach, (tables, _) in APPROACHES.items():
        names = ", ".join(f"'{t}'::regclass" for t in tables.split(","))
        sizes = psql(f"SELECT pg_size_pretty(sum(pg_table_size(t))) || '|' || pg_size_pretty(sum(pg_indexes_size(t))) "
                     f"FROM unnest(ARRAY[{names}]) AS t")
        table_size, index_size = sizes.split("|")
        print(f"| {approach} | {table_size} | {index_size} |")
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reading the list and the badge: what a client reads after every message, side by side.

Users with 20, 1,000 and 100,000 chat conversations (a tenth of them unread, a twentieth hidden),
the same rows in the extension's table and in a table of the 0.3.0 schema. Per user, 8 clients
read, each approach in turn, round by round:

- 0.3.0: the first page the usual way, `ORDER BY updated_at DESC LIMIT 20` on its (uid,
  updated_at) index: one indexed read of 20 rows, the reference (every column, as the list);
- conversation_list(uid, 1, NULL, 20): the first page (hidden ones left out);
- conversation_list(uid, 1, position, 20) when nothing changed since the position: a sync;
- 0.3.0: the badge the usual way, `sum(unread_count)` over the user's rows;
- conversation_unread(uid, 1): the badge;
- read diffusion (one row per channel, what bench/messages.py's O(1) approach writes): the list
  and the badge as joins of the user's conversations to their channels' rows.

Then the hybrid of issue 19 (docs/large-groups.md), prototyped in SQL before it is built: users
of 20 and 1,000 member conversations who are also in 20 or 200 large channels, whose memberships
(bench.large_member) are not advanced per message but read with their channel's row
(bench.channel_state, among 100,000 channels). The first page, the badge and a sync with nothing
changed are each the function's call merged with the user's large channels in one statement,
against the same reference. What the large part costs in SQL bounds what it will cost built in.
usage: lists.py [--smoke]
"""

import os

from harness import SMOKE, psql, ratios, run_pgbench, median_spread

USERS = [20, 1000] if SMOKE else [20, 1000, 100000]
ROUNDS = 1 if SMOKE else 5
SECONDS = 1 if SMOKE else 5
CLIENTS = 8

APPROACHES = {
    "0.3.0: first page, ORDER BY updated_at DESC LIMIT 20 (one indexed read of 20 rows)":
        "SELECT * FROM bench.l030 WHERE uid = '{U}' ORDER BY updated_at DESC LIMIT 20;\n",
    "conversation_list: first page of 20":
        "SELECT * FROM conversation_list('{U}', 1, NULL, 20);\n",
    "conversation_list: sync from a position, nothing changed":
        "SELECT * FROM conversation_list('{U}', 1, '{P}', 20);\n",
    "0.3.0: badge, sum(unread_count) over the user's rows":
        "SELECT sum(unread_count) AS n FROM bench.l030 WHERE uid = '{U}' \\gset\n",
    "conversation_unread: badge":
        "SELECT unread_count AS n FROM conversation_unread('{U}', 1) \\gset\n",
    # Read diffusion (one row per channel, bench/messages.py): the list and the badge are then
    # joins of every conversation of the user to its channel's row.
    "read diffusion: first page, the user's conversations joined to their channels' rows":
        "SELECT c.*, s.last_msg_seq - c.readed_to_msg_seq AS unread FROM bench.l030 AS c "
        "JOIN bench.channels AS s USING (channel_id, channel_type) WHERE c.uid = '{U}' "
        "ORDER BY s.last_msg_at DESC LIMIT 20;\n",
    "read diffusion: badge, the same join summed":
        "SELECT sum(s.last_msg_seq - c.readed_to_msg_seq) AS n FROM bench.l030 AS c "
        "JOIN bench.channels AS s USING (channel_id, channel_type) WHERE c.uid = '{U}' \\gset\n",
}
REFERENCE = next(iter(APPROACHES))

# The hybrid: a user's large channels, each read with its channel's row. A membership's place in
# the list is its channel's last change or its own, whichever is later; its unread count, the
# channel's messages past its read position (or past where it was hidden: counted_from).
LARGE = ("SELECT m.id, greatest(m.version, s.version) AS version, greatest(m.updated_at, s.last_msg_at) AS updated_at, "
         "s.last_msg_seq - greatest(m.readed_to_msg_seq, m.counted_from) AS unread "
         "FROM bench.large_member AS m JOIN bench.channel_state AS s USING (channel_id, channel_type) "
         "WHERE m.uid = '{U}' AND m.type = 1")
HYBRID = {
    "hybrid: first page, the list's merged with the user's large channels":
        "SELECT id, version FROM (SELECT id, version, updated_at FROM conversation_list('{U}', 1, NULL, 20) "
        "UNION ALL SELECT id, version, updated_at FROM (" + LARGE + ") AS l) AS page "
        "ORDER BY version DESC, updated_at DESC, id DESC LIMIT 20;\n",
    "hybrid: badge, conversation_unread plus the large channels' unread":
        "SELECT (SELECT unread_count FROM conversation_unread('{U}', 1)) "
        "+ (SELECT coalesce(sum(l.unread), 0) FROM (" + LARGE + ") AS l) AS n \\gset\n",
    "hybrid: sync with nothing changed, the list's and the large channels' versions":
        "SELECT id FROM conversation_list('{U}', 1, '{P}', 20) "
        "UNION ALL SELECT l.id FROM (" + LARGE + ") AS l WHERE l.version > {H};\n",
}
LARGE_CHANNELS = [20] if SMOKE else [20, 200]
CHANNELS = 1000 if SMOKE else 100000


def load():
    psql("DROP SCHEMA IF EXISTS bench CASCADE")
    psql("CREATE SCHEMA bench")
    psql("TRUNCATE conversation")
    psql("""CREATE TABLE bench.l030 (id bigint, uid text, channel_id text, channel_type smallint, type smallint,
                unread_count integer, readed_to_msg_seq bigint, last_msg_seq bigint, deleted_at_msg_seq bigint,
                created_at timestamptz, updated_at timestamptz, PRIMARY KEY (uid, channel_id, channel_type))""")
    psql("CREATE INDEX ON bench.l030 (uid, updated_at DESC)")
    psql("""CREATE TABLE bench.channels (channel_id text, channel_type smallint, last_msg_seq bigint,
                last_msg_at timestamptz, PRIMARY KEY (channel_id, channel_type))""")
    # Versions as a history: conversation i of a user changed at version i of a cluster this
    # database was restored from (its generation 0; this cluster takes the next one), so that
    # every one of them is older than any snapshot here. The insert keeps them.
    psql("TRUNCATE conversation_clock")
    psql("INSERT INTO conversation_clock (system_identifier, generation) VALUES (1, 0)")
    for n in USERS:
        psql(f"""INSERT INTO conversation (uid, channel_id, channel_type, unread_count, last_msg_seq, hidden, version, updated_at)
                 SELECT 'list{n}', 'c' || i, 1, CASE WHEN i % 10 = 0 THEN 3 ELSE 0 END, 10, i % 20 = 7,
                        i, now() - make_interval(secs => {n} - i)
                 FROM generate_series(1, {n}) AS i""")
    psql("""INSERT INTO bench.l030 SELECT id, uid, channel_id, channel_type, type, unread_count, readed_to_msg_seq,
                last_msg_seq, deleted_at_msg_seq, created_at, updated_at FROM conversation""")
    # Users share channels (c1 is a channel of every user): one row per channel.
    psql("""INSERT INTO bench.channels SELECT DISTINCT ON (channel_id, channel_type) channel_id, channel_type,
                last_msg_seq, updated_at FROM bench.l030 ORDER BY channel_id, channel_type, updated_at DESC""")
    # A live cluster has written: its first stamped write added its generation to the clock,
    # which the list then remembers. (Until then every call reads the clock: 0.6x as fast.)
    psql("UPDATE conversation SET unread_count = unread_count WHERE uid = 'list20' AND channel_id = 'c1'")
    load_hybrid()
    psql("VACUUM ANALYZE")


def load_hybrid():
    """The users of the hybrid: a copy of list<n>'s member conversations, and <large> large
    channels among CHANNELS, each user's with versions below every snapshot (nothing changed)."""
    psql("""CREATE TABLE bench.large_member (id bigint, uid text, type smallint, channel_id text, channel_type smallint,
                readed_to_msg_seq bigint, counted_from bigint, hidden boolean, version bigint, updated_at timestamptz)""")
    psql("""CREATE TABLE bench.channel_state (channel_id text, channel_type smallint, last_msg_seq bigint,
                last_msg_at timestamptz, version bigint, PRIMARY KEY (channel_id, channel_type))""")
    psql(f"""INSERT INTO bench.channel_state SELECT 'big' || i, 2, 100 + i, now() - make_interval(secs => 7 * i), i
             FROM generate_series(1, {CHANNELS}) AS i""")
    for n in [u for u in USERS if u <= 1000]:
        for large in LARGE_CHANNELS:
            user = f"list{n}-large{large}"
            psql(f"""INSERT INTO conversation (uid, channel_id, channel_type, unread_count, last_msg_seq, hidden, version, updated_at)
                     SELECT '{user}', channel_id, channel_type, unread_count, last_msg_seq, hidden, version, updated_at
                     FROM conversation WHERE uid = 'list{n}'""")
            psql(f"""INSERT INTO bench.large_member SELECT 1000000000 + i, '{user}', 1, 'big' || (i * 37 % {CHANNELS} + 1), 2,
                         90, 0, false, i, now() - interval '1 day'
                     FROM generate_series(1, {large}) AS i""")
    # Other users' memberships, so that the user's are found by the index, as in a real table.
    psql(f"""INSERT INTO bench.large_member SELECT 2000000000 + i, 'other' || (i % 5000), 1, 'big' || (i % {CHANNELS} + 1), 2,
                 0, 0, false, 1, now() FROM generate_series(1, {CHANNELS * 2}) AS i""")
    psql("CREATE INDEX ON bench.large_member (uid, type)")


def sync_position(user):
    """The end of the first pass of `user`'s list: a position that has every conversation."""
    position = psql(f"SELECT position FROM conversation_list('{user}', 1, NULL, 1000) WITH ORDINALITY "
                    "ORDER BY ordinality DESC LIMIT 1")
    while True:
        page = psql(f"SELECT position FROM conversation_list('{user}', 1, '{position}', 1000) WITH ORDINALITY "
                    "ORDER BY ordinality DESC LIMIT 1")
        if not page:
            return position
        position = page


def compare(title, approaches, user, position, horizon=0):
    """Runs `approaches` (the reference first) round by round and prints their table."""
    tps = {a: [] for a in approaches}
    names = list(approaches)
    for round_no in range(ROUNDS):
        for approach in names[round_no % len(names):] + names[:round_no % len(names)]:
            script = approaches[approach].replace("{U}", user).replace("{P}", position).replace("{H}", str(horizon))
            t, _, errors = run_pgbench(script, CLIENTS, SECONDS)
            if errors:
                raise SystemExit(f"{approach}, {user}: {errors} errors")
            tps[approach].append(t)
    print(f"### {title}\n")
    print(f"| approach | tps median | spread | x {REFERENCE.split(' (')[0]} | ratio spread |")
    print("|---|---:|---:|---:|---:|")
    for approach in approaches:
        ratio, low, high = ratios(tps[approach], tps[REFERENCE])
        print(f"| {approach} | {median_spread(tps[approach])} | {ratio:.2f} | {low:.2f}-{high:.2f} |")
    print()


def main():
    load()
    version = psql("SELECT version()").split(",")[0]
    print(f"# the conversation list and the badge{' (smoke)' if SMOKE else ''}\n")
    print(f"pgbench -M prepared, {CLIENTS} clients, {ROUNDS} rounds x {SECONDS} s per approach, approaches "
          f"alternating; {os.cpu_count()} cores; {version}.\n")
    for n in USERS:
        user = f"list{n}"
        compare(f"a user with {n} conversations", APPROACHES, user, sync_position(user))
    print("## the hybrid of issue 19, prototyped in SQL\n")
    for n in [u for u in USERS if u <= 1000]:
        for large in LARGE_CHANNELS:
            user = f"list{n}-large{large}"
            # Every channel version is below this: a sync that finds nothing changed.
            # The reference reads the rows of list<n>, of which this user's are a copy.
            reference = APPROACHES[REFERENCE].replace("{U}", f"list{n}")
            compare(f"a user with {n} conversations and {large} large channels", {REFERENCE: reference, **HYBRID},
                    user, sync_position(user), CHANNELS + 1)


if __name__ == "__main__":
    main()

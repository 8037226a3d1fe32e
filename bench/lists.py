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

Then large channels (0.10.0, docs/large-groups.md): users of 20 and 1,000 member conversations who
are also members of 20 or 200 large channels (among 100,000 channel rows, with other users'
memberships beside theirs), whose state is derived from their channel's row when read. The same
three calls, the first page, the badge and a sync with nothing changed, against the same
reference: what a user's large channels add to what they read.
usage: lists.py [--smoke]
"""

from harness import SMOKE, header, psql, ratios, run_pgbench, median_spread

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

# The calls a user of large channels makes: the same as a user without.
LARGE = {
    "conversation_list: first page of 20": APPROACHES["conversation_list: first page of 20"],
    "conversation_unread: badge": APPROACHES["conversation_unread: badge"],
    "conversation_list: sync from a position, nothing changed":
        APPROACHES["conversation_list: sync from a position, nothing changed"],
}
LARGE_CHANNELS = [20] if SMOKE else [20, 200]
CHANNELS = 1000 if SMOKE else 100000


def load():
    psql("DROP SCHEMA IF EXISTS bench CASCADE")
    psql("CREATE SCHEMA bench")
    psql("TRUNCATE conversation, conversation_channel")
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
    load_large()
    psql("VACUUM ANALYZE")


def load_large():
    """The users of large channels: a copy of list<n>'s member conversations, and memberships of
    <large> large channels among CHANNELS channel rows (each membership 10 behind its channel's
    last message, read to where it was counted). Rows written directly, as the functions would
    leave them: conversation_channel_make_large on 100,000 channels would take minutes."""
    psql(f"""INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, updated_at)
             SELECT 'big' || i, 2, 100 + i, now() - make_interval(secs => 7 * i) FROM generate_series(1, {CHANNELS}) AS i""")
    for n in [u for u in USERS if u <= 1000]:
        for large in LARGE_CHANNELS:
            user = f"list{n}-large{large}"
            psql(f"""INSERT INTO conversation (uid, channel_id, channel_type, unread_count, last_msg_seq, hidden, version, updated_at)
                     SELECT '{user}', channel_id, channel_type, unread_count, last_msg_seq, hidden, version, updated_at
                     FROM conversation WHERE uid = 'list{n}'""")
            psql(f"""INSERT INTO conversation (uid, channel_id, channel_type, large, readed_to_msg_seq, last_msg_seq, updated_at)
                     SELECT '{user}', 'big' || j, 2, true, 90 + j, 90 + j, now() - interval '1 day'
                     FROM generate_series(1, {large}) AS i, LATERAL (SELECT i * 37 % {CHANNELS} + 1 AS j) AS c""")
    # Other users' memberships, so that the user's are found by the index, as in a real table.
    psql(f"""INSERT INTO conversation (uid, channel_id, channel_type, large, last_msg_seq)
             SELECT 'other' || (i % 5000), 'big' || (i % {CHANNELS} + 1), 2, true, 1
             FROM generate_series(1, {CHANNELS * 2}) AS i ON CONFLICT DO NOTHING""")


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


def compare(title, approaches, user, position):
    """Runs `approaches` (the reference first) round by round and prints their table."""
    tps = {a: [] for a in approaches}
    names = list(approaches)
    for round_no in range(ROUNDS):
        for approach in names[round_no % len(names):] + names[:round_no % len(names)]:
            script = approaches[approach].replace("{U}", user).replace("{P}", position)
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
    header("the conversation list and the badge",
           f"pgbench -M prepared, {CLIENTS} clients, {ROUNDS} rounds x {SECONDS} s per approach, approaches alternating")
    for n in USERS:
        user = f"list{n}"
        compare(f"a user with {n} conversations", APPROACHES, user, sync_position(user))
    print("## users of large channels\n")
    for n in [u for u in USERS if u <= 1000]:
        for large in LARGE_CHANNELS:
            user = f"list{n}-large{large}"
            # The reference reads the rows of list<n>, of which this user's are a copy.
            reference = APPROACHES[REFERENCE].replace("{U}", f"list{n}")
            compare(f"a user with {n} conversations and {large} large channels", {REFERENCE: reference, **LARGE},
                    user, sync_position(user))

if __name__ == "__main__":
    main()

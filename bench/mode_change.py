#!/usr/bin/env python3
"""A channel's mode change under load: messages to the channel keep arriving while it is made
large and per member again.

For groups of 1,000 and 10,000 members, 2 clients send messages to one channel of the group
without pause (pgbench, each message its own transaction, a member sending), while the channel
is made large and per member again, one change a second (each in a transaction of its own at
READ COMMITTED, as the README says to call them). Reported per group size, from one run:

- how long each change took (wall time of its psql call, about 5 ms of which is the connection);
- the messages, side by side in the two modes and while a change runs (a change holds the
  channel's lock exclusively: the messages wait for it): messages per second and latency.

usage: mode_change.py [--smoke]
"""

import glob
import os
import statistics
import subprocess
import tempfile
import time

from harness import PGBENCH, SMOKE, header, psql

SIZES = [100] if SMOKE else [1000, 10000]
ROUNDS = 1 if SMOKE else 5
CLIENTS = 2


def load():
    psql("DROP SCHEMA IF EXISTS bench CASCADE")
    psql("CREATE SCHEMA bench")
    psql("TRUNCATE conversation, conversation_channel")
    psql("CREATE SEQUENCE bench.msg_seq")
    psql("CREATE TABLE bench.groups (size integer PRIMARY KEY, members text[])")
    for size in SIZES:
        psql(f"INSERT INTO bench.groups SELECT {size}, ARRAY(SELECT 'member' || m FROM generate_series(1, {size}) AS m)")
    psql("SELECT count(conversation_message_arrived('mode' || size, 2, members, nextval('bench.msg_seq'), NULL)) FROM bench.groups")
    psql("VACUUM ANALYZE")


def change(size, large):
    """Makes channel mode<size> large or per member: (start, end) in wall time."""
    if large:
        sql = f"SELECT conversation_channel_make_large('mode{size}', 2, members) FROM bench.groups WHERE size = {size}"
    else:
        sql = f"SELECT conversation_channel_make_per_member('mode{size}', 2)"
    start = time.time()
    psql(sql)
    return start, time.time()


def run(size):
    """Messages for the whole run, the changes in it: (transactions, changes), each transaction
    (end, latency) in seconds, each change (start, end, made large)."""
    seconds = 2 + ROUNDS * (2 if SMOKE else 6)
    script = (f"SELECT conversation_message_arrived('mode{size}', 2, members, nextval('bench.msg_seq'), "
              f"members[1 + :client_id]) FROM bench.groups WHERE size = {size};\n")
    with tempfile.TemporaryDirectory() as logs:
        os.chmod(logs, 0o777)
        path = os.path.join(logs, "messages.sql")
        with open(path, "w") as f:
            f.write(script)
        pgbench = subprocess.Popen([PGBENCH, "-n", "-M", "prepared", "-c", str(CLIENTS), "-j", str(CLIENTS),
                                    "-T", str(seconds), "-l", "-f", path], cwd=logs,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + seconds - 2
        changes = []
        time.sleep(1)
        while len(changes) < 2 * ROUNDS and time.time() < deadline:
            large = len(changes) % 2 == 0
            changes.append((*change(size, large), large))
            time.sleep(1 if not SMOKE else 0.3)
        out, _ = pgbench.communicate()
        if pgbench.returncode != 0 or "aborted" in out:
            raise SystemExit(f"pgbench failed:\n{out}")
        transactions = []
        for log in glob.glob(os.path.join(logs, "pgbench_log.*")):
            with open(log) as f:
                for line in f:
                    fields = line.split()
                    # client transaction latency_us script epoch_s epoch_us
                    transactions.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1e6))
    return transactions, changes


def describe(latencies, seconds):
    if not latencies:
        return "| 0 | - | - | - |"
    ms = sorted(1000 * x for x in latencies)
    return (f"| {len(ms) / seconds:.0f} | {statistics.median(ms):.1f} | {ms[int(0.99 * (len(ms) - 1))]:.1f} | "
            f"{ms[-1]:.1f} |")


def main():
    load()
    header("a channel's mode change under load",
           f"{CLIENTS} clients sending messages to the channel without pause; the channel made large and per member "
           f"again {ROUNDS} times, a change a second")
    for size in SIZES:
        transactions, changes = run(size)
        print(f"### a group of {size}\n")
        print("| change | done | median (ms) | max (ms) |\n|---|---:|---:|---:|")
        for large, name in [(True, "conversation_channel_make_large"), (False, "conversation_channel_make_per_member")]:
            took = [1000 * (end - start) for start, end, made_large in changes if made_large == large]
            print(f"| {name} | {len(took)} | {statistics.median(took):.0f} | {max(took):.0f} |")
        # Each message by the mode it ran in: during a change if its run overlapped one; else the
        # mode the last change before it left (per member before the first).
        spans = {"per member": [], "large": [], "while a change runs": []}
        seconds = {"per member": 0.0, "large": 0.0, "while a change runs": 0.0}
        first = min(end - latency for end, latency in transactions)
        last = max(end for end, _ in transactions)
        edges = [first] + [t for start, end, _ in changes for t in (start, end)] + [last]
        for i in range(len(edges) - 1):
            mode = "while a change runs" if i % 2 == 1 else ("large" if i // 2 % 2 == 1 else "per member")
            seconds[mode] += max(edges[i + 1] - edges[i], 0)
        for end, latency in transactions:
            begin = end - latency
            if any(begin < c_end and end > c_start for c_start, c_end, _ in changes):
                spans["while a change runs"].append(latency)
                continue
            before = [made_large for _, c_end, made_large in changes if c_end <= begin]
            spans["large" if before and before[-1] else "per member"].append(latency)
        print("\n| messages | messages/s | median latency (ms) | p99 (ms) | max (ms) |\n|---|---:|---:|---:|---:|")
        for mode, latencies in spans.items():
            print(f"| {mode} {describe(latencies, max(seconds[mode], 1e-3))}")
        print()


if __name__ == "__main__":
    main()

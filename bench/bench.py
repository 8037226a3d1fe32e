#!/usr/bin/env python3
"""Side-by-side benchmark of get_or_create_conversation against its limits and the usual idioms.

Every approach runs the same pgbench workload (prepared statements) against its own copy of the
same table, the approaches alternating round by round so that machine noise hits them alike.
Reports, per workload, a markdown table: tps median and spread, ratio to the workload's reference,
and per 1,000 calls the WAL bytes, dead tuples and sequence values consumed, plus errors
(failed transactions, aborted clients; a call that returns no row aborts its client via \\gset).

Uses the cluster named by PGHOST/PGPORT/PGUSER/PGDATABASE, with pg_conversation installed.
usage: bench.py [--smoke] [--only WORKLOAD]
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

SMOKE = "--smoke" in sys.argv[1:]
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv[1:] else None
USERS, CHANNEL_PAIRS = (20, 5) if SMOKE else (1000, 50)  # 2 conversations (chat + CMD) per pair
ROUNDS = 1 if SMOKE else 10
SECONDS = 1 if SMOKE else 5
CLIENTS = 8
CONTENTION_CLIENTS = 32
MEMBERS = 100 if SMOKE else 1000  # members of the fresh channel in the fan-out workload
FANOUT_CLIENTS = 2
PGBENCH = os.path.join(subprocess.check_output(["pg_config", "--bindir"], text=True).strip(), "pgbench")

# name -> (table it works on, its id sequence, SQL for key (U, C, T))
APPROACHES = {
    "plain SELECT (hit limit)": ("bench.t_select", "bench.t_select_id_seq",
        "SELECT id FROM bench.t_select WHERE uid = {U} AND channel_id = {C} AND channel_type = {T}"),
    "plain INSERT (miss limit)": ("bench.t_insert", "bench.t_insert_id_seq",
        "INSERT INTO bench.t_insert (uid, channel_id, channel_type) VALUES ({U}, {C}, {T}) RETURNING id"),
    "INSERT ON CONFLICT DO UPDATE": ("bench.t_upsert", "bench.t_upsert_id_seq",
        "INSERT INTO bench.t_upsert AS t (uid, channel_id, channel_type) VALUES ({U}, {C}, {T}) "
        "ON CONFLICT (uid, channel_id, channel_type) DO UPDATE SET channel_type = EXCLUDED.channel_type RETURNING id"),
    "CTE DO NOTHING UNION ALL SELECT": ("bench.t_cte", "bench.t_cte_id_seq",
        "WITH ins AS (INSERT INTO bench.t_cte (uid, channel_id, channel_type) VALUES ({U}, {C}, {T}) "
        "ON CONFLICT (uid, channel_id, channel_type) DO NOTHING RETURNING id) "
        "SELECT id FROM ins UNION ALL SELECT id FROM bench.t_cte "
        "WHERE uid = {U} AND channel_id = {C} AND channel_type = {T} LIMIT 1"),
    "PL/pgSQL select-then-insert loop": ("bench.t_plpgsql", "bench.t_plpgsql_id_seq",
        "SELECT bench.plpgsql_get_or_create({U}, {C}, {T}) AS id"),
    "get_or_create_conversation": ("conversation", "conversation_id_seq",
        "SELECT id FROM get_or_create_conversation({U}, {C}, {T})"),
    # The same call as a value instead of in FROM: skips the FunctionScan's tuplestore.
    "(get_or_create_conversation()).id": ("conversation", "conversation_id_seq",
        "SELECT (get_or_create_conversation({U}, {C}, {T})).id"),
}

# Fan-out: one transaction gets the conversations of all MEMBERS members of a fresh channel.
# Whole pgbench scripts; every approach builds the same uid array on the server.
MEMBER_UIDS = f"ARRAY(SELECT 'member' || i FROM generate_series(1, {MEMBERS}) AS i)"
FRESH_CHANNEL = "\\set r random(1, 1000000000000000)\n"
FANOUT_APPROACHES = {
    "set-based INSERT ... SELECT ... ON CONFLICT DO NOTHING (limit)": ("bench.t_fanout", "bench.t_fanout_id_seq",
        FRESH_CHANNEL + "INSERT INTO bench.t_fanout (uid, channel_id, channel_type) "
        f"SELECT m, 'fan' || :r, 2 FROM unnest({MEMBER_UIDS}) AS m "
        "ON CONFLICT (uid, channel_id, channel_type) DO NOTHING;\n"),
    "get_or_create_conversations (one call)": ("conversation", "conversation_id_seq",
        FRESH_CHANNEL + f"SELECT count(*) AS n FROM get_or_create_conversations('fan' || :r, 2, {MEMBER_UIDS}) \\gset\n"),
    f"{MEMBERS} get_or_create_conversation calls in one transaction": ("conversation", "conversation_id_seq",
        # No \\gset here: pgbench 15 crashes on scripts with more than about 128 of them.
        FRESH_CHANNEL + "BEGIN;\n" + "".join(
            f"SELECT id FROM get_or_create_conversation('member{i}', 'fan' || :r, 2);\n"
            for i in range(1, MEMBERS + 1)) + "COMMIT;\n"),
}
APPROACHES.update(FANOUT_APPROACHES)
SINGLE_KEY = [a for a in APPROACHES if a not in FANOUT_APPROACHES]

# workload -> (approaches that make sense for it, reference approach, pgbench clients, script)
# Scripts choose a key and hand {U} {C} {T} as SQL expressions over pgbench variables.
HIT_KEY = ("\\set u random(1, %d)\n\\set c random(1, %d)\n" % (USERS, CHANNEL_PAIRS),
           [("'u' || :u", "'g' || :c", "1"), ("'u' || :u", "'g' || :c || '____cmd'", "2")])
MISS_KEY = ("\\set r random(1, 1000000000000000)\n", [("'new' || :r", "'g1'", "1")])
WORKLOADS = {
    "hit": ([a for a in SINGLE_KEY if a != "plain INSERT (miss limit)"], "plain SELECT (hit limit)", CLIENTS, HIT_KEY),
    "miss": ([a for a in SINGLE_KEY if a != "plain SELECT (hit limit)"], "plain INSERT (miss limit)", CLIENTS, MISS_KEY),
    # 32 clients on 4 fresh keys per run: creation races, then hot hits.
    "contention": ([a for a in SINGLE_KEY if "limit" not in a], "PL/pgSQL select-then-insert loop",
                   CONTENTION_CLIENTS, ("\\set k random(1, 4)\n", [("'hot'", "'{RUN}-' || :k", "1")])),
    # tps counts fan-outs (transactions of MEMBERS creations), not single calls.
    "fan-out": (list(FANOUT_APPROACHES), "set-based INSERT ... SELECT ... ON CONFLICT DO NOTHING (limit)",
                FANOUT_CLIENTS, None),
}


def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def load():
    copies = [table for table, _, _ in APPROACHES.values() if table.startswith("bench.")]
    statements = ["DROP SCHEMA IF EXISTS bench CASCADE", "CREATE SCHEMA bench", "TRUNCATE conversation"]
    for table in copies:
        # The extension's table exactly (indexes, constraints, generated column), with its own sequence.
        statements += [f"CREATE TABLE {table} (LIKE conversation INCLUDING ALL)",
                       f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id",
                       f"ALTER TABLE {table} ALTER id SET DEFAULT nextval('{table}_id_seq')"]
    rows = (f"SELECT 'u' || u, 'g' || c || suffix, kind FROM generate_series(1, {USERS}) u, "
            f"generate_series(1, {CHANNEL_PAIRS}) c, (VALUES ('', 1), ('____cmd', 2)) AS k(suffix, kind)")
    for table in copies + ["conversation"]:
        statements.append(f"INSERT INTO {table} (uid, channel_id, channel_type) {rows}")
    statements.append("""
        CREATE FUNCTION bench.plpgsql_get_or_create(p_uid text, p_channel_id text, p_channel_type int)
        RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE found_id bigint;
        BEGIN
            LOOP
                SELECT id INTO found_id FROM bench.t_plpgsql
                WHERE uid = p_uid AND channel_id = p_channel_id AND channel_type = p_channel_type;
                IF found_id IS NOT NULL THEN RETURN found_id; END IF;
                BEGIN
                    INSERT INTO bench.t_plpgsql (uid, channel_id, channel_type)
                    VALUES (p_uid, p_channel_id, p_channel_type) RETURNING id INTO found_id;
                    RETURN found_id;
                EXCEPTION WHEN unique_violation THEN
                    -- someone else created it: loop and read it
                END;
            END LOOP;
        END $$""")
    statements.append("VACUUM ANALYZE")
    for statement in statements:
        psql(statement)


def counters(table, sequence):
    out = psql(f"SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn, "
               f"(SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{table}'::regclass), "
               f"(SELECT last_value FROM {sequence})")
    return [int(float(v)) for v in out.split("|")]


def run_pgbench(script, clients):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run([PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                               "-T", str(SECONDS), "-f", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    out = done.stdout + done.stderr
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    calls = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    errors = len(re.findall(r"aborted in command", out)) + (int(failed.group(1)) if failed else 0)
    if not tps or not calls:
        raise SystemExit(f"pgbench failed:\n{out}")
    return float(tps.group(1)), int(calls.group(1)), errors


def script_for(approach, key, run):
    if key is None:
        return APPROACHES[approach][2]
    setup, variants = key
    sql = APPROACHES[approach][2]
    if len(variants) == 1:
        u, c, t = (part.replace("{RUN}", run) for part in variants[0])
        return setup + sql.format(U=u, C=c, T=t) + " \\gset\n"
    # Half the calls on chat conversations, half on CMD ones.
    (u1, c1, t1), (u2, c2, t2) = variants
    return (setup + "\\if random(0, 1) = 0\n" + sql.format(U=u1, C=c1, T=t1) + " \\gset\n\\else\n"
            + sql.format(U=u2, C=c2, T=t2) + " \\gset\n\\endif\n")


def bench(workload):
    approaches, reference, clients, key = WORKLOADS[workload]
    results = {a: {"tps": [], "calls": 0, "wal": 0, "dead": 0, "seq": 0, "errors": 0} for a in approaches}
    for round_no in range(ROUNDS):
        order = approaches[round_no % len(approaches):] + approaches[:round_no % len(approaches)]
        for approach in order:
            table, sequence, _ = APPROACHES[approach]
            run = f"{workload}-{round_no}-{time.time_ns()}"
            before = counters(table, sequence)
            tps, calls, errors = run_pgbench(script_for(approach, key, run), clients)
            time.sleep(0.5)  # pgbench's backends flush their table statistics as they exit
            after = counters(table, sequence)
            r = results[approach]
            r["tps"].append(tps)
            r["calls"] += calls
            r["errors"] += errors
            for name, b, a in zip(("wal", "dead", "seq"), before, after):
                r[name] += a - b
    return results, reference


def report(workload, results, reference):
    # The ratio is taken round by round (each approach against the reference run next to it), then
    # the median: the machine's slow drifts cancel within a round, so this spreads far less than
    # the tps itself.
    ref_tps = results[reference]["tps"]
    lines = [f"### {workload}", "",
             f"| approach | tps median | spread | x {reference} (median of rounds) | ratio spread | "
             "WAL bytes / 1k transactions | dead tuples / 1k | sequence values / 1k | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for approach, r in results.items():
        ratios = [t / ref for t, ref in zip(r["tps"], ref_tps)]
        per_k = lambda v: f"{1000 * v / max(r['calls'], 1):.0f}"
        lines.append(f"| {approach} | {statistics.median(r['tps']):.0f} | {min(r['tps']):.0f}-{max(r['tps']):.0f} | "
                     f"{statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} | "
                     f"{per_k(r['wal'])} | {per_k(r['dead'])} | {per_k(r['seq'])} | {r['errors']} |")
    return "\n".join(lines)


def main():
    load()
    version = psql("SELECT version()")
    cores = os.cpu_count()
    print(f"# pg_conversation benchmark{' (smoke)' if SMOKE else ''}\n")
    print(f"{USERS} users x {2 * CHANNEL_PAIRS} conversations each (half CMD), {ROUNDS} rounds x {SECONDS} s per "
          f"approach, approaches alternating; pgbench -M prepared, {CLIENTS} clients "
          f"({CONTENTION_CLIENTS} for contention), {cores} cores; {version.split(',')[0]}.\n")
    for workload in WORKLOADS:
        if ONLY and workload != ONLY:
            continue
        results, reference = bench(workload)
        print(report(workload, results, reference) + "\n", flush=True)


if __name__ == "__main__":
    main()

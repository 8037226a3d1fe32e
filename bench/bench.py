#!/usr/bin/env python3
"""Side-by-side benchmark of get_or_create_conversation against its limits and the usual idioms.

Every approach runs the same pgbench workload (prepared statements) against its own copy of the
same table, the approaches alternating round by round so that machine noise hits them alike.
Reports, per workload, a markdown table: tps median and spread, ratio to the workload's reference,
and per 1,000 calls the WAL bytes, dead tuples and sequence values consumed, plus errors
(failed transactions, aborted clients; a call that returns no row aborts its client via \\gset).

Uses the cluster named by PGHOST/PGPORT/PGUSER/PGDATABASE, with pg_conversation installed.

--citus: the hit, miss and fan-out workloads on a Citus cluster through its coordinator
(PGCONV_BENCH_CITUS: "host port" of the coordinator, same user and database), beside the same
workloads on the single node, in one run. On Citus every table is distributed by uid (the
extension's with conversation_distribute), so the plain SELECT and INSERT are Citus's router
queries: the limit there. WAL, dead tuples and sequence values are the coordinator's, so they are
left out on Citus.
usage: bench.py [--smoke] [--only WORKLOAD] [--citus]
"""

import os
import statistics
import sys
import time

from harness import SMOKE, header, psql, ratios, run_pgbench

CITUS = "--citus" in sys.argv[1:]
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv[1:] else None
USERS, CHANNEL_PAIRS = (20, 5) if SMOKE else (1000, 50)  # 2 conversations (chat + CMD) per pair
ROUNDS = 1 if SMOKE else 10
SECONDS = 1 if SMOKE else 5
CLIENTS = 8
CONTENTION_CLIENTS = 32
MEMBERS = 100 if SMOKE else 1000  # members of the fresh channel in the fan-out workload
FANOUT_CLIENTS = 2

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


# Where the workloads run: (label, environment for psql and pgbench). The single node is the
# cluster PG* names; the Citus coordinator is PGCONV_BENCH_CITUS's host and port.
SINGLE_NODE = ("single node", dict(os.environ))
ENVIRONMENTS = [SINGLE_NODE]
if CITUS:
    host, port = os.environ["PGCONV_BENCH_CITUS"].split()
    ENVIRONMENTS.append(("Citus coordinator", dict(os.environ, PGHOST=host, PGPORT=port)))
# The approaches and workloads that make sense on Citus: the limits, the extension's calls, fan-out.
CITUS_APPROACHES = ["plain SELECT (hit limit)", "plain INSERT (miss limit)", "get_or_create_conversation",
                    "(get_or_create_conversation()).id",
                    "set-based INSERT ... SELECT ... ON CONFLICT DO NOTHING (limit)", "get_or_create_conversations (one call)"]
CITUS_WORKLOADS = ["hit", "miss", "fan-out"]


def distribute(env):
    """Every table of the run distributed by uid on Citus, the extension's as users do it."""
    # Citus puts a table's triggers on its shards when allowed to (conversation_distribute does so too).
    unsafe_triggers = dict(env, PGOPTIONS="-c citus.enable_unsafe_triggers=on")
    for table in sorted({t for t, _, _ in APPROACHES.values() if t.startswith("bench.")}):
        psql(f"SELECT create_distributed_table('{table}', 'uid', shard_count => 32)", unsafe_triggers)
        psql(f"SELECT truncate_local_data_after_distributing_table('{table}')", env)
    psql("SELECT count(*) FROM conversation_distribute(32)", env)
    psql("VACUUM ANALYZE", env)


def load(env=None):
    copies = [table for table, _, _ in APPROACHES.values() if table.startswith("bench.")]
    statements = ["DROP SCHEMA IF EXISTS bench CASCADE", "CREATE SCHEMA bench", "TRUNCATE conversation"]
    for table in copies:
        # The extension's table exactly (indexes, constraints, generated column, the stamp trigger
        # that every writer of it pays), with its own sequence.
        statements += [f"CREATE TABLE {table} (LIKE conversation INCLUDING ALL)",
                       f"CREATE TRIGGER conversation_stamp BEFORE INSERT OR UPDATE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION conversation_stamp()",
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
        psql(statement, env)


def counters(table, sequence, env):
    out = psql(f"SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn, "
               f"(SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{table}'::regclass), "
               f"(SELECT last_value FROM {sequence})", env)
    return [int(float(v)) for v in out.split("|")]


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
    if CITUS:
        approaches = [a for a in approaches if a in CITUS_APPROACHES]
    # Every approach in every environment, alternating round by round.
    runs = [(a, label, env) for label, env in ENVIRONMENTS for a in approaches]
    results = {(a, label): {"tps": [], "calls": 0, "wal": 0, "dead": 0, "seq": 0, "errors": 0} for a, label, _ in runs}
    for round_no in range(ROUNDS):
        order = runs[round_no % len(runs):] + runs[:round_no % len(runs)]
        for approach, label, env in order:
            table, sequence, _ = APPROACHES[approach]
            run = f"{workload}-{round_no}-{time.time_ns()}"
            before = counters(table, sequence, env)
            tps, calls, errors = run_pgbench(script_for(approach, key, run), clients, SECONDS, env)
            time.sleep(0.5)  # pgbench's backends flush their table statistics as they exit
            after = counters(table, sequence, env)
            r = results[(approach, label)]
            r["tps"].append(tps)
            r["calls"] += calls
            r["errors"] += errors
            for name, b, a in zip(("wal", "dead", "seq"), before, after):
                r[name] += a - b
    return results, reference


def report(workload, results, reference):
    # The ratio is taken round by round (each approach against the reference run next to it, in
    # the same environment), then the median: the machine's slow drifts cancel within a round, so
    # this spreads far less than the tps itself.
    lines = [f"### {workload}", "",
             f"| {'where | ' if CITUS else ''}approach | tps median | spread | x {reference} (median of rounds) | ratio spread | "
             "WAL bytes / 1k transactions | dead tuples / 1k | sequence values / 1k | errors |",
             f"|{'---|' if CITUS else ''}---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (approach, label), r in results.items():
        ratio, low, high = ratios(r["tps"], results[(reference, label)]["tps"])
        # On Citus the coordinator's WAL, dead tuples and sequence say nothing of the workers'.
        per_k = lambda v: f"{1000 * v / max(r['calls'], 1):.0f}" if label == SINGLE_NODE[0] else "-"
        lines.append(f"| {label + ' | ' if CITUS else ''}{approach} | {statistics.median(r['tps']):.0f} | "
                     f"{min(r['tps']):.0f}-{max(r['tps']):.0f} | "
                     f"{ratio:.2f} | {low:.2f}-{high:.2f} | "
                     f"{per_k(r['wal'])} | {per_k(r['dead'])} | {per_k(r['seq'])} | {r['errors']} |")
    return "\n".join(lines)


def main():
    for _, env in ENVIRONMENTS:
        load(env)
    if CITUS:
        distribute(ENVIRONMENTS[1][1])
    header("pg_conversation benchmark",
           f"{USERS} users x {2 * CHANNEL_PAIRS} conversations each (half CMD), {ROUNDS} rounds x {SECONDS} s per "
           f"approach, approaches alternating; pgbench -M prepared, {CLIENTS} clients "
           f"({CONTENTION_CLIENTS} for contention)")
    if CITUS:
        citus = psql("SELECT citus_version()", ENVIRONMENTS[1][1]).split(" on ")[0]
        workers = psql("SELECT count(*) FROM citus_get_active_worker_nodes()", ENVIRONMENTS[1][1])
        print(f"Citus: {citus}, a coordinator and {workers} workers on this machine, 32 shards; the single "
              f"node is a separate server on the same machine.\n")
    for workload in WORKLOADS:
        if ONLY and workload != ONLY:
            continue
        if CITUS and workload not in CITUS_WORKLOADS:
            continue
        results, reference = bench(workload)
        print(report(workload, results, reference) + "\n", flush=True)


if __name__ == "__main__":
    main()

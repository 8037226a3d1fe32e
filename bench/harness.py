"""What the benchmarks share: psql, pgbench runs, and the table of ratios per round.

Every benchmark runs its approaches side by side, alternating round by round, on the cluster that
PGHOST/PGPORT/PGUSER/PGDATABASE name (bench/run.sh starts a private one), and reports tps and
the ratio to a reference taken round by round (the machine's slow drifts cancel within a round).
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile

SMOKE = "--smoke" in sys.argv[1:]
PGBENCH = os.path.join(subprocess.check_output(["pg_config", "--bindir"], text=True).strip(), "pgbench")


def psql(sql, env=None):
    done = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"psql failed: {done.stderr.strip()}\nin: {sql}")
    return done.stdout.strip()


def header(title, setup):
    """Prints a benchmark's title and what it ran: `setup`, then the machine's cores and the
    server's version (markdown, as every table after it)."""
    version = psql("SELECT version()").split(",")[0]
    print(f"# {title}{' (smoke)' if SMOKE else ''}\n")
    print(f"{setup}; {os.cpu_count()} cores; {version}.\n")


def run_pgbench(script, clients, seconds, env=None):
    """(tps, transactions, errors) of `script` run by `clients` for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run([PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                               "-T", str(seconds), "-f", f.name], capture_output=True, text=True, env=env)
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


def ratios(tps, reference_tps):
    """The round-by-round ratios of one approach's tps to the reference's: (median, low, high)."""
    rs = [t / r for t, r in zip(tps, reference_tps)]
    return statistics.median(rs), min(rs), max(rs)


def median_spread(values):
    return f"{statistics.median(values):.0f} | {min(values):.0f}-{max(values):.0f}"

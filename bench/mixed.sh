# Sourced by the benchmarks that mix statements in one pgbench run and compare each with a
# reference (citus_list.sh, partitioned_list.sh): each transaction picks a script at random, so
# that the machine's noise falls on every statement alike.
#   mixed_table SCRIPTS LOG RUNS SECONDS    runs every SCRIPTS/N-name.sql (N from 0, the reference
#                                           first) RUNS times for SECONDS with 2 clients, against
#                                           the database PGHOST, PGPORT, PGUSER and PGDATABASE
#                                           name, logging into LOG; prints each statement's mean
#                                           latency per run and its speed x the reference
#                                           (median of runs) as a Markdown table.
#   position_after_first_pass UID           the position a client holds after listing all of
#                                           UID's conversations, page by page (for a sync).
mixed_table() {
    local scripts=$1 log=$2 runs=$3 seconds=$4 names run f
    names=$(ls "$scripts")
    for run in $(seq "$runs"); do
        rm -f "$log"/*
        local args=()
        for f in $names; do args+=(-f "$scripts/$f"); done
        (cd "$log" && pgbench -n -M prepared -c 2 -j 2 -T "$seconds" -l --sampling-rate 0.2 "${args[@]}" >pgbench.out 2>&1) ||
            { cat "$log/pgbench.out" >&2; return 1; }
        cat "$log"/pgbench_log.* | awk -v run="$run" '{n[$4]++; s[$4] += $3} END {for (k in n) print run, k, s[k] / n[k]}'
    done | python3 -c '
import collections, statistics, sys
names = sys.argv[1].split()
latency = collections.defaultdict(dict)
for line in sys.stdin:
    run, script, mean = line.split()
    latency[int(script)][run] = float(mean)
runs = sorted(latency[0])
print("\n| statement | mean latency (us), per run | x the reference (median of runs) |")
print("|---|---|---:|")
for script, name in enumerate(names):
    speed = [latency[0][run] / latency[script][run] for run in runs]
    means = " ".join(f"{latency[script][run]:.0f}" for run in runs)
    print(f"| {name[2:-4]} | {means} | {statistics.median(speed):.2f} |")
' "$names"
}

position_after_first_pass() {
    local position="" page
    while page=$(psql -X -At -c "SELECT position FROM conversation_list('$1', NULL, NULLIF('$position', ''), 100)" | tail -1) &&
        [ -n "$page" ]; do
        position=$page
    done
    echo "$position"
}

# Sourced by the benchmarks that set two builds of the library side by side (builds.sh,
# old_rows.sh): a private cluster of their own, made afresh, with both library files in it.
#   start_two_builds OLD.so NEW.so    with DIR and PORT set: the cluster in DIR/cluster on PORT
#                                     (stopped when the script exits), the files as
#                                     DIR/libs/old.so and new.so, DIR/scripts and DIR/log made,
#                                     and PGHOST, PGPORT, PGUSER, PGDATABASE naming its database
#                                     bench, created empty.
start_two_builds() {
    bash scripts/cluster.sh stop "$DIR/cluster" 2>/dev/null || true
    rm -rf "$DIR"
    bash scripts/cluster.sh start "$DIR/cluster" "$PORT" autovacuum=off shared_buffers=256MB
    trap 'bash scripts/cluster.sh stop "$DIR/cluster"' EXIT
    mkdir -p "$DIR/libs" "$DIR/scripts" "$DIR/log"
    cp "$1" "$DIR/libs/old.so"
    cp "$2" "$DIR/libs/new.so"
    chmod -R a+rX "$DIR/libs"
    export PGHOST=$DIR/cluster PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
    psql -X -q -d postgres -c "CREATE DATABASE bench"
}

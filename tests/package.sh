#!/usr/bin/env bash
# The Debian package, as a DBA gets it:
#   bash tests/package.sh [15|18]      (default: PGCONV_PG, else 15)
# On a shared machine run it under `flock /tmp/pgconv-system.lock`: it writes into PostgreSQL's
# install paths.
# Both versions: builds the package (scripts/package.sh), validates META.json
# (packaging/check_meta.py), checks the package's name, fields, file list and paths, copyright
# and changelog, and builds the previous release's package (the newest of sql/releases: its
# install script with this library, which serves it until ALTER EXTENSION UPDATE).
# 15: with a PATH that holds what a database server has (no cargo, rustc, gcc or cc), installs the
#   previous release's package with dpkg -i, creates the extension in a fresh cluster and fills it;
#   installs this release's package over it with dpkg -i while the server runs; restarts;
#   ALTER EXTENSION UPDATE (every row kept, the new version); runs the SQL regression files
#   against the package's extension; removes it with dpkg -r: not one of its files is left.
# 18: Debian 12 has no PostgreSQL 18 package for it to depend on, so the same steps copy the
#   package's files into the 18 installation (its pg_config's pkglibdir and sharedir) and take them
#   out again.
# The pg_conversation files found in those paths (a `cargo pgrx install`'s) are moved aside first
# and put back at the end, also on failure. Its cluster: /tmp/pgconv-pkg-test-pg<major>, port
# 56000 (15) or 56001 (18).
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:-${PGCONV_PG:-15}}
case $major in
15 | 18) PGCONV_PG=$major ;;
*) echo "usage: $0 [15|18]" >&2; exit 2 ;;
esac
source scripts/pg.sh
fail() { echo "FAILED: $*"; exit 1; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
DIR=/tmp/pgconv-pkg-test-pg$PG_MAJOR
SAVED=/tmp/pgconv-pkg-saved-pg$PG_MAJOR
PORT=$((56000 + PG_PORT_OFFSET / 100))
export PGHOST=$DIR/cluster PGPORT=$PORT PGUSER=postgres
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
# The previous release: the newest in sql/releases before this one (this one's own script may be
# frozen there already).
previous=$(ls sql/releases | sed -n 's/^pg_conversation--\(.*\)\.sql$/\1/p' | sort -V | while read -r release; do
    if dpkg --compare-versions "$release" lt "$version"; then echo "$release"; fi; done | tail -1)
[ -n "$previous" ] || fail "no release before $version in sql/releases"
package=postgresql-$PG_MAJOR-pg-conversation
arch=$(dpkg --print-architecture)
LIBDIR=$(pg_config --pkglibdir)
EXTDIR=$(pg_config --sharedir)/extension
PG_REGRESS=$(cd "$(dirname "$(pg_config --pgxs)")/../test/regress" && pwd)/pg_regress
DEB_LIBDIR=/usr/lib/postgresql/$PG_MAJOR/lib
DEB_EXTDIR=/usr/share/postgresql/$PG_MAJOR/extension
DEB_DOCDIR=/usr/share/doc/$package
if [ "$PG_MAJOR" = 15 ]; then
    [ "$LIBDIR:$EXTDIR" = "$DEB_LIBDIR:$DEB_EXTDIR" ] ||
        fail "Debian's PostgreSQL 15 is not where its packages install ($LIBDIR, $EXTDIR)"
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = *"ok installed" ]]; then
        fail "$package is installed: this test installs and removes it (dpkg -r $package first)"
    fi
fi
[ ! -e "$SAVED" ] ||
    fail "$SAVED holds the pg_conversation files a killed run moved aside: put them back in $LIBDIR and $EXTDIR, or remove it"

bash scripts/cluster.sh stop "$DIR/cluster" 2>/dev/null || true
rm -rf "$DIR"
mkdir -p "$DIR"

echo "building the package (scripts/package.sh $PG_MAJOR)"
deb=$(bash scripts/package.sh "$PG_MAJOR" | tail -1)

# --- The package, before anything is installed.
python3 packaging/check_meta.py META.json "$version"
[ "$deb" = "target/packages/${package}_${version}_$arch.deb" ] || fail "the package is $deb"
field() { dpkg-deb -f "$1" "$2"; }
[ "$(field "$deb" Package)" = "$package" ] || fail "Package: $(field "$deb" Package)"
[ "$(field "$deb" Version)" = "$version" ] || fail "Version: $(field "$deb" Version), not Cargo.toml's $version"
[ "$(field "$deb" Architecture)" = "$arch" ] || fail "Architecture: $(field "$deb" Architecture)"
[[ ", $(field "$deb" Depends)," = *", postgresql-$PG_MAJOR,"* ]] || fail "Depends: $(field "$deb" Depends)"
[ "$(field "$deb" Description | wc -l)" -gt 3 ] || fail "no long description"
[ -n "$(field "$deb" Maintainer)" ] || fail "no Maintainer"

# Files (not directories) of a package, as absolute paths, sorted.
files_of() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ { print substr($6, 2) }' | LC_ALL=C sort; }
expected_files() { # VERSION: the files its package must hold
    local script to
    {
        echo "$DEB_LIBDIR/pg_conversation.so"
        echo "$DEB_EXTDIR/pg_conversation.control"
        echo "$DEB_EXTDIR/pg_conversation--$1.sql"
        for script in sql/pg_conversation--*--*.sql; do
            to=${script##*--}; to=${to%.sql}
            if dpkg --compare-versions "$to" le "$1"; then echo "$DEB_EXTDIR/$(basename "$script")"; fi
        done
        echo "$DEB_DOCDIR/changelog.gz"
        echo "$DEB_DOCDIR/copyright"
    } | LC_ALL=C sort
}
if ! diff -u <(expected_files "$version") <(files_of "$deb") >"$DIR/files.diff"; then
    cat "$DIR/files.diff"; fail "the package's files are not the ones expected (- expected, + packaged)"
fi
[ -z "$(dpkg-deb -c "$deb" | awk '$2 != "root/root"')" ] || fail "files not owned by root"
# Every upgrade script of sql/ (the package holds them all).
for script in sql/pg_conversation--*--*.sql; do
    grep -qx "$DEB_EXTDIR/$(basename "$script")" <(files_of "$deb") || fail "$script is not in the package"
done
dpkg-deb -x "$deb" "$DIR/current"
for script in "$DIR/current$DEB_EXTDIR"/pg_conversation--*--*.sql; do
    cmp -s "$script" "sql/$(basename "$script")" || fail "$(basename "$script") differs from sql/'s"
done
control=$DIR/current$DEB_EXTDIR/pg_conversation.control
grep -qx "default_version = '$version'" "$control" || fail "the control file's default_version is not $version"
grep -qx "module_pathname = '\$libdir/pg_conversation'" "$control" || fail "the control file's module_pathname"
grep -q "Pg_magic_func" "$DIR/current$DEB_LIBDIR/pg_conversation.so" || fail "the library has no Pg_magic_func"
grep -qx "License: MIT" "$DIR/current$DEB_DOCDIR/copyright" &&
    grep -q "Permission is hereby granted" "$DIR/current$DEB_DOCDIR/copyright" || fail "the copyright file has no MIT license"
gunzip -c "$DIR/current$DEB_DOCDIR/changelog.gz" >"$DIR/changelog"
[ "$(dpkg-parsechangelog -l "$DIR/changelog" -S Source)" = "$package" ] &&
    [ "$(dpkg-parsechangelog -l "$DIR/changelog" -S Version)" = "$version" ] || fail "the changelog's newest entry is not $package $version"
releases=$(sed -n 's/^## \([0-9][0-9.]*\) (.*/\1/p' CHANGELOG.md | while read -r r; do
    if dpkg --compare-versions "$r" le "$version"; then echo "$r"; fi; done | xargs)
entries=$(dpkg-parsechangelog -l "$DIR/changelog" --all --format rfc822 | sed -n 's/^Version: //p' | xargs)
[ "$entries" = "$releases" ] || fail "the changelog holds $entries, not $releases"
echo "ok: $deb: $(files_of "$deb" | wc -l) files, Depends: $(field "$deb" Depends)"

# --- The previous release's package: its install script, the upgrade scripts up to it, a control
# file naming it, and this library.
mkdir -p "$DIR/previous-ext"
cp "sql/releases/pg_conversation--$previous.sql" "$DIR/previous-ext/"
for script in sql/pg_conversation--*--*.sql; do
    to=${script##*--}; to=${to%.sql}
    if dpkg --compare-versions "$to" le "$previous"; then cp "$script" "$DIR/previous-ext/"; fi
done
sed "s/^default_version = .*/default_version = '$previous'/" "$control" >"$DIR/previous-ext/pg_conversation.control"
previous_deb=$(bash packaging/deb.sh "$PG_MAJOR" "$previous" "$DIR/current$DEB_LIBDIR/pg_conversation.so" \
    "$DIR/previous-ext" "$DIR/previous" | tail -1)
diff -u <(expected_files "$previous") <(files_of "$previous_deb") || fail "the files of the $previous package"
echo "ok: the previous release's package, $previous_deb"

# --- Installing and removing. Where a package's file lands here: 15, where dpkg puts it; 18, the
# library and extension files in the wheel's directories, the documentation nowhere.
installed_path() {
    case $1 in
    "$DEB_LIBDIR"/*) echo "$LIBDIR/${1#"$DEB_LIBDIR"/}" ;;
    "$DEB_EXTDIR"/*) echo "$EXTDIR/${1#"$DEB_EXTDIR"/}" ;;
    *) [ "$PG_MAJOR" = 18 ] || echo "$1" ;;
    esac
}
ours() { find "$LIBDIR" "$EXTDIR" -maxdepth 1 -name 'pg_conversation*' | LC_ALL=C sort; }
# 18: the files copied in, so that the next install or the removal takes them out (as dpkg does).
COPIED=$DIR/copied.list
: >"$COPIED"
install_package() { # DEB VERSION
    local file target
    if [ "$PG_MAJOR" = 15 ]; then
        dpkg -i "$1" >"$DIR/dpkg.log" 2>&1 || { cat "$DIR/dpkg.log"; fail "dpkg -i $1"; }
        # Maintainer scripts it triggers (postgresql-common's) find what they run on this PATH.
        if grep "not found" "$DIR/dpkg.log"; then fail "dpkg -i $1: a program is missing from PATH"; fi
        [ "$(dpkg-query -W -f='${Status} ${Version}' "$package")" = "install ok installed $2" ] ||
            fail "after dpkg -i: $(dpkg-query -W -f='${Status} ${Version}' "$package")"
        [ -z "$(dpkg --verify "$package")" ] || { dpkg --verify "$package"; fail "dpkg --verify $package"; }
    else
        rm -rf "$DIR/unpacked"
        dpkg-deb -x "$1" "$DIR/unpacked"
        while read -r target; do rm -f "$target"; done <"$COPIED"
        : >"$COPIED"
        for file in $(files_of "$1"); do
            target=$(installed_path "$file")
            [ -n "$target" ] || continue
            # A new file renamed into place, as dpkg does: a running server keeps the old one.
            cp "$DIR/unpacked$file" "$target.pkg-new"
            mv -f "$target.pkg-new" "$target"
            echo "$target" >>"$COPIED"
        done
    fi
    for file in $(files_of "$1"); do
        target=$(installed_path "$file")
        [ -z "$target" ] || [ -f "$target" ] || fail "$file of the $2 package is not installed ($target)"
    done
    [ "$(ours)" = "$(for file in $(files_of "$1"); do installed_path "$file"; done | grep -v "^/usr/share/doc/" | LC_ALL=C sort)" ] ||
        fail "after installing $2, the pg_conversation files here are: $(ours | xargs)"
}
remove_package() {
    local target
    if [ "$PG_MAJOR" = 15 ]; then
        dpkg -r "$package" >"$DIR/dpkg.log" 2>&1 || { cat "$DIR/dpkg.log"; return 1; }
        if grep "not found" "$DIR/dpkg.log"; then echo "dpkg -r: a program is missing from PATH"; return 1; fi
    else
        while read -r target; do rm -f "$target"; done <"$COPIED"
        : >"$COPIED"
    fi
}
package_installed() {
    if [ "$PG_MAJOR" = 15 ]; then [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = *"ok installed" ]]
    else [ -s "$COPIED" ]; fi
}

# What was here before (the extension as `cargo pgrx install` left it), moved aside and put back
# however this ends.
restore() {
    set +e
    bash scripts/cluster.sh stop "$DIR/cluster" >/dev/null 2>&1
    package_installed && remove_package
    if [ -d "$SAVED" ]; then
        find "$SAVED/lib" -mindepth 1 -maxdepth 1 -exec mv -f {} "$LIBDIR/" \;
        find "$SAVED/extension" -mindepth 1 -maxdepth 1 -exec mv -f {} "$EXTDIR/" \;
        rmdir "$SAVED/lib" "$SAVED/extension" "$SAVED" || echo "left in $SAVED: $(find "$SAVED")"
    fi
}
trap restore EXIT
mkdir -p "$SAVED/lib" "$SAVED/extension"
find "$LIBDIR" -maxdepth 1 -name 'pg_conversation*' -exec mv {} "$SAVED/lib/" \;
find "$EXTDIR" -maxdepth 1 -name 'pg_conversation*' -exec mv {} "$SAVED/extension/" \;
echo "moved aside for the test: $(find "$SAVED" -type f | wc -l) pg_conversation files of $LIBDIR and $EXTDIR"
[ -z "$(ours)" ] || fail "pg_conversation files left in $LIBDIR or $EXTDIR: $(ours | xargs)"

# From here on, only what a database server has: the server's binaries and the system's tools.
TOOLS=$DIR/path
mkdir -p "$TOOLS"
for tool in bash sh env sudo id dpkg dpkg-deb dpkg-query dpkg-split dpkg-trigger tar rm diff ldconfig \
    start-stop-daemon cat cp mv ln mkdir rmdir chown chmod ls find grep sed sort head tail wc tr xargs \
    cmp mktemp sleep touch date basename dirname readlink awk pg_updatedicts; do
    path=$(command -v "$tool") || { [ "$tool" = pg_updatedicts ] && continue; fail "$tool is not on PATH"; }
    ln -s "$path" "$TOOLS/$tool"
done
export PATH=$PG_BINDIR:$TOOLS PGCONV_PATH0=$TOOLS
hash -r
for tool in cargo rustc gcc cc make; do
    if command -v "$tool" >/dev/null; then fail "$tool is on PATH ($(command -v "$tool"))"; fi
done
echo "ok: PATH=$PATH (no cargo, rustc, gcc, cc or make)"

# The previous release, installed, created and filled, with the library preloaded as in production.
install_package "$previous_deb" "$previous"
echo "ok: $previous installed"
bash scripts/cluster.sh start "$DIR/cluster" "$PORT" shared_preload_libraries=pg_conversation
sql -c "CREATE DATABASE pgconv_pkg_upgrade"
sql -d pgconv_pkg_upgrade -c "CREATE EXTENSION pg_conversation"
extversion() { sql -d "$1" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'"; }
[ "$(extversion pgconv_pkg_upgrade)" = "$previous" ] || fail "CREATE EXTENSION made $(extversion pgconv_pkg_upgrade), not $previous"
sql -d pgconv_pkg_upgrade >/dev/null <<'SQL'
SELECT count(*) FROM generate_series(1, 1000) AS i,
    get_or_create_conversation('u' || (i % 50), 'g' || i || CASE WHEN i % 4 = 0 THEN '____cmd' ELSE '' END, i % 3);
UPDATE conversation SET unread_count = id % 7, readed_to_msg_seq = id * 3, last_msg_seq = id * 3 + id % 7,
    deleted_at_msg_seq = id % 2, updated_at = created_at + make_interval(secs => id);
SQL
fingerprint="SELECT count(*) || ' ' || md5(string_agg((c.id, c.uid, c.channel_id, c.channel_type, c.unread_count,
    c.readed_to_msg_seq, c.last_msg_seq, c.deleted_at_msg_seq, c.created_at, c.updated_at)::text, ',' ORDER BY id)) FROM conversation c"
before=$(sql -d pgconv_pkg_upgrade -c "$fingerprint")
[ "${before%% *}" = 1000 ] || fail "filled ${before%% *} rows, not 1000"

# This release over it, while the server runs with the old library preloaded: the file is
# replaced, not overwritten, so the server goes on.
install_package "$deb" "$version"
[ ! -e "$EXTDIR/pg_conversation--$previous.sql" ] || fail "the $previous install script was left behind by the upgrade"
[ "$(sql -d pgconv_pkg_upgrade -c "SELECT count(*) FROM conversation")" = 1000 ] ||
    fail "the running server lost its rows when the package was upgraded"
echo "ok: $version installed over $previous while the server ran"
bash scripts/cluster.sh stop "$DIR/cluster"
bash scripts/cluster.sh start "$DIR/cluster" "$PORT" shared_preload_libraries=pg_conversation
sql -d pgconv_pkg_upgrade -c "ALTER EXTENSION pg_conversation UPDATE"
[ "$(extversion pgconv_pkg_upgrade)" = "$version" ] || fail "ALTER EXTENSION UPDATE made $(extversion pgconv_pkg_upgrade), not $version"
after=$(sql -d pgconv_pkg_upgrade -c "$fingerprint")
[ "$after" = "$before" ] || fail "the rows changed in the update ($after vs $before)"
old_id=$(sql -d pgconv_pkg_upgrade -c "SELECT id FROM conversation WHERE uid = 'u1' AND channel_id = 'g1' AND channel_type = 1")
[ "$(sql -d pgconv_pkg_upgrade -c "SELECT id FROM get_or_create_conversation('u1', 'g1', 1)")" = "$old_id" ] ||
    fail "get_or_create_conversation gave u1 a new id after the update"
listed=$(sql -d pgconv_pkg_upgrade -c "SELECT count(*) FROM conversation_list('u7', NULL, NULL, 1000)")
[ "$listed" = "$(sql -d pgconv_pkg_upgrade -c "SELECT count(*) FROM conversation WHERE uid = 'u7'")" ] ||
    fail "conversation_list('u7') listed $listed rows"
echo "ok: ALTER EXTENSION pg_conversation UPDATE: $previous -> $version, all 1000 rows kept"

# A fresh database on the package's extension, and the SQL regression files against it.
sql -c "CREATE DATABASE pgconv_pkg_fresh"
sql -d pgconv_pkg_fresh -c "CREATE EXTENSION pg_conversation"
[ "$(extversion pgconv_pkg_fresh)" = "$version" ] || fail "a fresh CREATE EXTENSION made $(extversion pgconv_pkg_fresh)"
cp -r tests/regress "$DIR/regress"
chown -R postgres:postgres "$DIR/regress"
if ! (cd "$DIR/regress" && sudo -u postgres env PATH="$PATH" "$PG_REGRESS" --host="$PGHOST" --port="$PGPORT" \
    --user=postgres --bindir="$PG_BINDIR" --inputdir=. --outputdir=. --load-extension=pg_conversation \
    --dbname=pgconv_pkg_regress --schedule=schedule); then
    cat "$DIR/regress/regression.diffs"; fail "the SQL regression files, against the package"
fi
bash scripts/cluster.sh stop "$DIR/cluster"

# Removed: not one file of either package is left.
remove_package || fail "removing the package"
if [ "$PG_MAJOR" = 15 ]; then
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = *"ok installed" ]]; then
        fail "after dpkg -r: $(dpkg-query -W -f='${Status}' "$package")"
    fi
    [ ! -e "$DEB_DOCDIR" ] || fail "$DEB_DOCDIR is left after dpkg -r"
fi
for file in $(files_of "$deb") $(files_of "$previous_deb"); do
    target=$(installed_path "$file")
    [ -z "$target" ] || [ ! -e "$target" ] || fail "$target is left after removing the package"
done
[ -z "$(ours)" ] || fail "pg_conversation files left after removing the package: $(ours | xargs)"
echo "ok: removed; no file of the package is left"

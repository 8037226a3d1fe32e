#!/usr/bin/env bash
# Assembles one Debian package of pg_conversation from files already built, in the paths of
# Debian's and the PostgreSQL project's (apt.postgresql.org) packages:
#   bash packaging/deb.sh MAJOR VERSION LIBRARY EXTDIR OUTDIR
# MAJOR: 15 | 18. LIBRARY: the built pg_conversation.so. EXTDIR: the extension's control file and
# SQL scripts, as `cargo pgrx package` lays them out. Writes
# OUTDIR/postgresql-MAJOR-pg-conversation_VERSION_ARCH.deb and prints its path.
# scripts/package.sh calls it for this checkout's release, tests/package.sh for the previous
# release's package (the upgrade test). Before packaging it checks that the control file's
# default_version is VERSION, that the install script of VERSION is there, and that every upgrade
# script of sql/ up to VERSION is there as it is in sql/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# = 5 ] || { echo "usage: $0 MAJOR VERSION LIBRARY EXTDIR OUTDIR" >&2; exit 2; }
major=$1 version=$2 library=$3 extdir=$4 outdir=$5
fail() { echo "packaging: $*" >&2; exit 1; }
umask 022

package=postgresql-$major-pg-conversation
arch=$(dpkg --print-architecture)
maintainer=$(sed -n 's/^Maintainer: //p' "$ROOT/packaging/control")
[ -f "$library" ] || fail "no library at $library"

# What goes into the extension directory: exactly the control file, VERSION's install script and
# the upgrade scripts of sql/ that end at VERSION or before (a later one would name a version the
# package cannot install).
[ "$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$extdir/pg_conversation.control")" = "$version" ] ||
    fail "$extdir/pg_conversation.control: default_version is not '$version'"
expected=(pg_conversation.control "pg_conversation--$version.sql")
for script in "$ROOT"/sql/pg_conversation--*--*.sql; do
    name=$(basename "$script")
    to=${name##*--}; to=${to%.sql}
    dpkg --compare-versions "$to" le "$version" || continue
    cmp -s "$script" "$extdir/$name" || fail "$extdir/$name is missing or differs from sql/$name"
    expected+=("$name")
done
actual=$(cd "$extdir" && ls | sort)
[ "$actual" = "$(printf '%s\n' "${expected[@]}" | sort)" ] ||
    fail "$extdir holds $(echo $actual), not $(printf '%s\n' "${expected[@]}" | sort | xargs)"

# The changelog, in Debian's format, from CHANGELOG.md's sections up to VERSION ("## 0.5.0
# (2026-11-29)" and "- " items, continued by indented lines).
releases=$(sed -n 's/^## \([0-9][0-9.]*\) (\([0-9-]*\))$/\1 \2/p' "$ROOT/CHANGELOG.md")
grep -q "^$version " <<<"$releases" || fail "CHANGELOG.md has no section '## $version (YYYY-MM-DD)'"
changelog() {
    local release date
    while read -r release date; do
        dpkg --compare-versions "$release" le "$version" || continue
        echo "$package ($release) unstable; urgency=medium"
        echo
        awk -v v="$release" '
            /^## / { on = ($2 == v); next }
            !on || !NF { next }
            /^- / { sub(/^- /, "  * "); print; next }
            /^  [^ ]/ { sub(/^  /, "    "); print; next }
            { print "CHANGELOG.md, " v ": not an item: " $0 > "/dev/stderr"; exit 1 }
        ' "$ROOT/CHANGELOG.md"
        echo
        echo " -- $maintainer  $(LC_ALL=C TZ=UTC date -R -d "$date")"
        echo
    done <<<"$releases"
}
# Every file dated by its release, so the same inputs make the same package.
release_date=$(grep "^$version " <<<"$releases" | cut -d' ' -f2)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(TZ=UTC date -d "$release_date" +%s)}

# Depends: the server, and the packages of the shared libraries the library links to (libc6 at
# the newest symbol version it uses).
depends=(postgresql-$major)
glibc=$(objdump -T "$library" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
for needed in $(objdump -p "$library" | awk '$1 == "NEEDED" { print $2 }'); do
    path=$(ldconfig -p | awk -v lib="$needed" '$1 == lib && !path { path = $NF } END { print path }')
    [ -n "$path" ] || fail "the library needs $needed, which is not a system library"
    owner=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null) ||
        fail "the library needs $path, which no package holds"
    owner=${owner%%:*}
    [ "$owner" = libc6 ] && [ -n "$glibc" ] && owner="libc6 (>= $glibc)"
    [[ " ${depends[*]/%/,} " = *" $owner, "* ]] || depends+=("$owner")
done

# The tree: the library, stripped as Debian's are; the extension's files; the documentation.
work=$outdir/.build-${package}_$version
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
libdir=$work/usr/lib/postgresql/$major/lib
sharedir=$work/usr/share/postgresql/$major/extension
docdir=$work/usr/share/doc/$package
mkdir -p "$libdir" "$sharedir" "$docdir" "$work/DEBIAN"
strip --strip-unneeded -o "$libdir/pg_conversation.so" "$library"
chmod 644 "$libdir/pg_conversation.so"
for name in "${expected[@]}"; do install -m 644 "$extdir/$name" "$sharedir/$name"; done
changelog | gzip -9n >"$docdir/changelog.gz"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: pg_conversation"
    echo "Upstream-Contact: $maintainer"
    echo
    echo "Files: *"
    echo "Copyright: $(sed -n 's/^Copyright (c) //p' "$ROOT/LICENSE")"
    echo "License: MIT"
    echo "Comment: The library links in Rust crates from crates.io (pgrx, serde, serde_json and"
    echo " what they depend on), at the versions in the source's Cargo.lock, each under its own"
    echo " license (MIT, or MIT or Apache-2.0 for most)."
    echo
    echo "License: MIT"
    sed -n '/^Permission/,$p' "$ROOT/LICENSE" | sed 's/^$/./; s/^/ /'
} >"$docdir/copyright"

sed -e "s/@PACKAGE@/$package/; s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@MAJOR@/$major/g" \
    -e "s/@SIZE@/$(du -sk "$work/usr" | cut -f1)/; s/@DEPENDS@/$(IFS=,; echo "${depends[*]}" | sed 's/,/, /g')/" \
    "$ROOT/packaging/control" >"$work/DEBIAN/control"
(cd "$work" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$work/DEBIAN/md5sums"
chmod 644 "$work/DEBIAN/control" "$work/DEBIAN/md5sums"
find "$work" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$outdir"
deb=$outdir/${package}_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$work" "$deb" >/dev/null
echo "$deb"

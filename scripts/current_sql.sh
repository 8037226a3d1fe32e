#!/usr/bin/env bash
# The extension's SQL as it stands, in one file a DBA can read: sql/current/pg_conversation.sql,
# every object a fresh CREATE EXTENSION pg_conversation makes (sequences, tables with their
# columns, constraints, indexes, triggers and comments, types, views, functions and procedures,
# grants), sorted by kind and name. CREATE EXTENSION itself runs sql/install.sql and every upgrade
# script after it; this file is what they add up to, for reading, not for running.
#   bash scripts/current_sql.sh                 refresh the file (after cargo pgrx install on 15 and 18)
#   bash scripts/current_sql.sh --check         fail if the file differs from a fresh install's objects
#   bash scripts/current_sql.sh [--check] 15    one version (default: 15 and 18, which must agree)
#   bash scripts/current_sql.sh --check --here  in the cluster PGHOST, PGPORT and PGUSER name (the
#                                               test suite's), on the version PGCONV_PG selects
# It reads the extension installed in the server, not the checkout: install it first (scripts/test.sh
# does before its suites). Without --here, each version runs in a private cluster of its own,
# PGCONV_CURRENT_SQL_DIR (default /tmp/pg_conversation-current-sql, plus -pg18 for 18) on port
# PGCONV_CURRENT_SQL_PORT (default 55880), stopped afterwards.
#
# PostgreSQL 15 and 18 describe the same objects alike once the differences that are not the
# extension's are left out, so there is one file for both: 18's catalogued NOT NULL constraints are
# shown as NOT NULL on the column, as 15's; the row types of tables and the array types, which 18
# records as members of the extension and 15 does not, are left out; so are the owner's own
# privileges (18 adds MAINTAIN) and Debian 15's pg_attver column option. Everything is shown
# schema-qualified, as installed in a fresh database's public schema.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
FILE=sql/current/pg_conversation.sql
REFRESH="run bash scripts/current_sql.sh to refresh it (after cargo pgrx install on 15 and 18)"
check=false here=false versions=()
for arg in "$@"; do
    case $arg in
    --check) check=true ;;
    --here) here=true ;;
    15 | 18) versions+=("$arg") ;;
    *) echo "usage: $0 [--check] [--here] [15] [18]" >&2; exit 2 ;;
    esac
done
$here && versions=("$PGCONV_PG")
[ ${#versions[@]} -gt 0 ] || read -ra versions <<<"$PGCONV_PG_VERSIONS"
current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# One statement, one column: the file's text. Sorted by the kind's place, then the name, in the
# "C" collation, so that the file does not depend on the server's locale.
read -r -d '' DESCRIBE <<'SQL' || true
WITH ext AS (
    SELECT oid, extversion FROM pg_extension WHERE extname = 'pg_conversation'
), members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
-- Grants to other roles than the owner, as GRANT statements; a default taken away from PUBLIC as
-- REVOKE. kind: TABLE, SEQUENCE, FUNCTION, PROCEDURE, TYPE; acl NULL: the defaults.
grants(obj, kind, name, acl, owner, public_default) AS (
    SELECT c.oid, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text,
           c.relacl, c.relowner, NULL::text
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    UNION ALL
    SELECT p.oid, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text,
           p.proacl, p.proowner, 'EXECUTE'
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    SELECT t.oid, 'TYPE', format_type(t.oid, NULL), t.typacl, t.typowner, 'USAGE'
    FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
),
grant_text(obj, text) AS (
    SELECT g.obj, string_agg(s, E'\n' ORDER BY s COLLATE "C")
    FROM grants g, LATERAL (
        SELECT format('GRANT %s ON %s %s TO %s;', string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type COLLATE "C"),
                      g.kind, g.name, CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END)
        FROM aclexplode(g.acl) a
        WHERE a.grantee <> g.owner AND NOT (a.grantee = 0 AND a.privilege_type IS NOT DISTINCT FROM g.public_default)
        GROUP BY a.grantee
        UNION ALL
        SELECT format('REVOKE %s ON %s %s FROM PUBLIC;', g.public_default, g.kind, g.name)
        WHERE g.acl IS NOT NULL AND g.public_default IS NOT NULL
          AND NOT EXISTS (SELECT FROM aclexplode(g.acl) a WHERE a.grantee = 0 AND a.privilege_type = g.public_default)
    ) AS x(s)
    GROUP BY g.obj
),
comment_text(objoid, classoid, objsubid, what) AS (
    SELECT objoid, classoid, objsubid, format('IS %L;', description) FROM pg_description
),
-- Column options other than Debian 15's pg_attver.
attopts(attrelid, attnum, opts) AS (
    SELECT a.attrelid, a.attnum, string_agg(o, ', ' ORDER BY o COLLATE "C")
    FROM pg_attribute a, unnest(a.attoptions) AS o
    WHERE o NOT LIKE 'pg_attver=%'
    GROUP BY a.attrelid, a.attnum
),
objects(place, name, text) AS (
    -- Sequences.
    SELECT 1, c.oid::regclass::text,
        format(E'CREATE SEQUENCE %s AS %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s;',
               c.oid::regclass, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
               s.seqcache, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END)
        || coalesce((SELECT format(E'\nALTER SEQUENCE %s OWNED BY %s.%I;', c.oid::regclass, d.refobjid::regclass, a.attname)
                     FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                       AND d.refclassid = 'pg_class'::regclass), '')
        || coalesce(E'\n' || (SELECT format('COMMENT ON SEQUENCE %s %s', c.oid::regclass, ct.what) FROM comment_text ct
                              WHERE ct.objoid = c.oid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid = 0), '')
        || coalesce(E'\n' || (SELECT text FROM grant_text WHERE obj = c.oid), '')
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    JOIN pg_sequence s ON s.seqrelid = c.oid
    UNION ALL
    -- Tables: columns, constraints, storage options; then indexes (those of no constraint),
    -- triggers, comments, grants, and whether pg_dump keeps its rows.
    SELECT 2, c.oid::regclass::text,
        format(E'CREATE %sTABLE %s (\n%s\n)%s%s;', CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END,
               c.oid::regclass,
               (SELECT string_agg(line, E',\n' ORDER BY ord) FROM (
                    SELECT a.attnum AS ord, '    ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attcollation <> t.typcollation
                                THEN ' COLLATE ' || (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation)
                                ELSE '' END
                        || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                                WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                                ELSE '' END
                        || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                              WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
                        || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    UNION ALL
                    -- 18 catalogues NOT NULL as constraints ('n'); they are the columns' NOT NULL above.
                    SELECT 100000 + row_number() OVER (ORDER BY k.contype = 'p' DESC, k.conname COLLATE "C"),
                           format('    CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid))
                    FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype <> 'n'
                ) AS l(ord, line)),
               CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(c.oid) ELSE '' END,
               CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END)
        || coalesce((SELECT string_agg(format(E'\nALTER TABLE %s ALTER COLUMN %I SET (%s);', c.oid::regclass, a.attname, o.opts),
                                       '' ORDER BY a.attnum)
                     FROM attopts o JOIN pg_attribute a ON a.attrelid = o.attrelid AND a.attnum = o.attnum
                     WHERE o.attrelid = c.oid), '')
        || coalesce((SELECT string_agg(E'\n' || pg_get_indexdef(i.indexrelid) || ';', '' ORDER BY i.indexrelid::regclass::text COLLATE "C")
                     FROM pg_index i WHERE i.indrelid = c.oid
                       AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = c.oid)), '')
        || coalesce((SELECT string_agg(E'\n' || pg_get_triggerdef(tg.oid, true) || ';'
                                       || CASE tg.tgenabled WHEN 'O' THEN ''
                                          ELSE format(E'\nALTER TABLE %s %s TRIGGER %I;', c.oid::regclass,
                                                      CASE tg.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                                                        WHEN 'R' THEN 'ENABLE REPLICA' END, tg.tgname) END,
                                       '' ORDER BY tg.tgname COLLATE "C")
                     FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), '')
        || coalesce((SELECT string_agg(E'\n' || s, '' ORDER BY s COLLATE "C") FROM (
                        SELECT format('COMMENT ON TABLE %s %s', c.oid::regclass, ct.what) FROM comment_text ct
                        WHERE ct.objoid = c.oid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid = 0
                        UNION ALL
                        SELECT format('COMMENT ON COLUMN %s.%I %s', c.oid::regclass, a.attname, ct.what)
                        FROM comment_text ct JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ct.objsubid
                        WHERE ct.objoid = c.oid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid > 0
                        UNION ALL
                        SELECT format('COMMENT ON CONSTRAINT %I ON %s %s', k.conname, c.oid::regclass, ct.what)
                        FROM pg_constraint k JOIN comment_text ct ON ct.objoid = k.oid AND ct.classoid = 'pg_constraint'::regclass
                        WHERE k.conrelid = c.oid AND k.contype <> 'n'
                        UNION ALL
                        SELECT format('COMMENT ON INDEX %s %s', i.indexrelid::regclass, ct.what)
                        FROM pg_index i JOIN comment_text ct ON ct.objoid = i.indexrelid AND ct.classoid = 'pg_class'::regclass
                        WHERE i.indrelid = c.oid
                        UNION ALL
                        SELECT format('COMMENT ON TRIGGER %I ON %s %s', tg.tgname, c.oid::regclass, ct.what)
                        FROM pg_trigger tg JOIN comment_text ct ON ct.objoid = tg.oid AND ct.classoid = 'pg_trigger'::regclass
                        WHERE tg.tgrelid = c.oid) AS cs(s)), '')
        || coalesce(E'\n' || (SELECT text FROM grant_text WHERE obj = c.oid), '')
        || coalesce((SELECT format(E'\nSELECT pg_catalog.pg_extension_config_dump(%L, %L);', c.oid::regclass::text,
                                   ext.extcondition[array_position(ext.extconfig, c.oid)])
                     FROM pg_extension ext WHERE ext.extname = 'pg_conversation' AND c.oid = ANY (ext.extconfig)), '')
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    WHERE c.relkind IN ('r', 'p')
    UNION ALL
    -- Types: composite (not a table's row type), enum, domain; array types are left out.
    SELECT 3, format_type(t.oid, NULL),
        CASE t.typtype
            WHEN 'c' THEN format(E'CREATE TYPE %s AS (\n%s\n);', format_type(t.oid, NULL),
                (SELECT string_agg('    ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), E',\n' ORDER BY a.attnum)
                 FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
            WHEN 'e' THEN format('CREATE TYPE %s AS ENUM (%s);', format_type(t.oid, NULL),
                (SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid))
            WHEN 'd' THEN format('CREATE DOMAIN %s AS %s%s%s%s;', format_type(t.oid, NULL), format_type(t.typbasetype, t.typtypmod),
                CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END,
                CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END,
                coalesce((SELECT string_agg(format(' CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)), '' ORDER BY k.conname COLLATE "C")
                          FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype <> 'n'), ''))
            ELSE format('-- type %s (typtype %s): not described here', format_type(t.oid, NULL), t.typtype)
        END
        || coalesce((SELECT string_agg(E'\n' || s, '' ORDER BY s COLLATE "C") FROM (
                        SELECT format('COMMENT ON TYPE %s %s', format_type(t.oid, NULL), ct.what) FROM comment_text ct
                        WHERE ct.objoid = t.oid AND ct.classoid = 'pg_type'::regclass
                        UNION ALL
                        SELECT format('COMMENT ON COLUMN %s.%I %s', format_type(t.oid, NULL), a.attname, ct.what)
                        FROM comment_text ct JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum = ct.objsubid
                        WHERE ct.objoid = t.typrelid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid > 0) AS cs(s)), '')
        || coalesce(E'\n' || (SELECT text FROM grant_text WHERE obj = t.oid), '')
    FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    WHERE NOT (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')
      AND NOT (t.typelem <> 0 AND (SELECT typarray FROM pg_type e WHERE e.oid = t.typelem) = t.oid)
    UNION ALL
    -- Views. 15 qualifies the columns of a view over one relation with its name, 16 and later do
    -- not: on 15, a qualifier that is the only one before FROM, with no JOIN after it, is removed.
    SELECT 4, c.oid::regclass::text,
        format(E'CREATE VIEW %s AS\n%s', c.oid::regclass,
               CASE WHEN current_setting('server_version_num')::int >= 160000 THEN v.def
                    ELSE (SELECT CASE WHEN count(DISTINCT q[1]) = 1 AND split_part(v.def, E'\n   FROM ', 2) !~ '\mJOIN\M'
                                      THEN regexp_replace(v.def, '\m' || min(q[1]) || '\.', '', 'g') ELSE v.def END
                          FROM regexp_matches(split_part(v.def, E'\n   FROM ', 1), '(\w+)\.\w', 'g') AS q) END)
        || coalesce((SELECT string_agg(E'\n' || s, '' ORDER BY s COLLATE "C") FROM (
                        SELECT format('COMMENT ON VIEW %s %s', c.oid::regclass, ct.what) FROM comment_text ct
                        WHERE ct.objoid = c.oid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid = 0
                        UNION ALL
                        SELECT format('COMMENT ON COLUMN %s.%I %s', c.oid::regclass, a.attname, ct.what)
                        FROM comment_text ct JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ct.objsubid
                        WHERE ct.objoid = c.oid AND ct.classoid = 'pg_class'::regclass AND ct.objsubid > 0) AS cs(s)), '')
        || coalesce(E'\n' || (SELECT text FROM grant_text WHERE obj = c.oid), '')
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid,
         LATERAL (SELECT pg_get_viewdef(c.oid, true)) AS v(def)
    WHERE c.relkind IN ('v', 'm')
    UNION ALL
    -- Functions and procedures, as PostgreSQL prints them.
    SELECT 5, p.oid::regprocedure::text,
        rtrim(pg_get_functiondef(p.oid), E'\n') || ';'
        || coalesce((SELECT format(E'\nCOMMENT ON %s %s %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                                   p.oid::regprocedure, ct.what)
                     FROM comment_text ct WHERE ct.objoid = p.oid AND ct.classoid = 'pg_proc'::regclass), '')
        || coalesce(E'\n' || (SELECT text FROM grant_text WHERE obj = p.oid), '')
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    -- Anything else the extension owns, named, so that a new kind of object is not silently left out.
    SELECT 6, pg_describe_object(m.classid, m.objid, 0),
        format('-- %s: not described here (scripts/current_sql.sh knows sequences, tables, types, views, functions)',
               pg_describe_object(m.classid, m.objid, 0))
    FROM members m
    WHERE m.classid NOT IN ('pg_class'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass)
       OR (m.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = m.objid) NOT IN ('S', 'r', 'p', 'v', 'm', 'c'))
)
SELECT format(E'-- pg_conversation %s: every object of a fresh CREATE EXTENSION pg_conversation, in schema public.\n'
              '-- Generated by scripts/current_sql.sh from the installed extension; do not edit: run that script to\n'
              '-- refresh it. For reading: CREATE EXTENSION runs sql/install.sql and the upgrade scripts after it,\n'
              '-- and this is what they add up to. Sequences, tables, types, views, then functions and procedures,\n'
              '-- each by name.\n',
              (SELECT extversion FROM ext))
    || string_agg(E'\n' || text || E'\n', '' ORDER BY place, name COLLATE "C")
FROM objects
SQL

# describe VERSION: the file's text from a fresh install on that version, on stdout.
describe() {
    local version=$1 dir port db=pgconv_current_sql status=0
    pg_use "$version"
    if $here; then
        describe_in
    else
        dir=${PGCONV_CURRENT_SQL_DIR:-/tmp/pg_conversation-current-sql}$PG_SUFFIX
        port=${PGCONV_CURRENT_SQL_PORT:-55880}
        bash scripts/cluster.sh start "$dir" "$port" >&2 || return 1
        PGHOST=$dir PGPORT=$port PGUSER=postgres describe_in || status=$?
        bash scripts/cluster.sh stop "$dir" >&2
        return $status
    fi
}
describe_in() {
    local db=pgconv_current_sql installed
    sql() { PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
    sql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >&2 || return 1
    sql -d $db -c "CREATE EXTENSION pg_conversation" >&2 || return 1
    installed=$(sql -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_conversation'")
    if [ "$installed" != "$current" ]; then
        echo "PostgreSQL $PG_MAJOR has pg_conversation $installed installed, the checkout is $current: install it first" \
             "(cargo pgrx install --pg-config $PG_CONFIG)" >&2
        return 1
    fi
    # search_path = pg_catalog: every name comes out schema-qualified, whatever the database's path.
    PGOPTIONS="-c search_path=pg_catalog" sql -d $db -c "$DESCRIBE" || return 1
    sql -d postgres -c "DROP DATABASE $db" >&2
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
first=""
for version in "${versions[@]}"; do
    describe "$version" >"$WORK/$version.sql" || { echo "could not describe the extension on PostgreSQL $version" >&2; exit 1; }
    if [ -n "$first" ] && ! diff -u "$WORK/$first.sql" "$WORK/$version.sql" >"$WORK/versions.diff"; then
        cat "$WORK/versions.diff" >&2
        echo "PostgreSQL $first and $version describe the extension differently (above): scripts/current_sql.sh" \
             "should leave out what is not the extension's" >&2
        exit 1
    fi
    first=${first:-$version}
done

if $check; then
    if ! diff -u "$FILE" "$WORK/$first.sql" >"$WORK/file.diff"; then
        cat "$WORK/file.diff"
        echo "$FILE is not what a fresh install on PostgreSQL ${versions[*]} holds (the diff above, - the file," \
             "+ the install): $REFRESH"
        exit 1
    fi
    echo "$FILE matches a fresh install on PostgreSQL ${versions[*]}"
else
    mkdir -p "$(dirname "$FILE")"
    cp "$WORK/$first.sql" "$FILE"
    echo "wrote $FILE ($(grep -c '^CREATE' "$FILE") objects, from PostgreSQL ${versions[*]})"
fi

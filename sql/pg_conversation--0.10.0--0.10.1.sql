-- pg_conversation 0.10.0 -> 0.10.1: no SQL object changes. The library reads the list faster
-- for users of large channels (CHANGELOG); this script only moves the extension's version.
\echo Use "ALTER EXTENSION pg_conversation UPDATE TO '0.10.1'" to load this file. \quit

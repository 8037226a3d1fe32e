-- Included by the regression files, each in a database of its own (they change the table,
-- roles or encodings): drops and creates :db (with :db_options), connects to it, creates the
-- extension, and error_of(statement), which runs a statement and says 'no error' or
-- 'SQLSTATE: message'. Not a test of its own (the schedule does not list it).
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"db";
CREATE DATABASE :"db" :db_options;
\c :db
\encoding UTF8
CREATE EXTENSION pg_conversation;
RESET client_min_messages;
CREATE FUNCTION error_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

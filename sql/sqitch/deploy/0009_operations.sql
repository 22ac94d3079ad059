-- Deploy flows:0009_operations (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0009_operations.sql
COMMIT;

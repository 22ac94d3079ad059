-- Deploy flows:0001_foundation (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0001_foundation.sql
COMMIT;

-- Deploy flows:0023_sync_speed (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0023_sync_speed.sql
COMMIT;

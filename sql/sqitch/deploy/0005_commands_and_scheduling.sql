-- Deploy flows:0005_commands_and_scheduling (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0005_commands_and_scheduling.sql
COMMIT;

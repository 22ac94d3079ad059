-- Revert flows:0005_commands_and_scheduling (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0005_commands_and_scheduling.rollback.sql
COMMIT;

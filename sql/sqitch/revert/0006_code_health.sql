-- Revert flows:0006_code_health (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0006_code_health.rollback.sql
COMMIT;

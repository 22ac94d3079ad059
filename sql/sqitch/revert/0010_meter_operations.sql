-- Revert flows:0010_meter_operations (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0010_meter_operations.rollback.sql
COMMIT;

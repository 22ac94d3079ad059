-- Revert flows:0003_readings (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0003_readings.rollback.sql
COMMIT;

-- Revert flows:0004_monitoring_and_aggregates (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0004_monitoring_and_aggregates.rollback.sql
COMMIT;

-- Deploy flows:0004_monitoring_and_aggregates (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0004_monitoring_and_aggregates.sql
COMMIT;

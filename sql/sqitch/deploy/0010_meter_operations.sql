-- Deploy flows:0010_meter_operations (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0010_meter_operations.sql
COMMIT;

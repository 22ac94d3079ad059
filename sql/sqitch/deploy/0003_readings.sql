-- Deploy flows:0003_readings (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0003_readings.sql
COMMIT;

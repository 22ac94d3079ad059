-- Deploy flows:0016_billing_write_path (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0016_billing_write_path.sql
COMMIT;

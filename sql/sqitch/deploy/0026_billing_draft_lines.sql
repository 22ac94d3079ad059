-- Deploy flows:0026_billing_draft_lines (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0026_billing_draft_lines.sql
COMMIT;

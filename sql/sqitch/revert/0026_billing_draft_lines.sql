-- Revert flows:0026_billing_draft_lines (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0026_billing_draft_lines.rollback.sql
COMMIT;

-- Revert flows:0024_billing_details_at_issue (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0024_billing_details_at_issue.rollback.sql
COMMIT;

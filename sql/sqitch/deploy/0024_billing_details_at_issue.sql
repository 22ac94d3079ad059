-- Deploy flows:0024_billing_details_at_issue (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0024_billing_details_at_issue.sql
COMMIT;

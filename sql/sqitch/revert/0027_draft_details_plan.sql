-- Revert flows:0027_draft_details_plan (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0027_draft_details_plan.rollback.sql
COMMIT;

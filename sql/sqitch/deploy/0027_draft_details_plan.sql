-- Deploy flows:0027_draft_details_plan (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0027_draft_details_plan.sql
COMMIT;

-- Revert flows:0013_gdpr (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0013_gdpr.rollback.sql
COMMIT;

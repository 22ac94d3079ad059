-- Deploy flows:0013_gdpr (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0013_gdpr.sql
COMMIT;

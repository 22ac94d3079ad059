-- Revert flows:0025_topup_event_clock (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0025_topup_event_clock.rollback.sql
COMMIT;

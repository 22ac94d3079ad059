-- Deploy flows:0025_topup_event_clock (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0025_topup_event_clock.sql
COMMIT;

-- Revert flows:0019_ledger_supply_off (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0019_ledger_supply_off.rollback.sql
COMMIT;

-- Deploy flows:0019_ledger_supply_off (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0019_ledger_supply_off.sql
COMMIT;

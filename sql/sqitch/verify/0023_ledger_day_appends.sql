-- Verify flows:0023_ledger_day_appends
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT p.prosrc LIKE '%flows.append_to_meter_ledger_days(%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'flows.meter_ledger_days_follow_balances()'::regprocedure),
        'the balance trigger recomputes every inserted observation''s day';
    ASSERT flows.append_to_meter_ledger_days('{}', '{}', '{}') IS NULL, 'nothing to append appended something';
END
$$;
ROLLBACK;

-- Verify flows:0021_daily_ledger
BEGIN;
DO $$
BEGIN
    PERFORM meter_id, day, observations, first_at, first_balance, last_at, last_balance, lowest, rises, tail_kwh_a,
            tail_kwh_b, tail_overlapping, tail_after
    FROM flows.meter_ledger_days WHERE false;
    ASSERT (SELECT c.relrowsecurity FROM pg_catalog.pg_class AS c WHERE c.oid = 'flows.meter_ledger_days'::regclass),
        'flows.meter_ledger_days has no row-level security';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid = 'flows.meter_prepay_balance'::regclass AND t.tgname LIKE 'meter_ledger_days_%') = 2,
        'the balances do not keep flows.meter_ledger_days (inserted, changed)';
    ASSERT (SELECT p.prosrc LIKE '%flows.refresh_meter_ledger_days(%' OR pg_catalog.pg_get_functiondef(p.oid)
                LIKE '%refresh_meter_ledger_days(%'
            FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'flows.add_to_interval_rollups(uuid[], timestamptz[], numeric[], numeric[], boolean)'::regprocedure),
        'the half hours'' rollups do not keep flows.meter_ledger_days';
    ASSERT (SELECT p.prosrc LIKE '%flows.meter_ledger_days%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.shadow_ledger(uuid, date, date)'::regprocedure),
        'billing.shadow_ledger does not read flows.meter_ledger_days';
    ASSERT (SELECT p.provolatile = 's' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.split_at(timestamptz, numeric, timestamptz, numeric, timestamptz)'::regprocedure),
        'billing.split_at must be STABLE (inlined)';
    PERFORM meter_id, day, charged FROM billing.prepay_daily_charges('00000000-0000-0000-0000-000000000000',
                                                                      current_date, current_date, '{}');
    PERFORM meter_id, day, residual FROM billing.shadow_ledger_intervals('00000000-0000-0000-0000-000000000000',
                                                                         current_date, current_date, '{}', '{}');
    PERFORM meter_id, day, residual FROM billing.shadow_ledger('00000000-0000-0000-0000-000000000000',
                                                               current_date, current_date);
END
$$;
ROLLBACK;

-- Verify flows:0019_ledger_supply_off
BEGIN;
DO $$
BEGIN
    ASSERT billing.split_at('2026-02-10T23:45:00Z', -0.005, '2026-02-10T12:00:00Z', 3.52, 'infinity')
           = '2026-02-11T00:00:00Z', 'a read that finds the credit run out splits its half hour at its end';
    ASSERT billing.split_at('2026-02-12T12:05:00Z', -1.005, '2026-02-11T23:00:00Z', -0.505, 'infinity')
           = '2026-02-12T12:00:00Z', 'a read that finds the supply still off splits its half hour at its start';
    ASSERT billing.split_at('2026-02-10T23:45:00Z', 1, '2026-02-10T12:00:00Z', 3.52, 'infinity')
           = '2026-02-10T23:45:00Z', 'a read with credit left splits its half hour at its time';
    ASSERT pg_catalog.pg_get_functiondef('billing.shadow_ledger(uuid, date, date)'::regprocedure) ~ 'split_at',
        'the whole-day ledger splits where billing.split_at says';
END
$$;
ROLLBACK;

-- Verify flows:0015_reconciliation
BEGIN;
DO $$
BEGIN
    PERFORM esco, topup_grace, tolerance FROM billing.reconciliation_settings WHERE false;
    PERFORM meter_id, esco, amount, as_of FROM billing.prepay_debts WHERE false;
    PERFORM esco, exception_key, kind, status, note, decided_by FROM billing.reconciliation_decisions WHERE false;
    PERFORM meter_id, valid_from, valid_to, unit_rate_a, unit_rate_b, standing_charge FROM billing.meter_tariff_periods
        WHERE false;
    PERFORM esco, day, kind, meter_id, account_id, amount, evidence FROM api.reconciliation_exceptions WHERE false;
    PERFORM esco, day, payments, payments_matched, exceptions FROM api.reconciliation_days WHERE false;
    PERFORM meter_id, day, residual, finding FROM api.shadow_ledger_days WHERE false;
    ASSERT pg_catalog.to_regprocedure('billing.shadow_ledger_intervals(uuid, date, date, uuid[])') IS NOT NULL,
        'billing.shadow_ledger_intervals is missing';
    ASSERT pg_catalog.to_regprocedure('billing.prepay_daily_charges(uuid, date, date)') IS NOT NULL,
        'billing.prepay_daily_charges is missing';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'billing.reconciliation_decisions'::regclass),
        'reconciliation decisions are tenant data';
    ASSERT pg_catalog.to_regprocedure('api.reconciliation(text, date)') IS NOT NULL, 'api.reconciliation is missing';
END
$$;
ROLLBACK;

-- Verify flows:0007_billing
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, fullname, email, status, invite_token, invite_expires_at FROM billing.customers WHERE false;
    PERFORM id, esco, account_number, type, status, property, meter_id FROM billing.accounts WHERE false;
    PERFORM id, customer_id, account_id, role, start_time, end_time, move_out_reads
    FROM billing.customer_accounts WHERE false;
    PERFORM region, period_start, unit_rate, standing_charge FROM billing.benchmark_tariffs WHERE false;
    PERFORM id, number, status, net, vat, total FROM billing.invoices WHERE false;
    PERFORM * FROM api.monthly_costs WHERE false;
    ASSERT billing.round_half_up(0.125, 2) = 0.13 AND billing.round_half_up(-0.125, 2) = -0.13,
        'rounding is not half-up';
    ASSERT billing.uk_days('2026-10-25T00:00:00+01', '2026-10-26T00:00:00+00') = 1, 'a 25-hour UK day is not one day';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conname = 'customer_accounts_occupier_overlap'),
        'occupiers may overlap';
    ASSERT pg_catalog.has_function_privilege('flows_operator', 'api.create_billing_run(text, date)', 'EXECUTE'),
        'operators cannot run billing';
    ASSERT (SELECT c.relrowsecurity FROM pg_catalog.pg_class AS c WHERE c.oid = 'billing.invoices'::regclass),
        'statements have no row-level security';
END
$$;
ROLLBACK;

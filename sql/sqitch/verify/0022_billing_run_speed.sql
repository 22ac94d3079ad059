-- Verify flows:0022_billing_run_speed
BEGIN;
DO $$
BEGIN
    ASSERT pg_catalog.to_regclass('billing.customer_accounts_esco_role_idx') IS NOT NULL,
        'the index of customer_accounts by ESCO and role is missing';
    ASSERT (SELECT p.prosrc NOT LIKE '%jsonb_agg%' AND p.prosrc NOT LIKE '%JOIN flows.escos AS e ON e.id = a.esco%'
            FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.compute_statements(uuid, uuid[])'::regprocedure),
        'billing.compute_statements still builds JSON per list, or joins the ESCO per statement';
    ASSERT (SELECT p.prosrc LIKE '%t.esco = p_esco%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.periods_without_tariff(uuid, date, uuid[])'::regprocedure),
        'billing.periods_without_tariff reads every ESCO''s tariffs';
    ASSERT (SELECT p.prosrc LIKE '%s.period = billing.month_range(p_period_start)%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.statement_lines(uuid, date, uuid[])'::regprocedure),
        'billing.statement_lines counts a whole month''s days through the time zone';
    PERFORM account_id, customer_id, uncovered
    FROM billing.periods_without_tariff('00000000-0000-0000-0000-000000000000', date '2026-01-01');
END
$$;
ROLLBACK;

-- Verify flows:0020_reconciliation_speed
BEGIN;
DO $$
BEGIN
    ASSERT pg_catalog.to_regprocedure('billing.reconciliation_findings(uuid, date, date)') IS NOT NULL,
        'billing.reconciliation_findings is missing';
    ASSERT (SELECT p.prosrc LIKE '%billing.reconciliation_findings(%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.reconciliation_summary(uuid, date, date)'::regprocedure),
        'billing.reconciliation_summary does not read the findings (the ledger once)';
    ASSERT (SELECT p.prosrc NOT LIKE '%slots AS%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.shadow_ledger(uuid, date, date)'::regprocedure),
        'billing.shadow_ledger still scans every half hour for the day ends';
    PERFORM esco, day, kind, meters_ledgered, meter_days_explained, meter_days_incomplete
    FROM billing.reconciliation_findings('00000000-0000-0000-0000-000000000000', current_date, current_date);
    PERFORM esco, kind, open, open_gbp, undecided, oldest_undecided_seconds FROM monitoring.reconciliation WHERE false;
    PERFORM esco, unmatched, unmatched_in_gbp, unmatched_out_gbp, oldest_unmatched_seconds
    FROM monitoring.bank_queue WHERE false;
    ASSERT (SELECT p.prosecdef AND p.proconfig = ARRAY['search_path=""'] FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'monitoring.unresolved_reconciliation_exceptions()'::regprocedure),
        'the exporter''s reconciliation function is a definer with its search_path pinned';
END
$$;
ROLLBACK;

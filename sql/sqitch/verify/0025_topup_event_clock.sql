-- Verify flows:0025_topup_event_clock
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT p.prosrc LIKE '%e."timestamp" <= pg_catalog.now()%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.reconciliation_findings(uuid, date, date)'::regprocedure),
        'an event dated in the future still shows the event log read past a top-up';
END
$$;
ROLLBACK;

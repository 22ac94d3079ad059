-- Verify flows:0024_billing_details_at_issue
BEGIN;
DO $$
BEGIN
    ASSERT pg_catalog.to_regclass('billing.invoices_void_idx') IS NOT NULL, 'the index of voided statements is missing';
    ASSERT (SELECT p.prosrc NOT LIKE '%to_jsonb%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.compute_statements(uuid, uuid[])'::regprocedure),
        'billing.compute_statements still builds the frozen details of drafts';
    ASSERT (SELECT p.prosrc LIKE '%billing.statement_details(%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.issue_invoices(uuid, uuid[])'::regprocedure),
        'billing.issue_invoices does not freeze what statements print';
    ASSERT pg_catalog.pg_get_viewdef('api.invoices'::regclass) LIKE '%statement_details%',
        'api.invoices does not compute the details of drafts';
    PERFORM invoice_id, details FROM billing.statement_details('{}'::uuid[]);
END
$$;
ROLLBACK;

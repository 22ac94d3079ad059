-- Verify flows:0027_draft_details_plan
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT p.prosrc LIKE '%force_generic_plan%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.statement_details(uuid[])'::regprocedure),
        'billing.statement_details plans the details of a single draft at every call';
    ASSERT (SELECT p.prosrc LIKE '%unnest(n.lines)%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.issue_invoices(uuid, uuid[])'::regprocedure),
        'billing.issue_invoices does not write the lines from the drafts it numbers';
    PERFORM invoice_id, details FROM billing.statement_details('{}'::uuid[]);
END
$$;
ROLLBACK;

-- Verify flows:0027_draft_details_plan
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT p.prosrc LIKE '%force_generic_plan%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.statement_details(uuid[])'::regprocedure),
        'billing.statement_details plans the details of a single draft at every call';
    PERFORM invoice_id, details FROM billing.statement_details('{}'::uuid[]);
END
$$;
ROLLBACK;

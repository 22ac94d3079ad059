-- Verify flows:0026_billing_draft_lines
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT a.atttypid = 'billing.invoice_lines[]'::regtype FROM pg_catalog.pg_attribute AS a
            WHERE a.attrelid = 'billing.invoices'::regclass AND a.attname = 'lines' AND NOT a.attisdropped),
        'a draft statement does not hold its lines (billing.invoices.lines)';
    ASSERT (SELECT p.prosrc NOT LIKE '%INSERT INTO billing.invoice_lines%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.compute_statements(uuid, uuid[])'::regprocedure),
        'billing.compute_statements still writes draft lines into billing.invoice_lines';
    ASSERT (SELECT p.prosrc LIKE '%INSERT INTO billing.invoice_lines%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.issue_invoices(uuid, uuid[])'::regprocedure),
        'billing.issue_invoices does not write the lines of the statements it issues';
    PERFORM id, invoice_id, amount FROM billing.all_invoice_lines LIMIT 0;
END
$$;
ROLLBACK;

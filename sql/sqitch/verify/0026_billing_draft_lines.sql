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
    ASSERT pg_catalog.to_regprocedure('billing.periods_without_tariff(uuid, date, uuid[])') IS NULL
           AND pg_catalog.to_regprocedure('billing.refuse_periods_without_tariff(text)') IS NOT NULL,
        'billing.statement_lines does not refuse billed half hours without a tariff itself';
    ASSERT (SELECT p.prosrc NOT LIKE '%JOIN issued%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'billing.post_statement_charges(uuid[])'::regprocedure),
        'billing.post_statement_charges still joins its journals back to the statements';
    PERFORM id, invoice_id, amount FROM billing.all_invoice_lines LIMIT 0;
END
$$;
ROLLBACK;

-- Verify flows:0016_billing_write_path
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid) FROM pg_catalog.pg_index AS i
            WHERE i.indexrelid = 'billing.invoices_esco_number_key'::regclass AND i.indisunique) = '(number IS NOT NULL)',
        'statement numbers are unique per ESCO, drafts (no number) outside the index';
    ASSERT NOT EXISTS (SELECT FROM pg_catalog.pg_constraint
                       WHERE conrelid = 'billing.invoices'::regclass AND conname = 'invoices_esco_number_key'),
        'the numbers'' unique constraint is a partial unique index now';
    ASSERT (SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid) FROM pg_catalog.pg_index AS i
            WHERE i.indexrelid = 'billing.invoices_corrects_idx'::regclass) = '(corrects IS NOT NULL)',
        'invoices_corrects_idx holds the statements that correct one';
    ASSERT pg_catalog.to_regclass('billing.invoice_lines_invoice_idx') IS NULL,
        'lines by statement: invoice_lines_invoice_position_key';
    ASSERT pg_catalog.strpos(pg_catalog.pg_get_functiondef('billing.statement_lines(uuid, date, uuid[])'::regprocedure),
                             't.effective_from < upper(b.period)') > 0, 'statement_lines joins tariffs on comparisons';
    ASSERT pg_catalog.strpos(
               pg_catalog.pg_get_functiondef('billing.periods_without_tariff(uuid, date, uuid[])'::regprocedure),
               't.effective_from < upper(b.period)') > 0, 'periods_without_tariff joins tariffs on comparisons';
    ASSERT pg_catalog.strpos(pg_catalog.pg_get_functiondef('billing.compute_statements(uuid, uuid[])'::regprocedure),
                             'pg_catalog.to_jsonb(d)') > 0, 'compute_statements builds the details from a row';
END
$$;
ROLLBACK;

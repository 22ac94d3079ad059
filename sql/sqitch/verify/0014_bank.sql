-- Verify flows:0014_bank
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, name, sort_code, account_number, iban, currency, processor_counterparty, csv_mapping
    FROM billing.bank_accounts WHERE false;
    PERFORM id, bank_account_id, file_hash, file_position, source_format, period_start, period_end, opening_balance,
            closing_balance, balance_check, entries, entries_added FROM billing.bank_statements WHERE false;
    PERFORM id, statement_id, booking_date, value_date, amount, bank_reference, counterparty, remittance,
            bank_entry_id, dedup_key, status, queue_reason FROM billing.bank_transactions WHERE false;
    PERFORM id, transaction_id, action, rule, reason, decided_by, decided_at FROM billing.bank_decisions WHERE false;
    PERFORM id, decision_id, part, amount, payment_id, payout_id FROM billing.bank_matches WHERE false;
    PERFORM id, gross, fees, amount, journal_id FROM billing.processor_payouts WHERE false;
    PERFORM payout_id, payment_id FROM billing.processor_payout_payments WHERE false;
    PERFORM id, queue_reason FROM api.bank_queue WHERE false;
    PERFORM id, parts FROM api.bank_decisions WHERE false;
    ASSERT EXISTS (SELECT FROM billing.ledger_accounts WHERE code = 'processor_fees' AND kind = 'expense'),
        'the processor_fees ledger account is missing';
    ASSERT billing.iban_valid('GB82WEST12345698765432') AND NOT billing.iban_valid('GB82WEST12345698765433'),
        'IBAN check digits are not checked';
    ASSERT billing.bank_reference_keys('Ref: ACC-0001 001') @> ARRAY['1001'], 'mangled references are not read';
    ASSERT pg_catalog.has_function_privilege('flows_operator', 'api.import_bank_statement(text, jsonb, text)',
                                             'EXECUTE'), 'operators cannot import bank statements';
    ASSERT pg_catalog.has_function_privilege('flows_operator', 'api.match_bank_transaction_to_payout(uuid, uuid[], text)',
                                             'EXECUTE'), 'operators cannot match a bank entry as a processor payout';
    ASSERT NOT pg_catalog.has_table_privilege('flows_customer', 'billing.bank_transactions', 'SELECT'),
        'customers can read bank entries';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'billing.bank_transactions'::regclass),
        'bank entries have no row-level security';
    ASSERT (SELECT count(*) FROM gdpr.personal_data WHERE relation IN ('billing.bank_transactions',
            'billing.bank_decisions', 'billing.bank_matches', 'billing.processor_payout_payments')) = 4,
        'the bank tables holding data about customers are not in the GDPR registry';
    ASSERT NOT EXISTS (SELECT FROM gdpr.unregistered_personal_columns), 'columns named like personal data unregistered';
    ASSERT EXISTS (SELECT FROM gdpr.erasure_checks WHERE name = 'bank_entry_queued'),
        'erasure does not wait for the queued bank entries that name the customer';
END
$$;
ROLLBACK;

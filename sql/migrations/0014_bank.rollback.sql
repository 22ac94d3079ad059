-- Rollback of 0014_bank.
SET LOCAL ROLE flows_owner;
DELETE FROM gdpr.erasure_checks WHERE name = 'bank_entry_queued';
DELETE FROM gdpr.not_personal WHERE relation = 'billing.bank_accounts';
DELETE FROM gdpr.personal_data  -- and their personal_columns (ON DELETE CASCADE)
WHERE relation IN ('billing.bank_transactions', 'billing.bank_decisions', 'billing.bank_matches',
                   'billing.processor_payout_payments');
DROP FUNCTION gdpr.customer_bank_transactions(uuid);
DROP FUNCTION api.import_bank_statement(text, jsonb, text), api.rematch_bank_transactions(uuid),
              api.match_bank_transaction_to_account(uuid, uuid, text),
              api.match_bank_transaction_to_payment(uuid, uuid, text),
              api.match_bank_transaction_to_payout(uuid, uuid[], text), api.split_bank_transaction(uuid, jsonb, text),
              api.dismiss_bank_transaction(uuid, text);
DROP VIEW api.processor_payouts, api.bank_decisions, api.bank_queue, api.bank_transactions, api.bank_statements,
          api.bank_accounts;
DROP FUNCTION billing.import_bank_statement(billing.bank_accounts, text, text, text, integer, jsonb),
              billing.describe_bank_entry(bigint, date, numeric, text, text), billing.bank_entry_problem(jsonb),
              billing.match_bank_transactions(uuid), billing.payout_batch(billing.bank_accounts, date, numeric),
              billing.match_bank_transaction(uuid, jsonb, text), billing.decide_bank_transaction(uuid, text, jsonb, text, text), billing.bank_account_named(text, text),
              billing.account_key(text), billing.bank_reference_keys(text);
DROP TABLE billing.bank_matches, billing.bank_decisions, billing.processor_payout_payments, billing.processor_payouts,
           billing.bank_transactions, billing.bank_statements, billing.bank_accounts;
DROP FUNCTION billing.check_bank_account(), billing.csv_mapping_problem(jsonb), billing.iban_valid(text);
-- (the foreign key's check locks journal_entries rows as their owner, who may not update them: lent for
-- the DELETE and taken back)
RESET ROLE;
GRANT UPDATE (ledger_account) ON billing.journal_entries TO flows_owner;
DELETE FROM billing.ledger_accounts WHERE code = 'processor_fees';
REVOKE UPDATE (ledger_account) ON billing.journal_entries FROM flows_owner;
SET LOCAL ROLE flows_owner;
ALTER TABLE billing.journals DROP CONSTRAINT journals_kind_valid;
ALTER TABLE billing.journals ADD CONSTRAINT journals_kind_valid CHECK (kind IN ('payment_received', 'refund', 'topup_funded', 'topup_credited',
                                                   'statement_charge', 'reversal'));
ALTER TABLE billing.payments DROP CONSTRAINT payments_origin_valid;
ALTER TABLE billing.payments ADD CONSTRAINT payments_origin_valid CHECK (origin IN ('operator', 'scheduled', 'auto_top_up', 'processor'));

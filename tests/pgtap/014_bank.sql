-- Bank statements in SQL: IBANs and mangled references, the import (dedup,
-- the balance check naming the entry, nothing half-written), the matching
-- rules (a bank transfer, a processor payout with its fees journal), the queue
-- and the operators' decisions (each entry decided once), refusals naming the
-- field.
BEGIN;
SELECT plan(28);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000014a1', 'TAPBANK', 'Bank');
INSERT INTO flows.sites (id, esco, code, name) VALUES ('00000000-0000-4000-8000-0000000014a2', '00000000-0000-4000-8000-0000000014a1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot) VALUES ('00000000-0000-4000-8000-000000001401', '00000000-0000-4000-8000-0000000014a1', '00000000-0000-4000-8000-0000000014a2', 'P-1');
INSERT INTO flows.service_head_registry (id, esco, name) VALUES ('00000000-0000-4000-8000-000000001411', '00000000-0000-4000-8000-0000000014a1', 'H1');
INSERT INTO flows.properties_service_head VALUES ('00000000-0000-4000-8000-000000001401', '00000000-0000-4000-8000-000000001411', '00000000-0000-4000-8000-0000000014a1');
SELECT api.register_meter(serial => 'EML3200001401', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000014a1') ->> 'id' AS m1 \gset
INSERT INTO flows.service_head_meter VALUES ('00000000-0000-4000-8000-000000001411', :'m1', '00000000-0000-4000-8000-0000000014a1');
SELECT api.onboard_customer('00000000-0000-4000-8000-000000001401', 'Olive Owner', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct \gset
SELECT account_number AS number FROM billing.accounts WHERE id = :'acct' \gset

SELECT ok(billing.iban_valid('GB82WEST12345698765432'), 'a valid IBAN');
SELECT ok(NOT billing.iban_valid('GB82WEST12345698765433'), 'a wrong check digit is refused');
SELECT is(billing.bank_reference_keys('ref: ACC-0001 001') @> ARRAY['1001'], true, 'prefixes, punctuation, spaces and leading zeros are read through');
SELECT is(billing.bank_reference_keys('acc1001') @> ARRAY['1001'], true, 'a prefix glued on');
SELECT throws_ok($$INSERT INTO billing.bank_accounts (esco, name, iban) VALUES ('00000000-0000-4000-8000-0000000014a1', 'bad', 'GB82WEST12345698765433')$$,
                 '22023', NULL, 'a bank account with a bad IBAN is refused');
SELECT throws_ok($$INSERT INTO billing.bank_accounts (esco, name, iban, csv_mapping) VALUES ('00000000-0000-4000-8000-0000000014a1', 'bad', 'GB82WEST12345698765432', '{"amount": "A"}')$$,
                 '22023', 'csv_mapping needs "date": the header of the booking date column', 'a CSV mapping without a date is refused, saying so');
INSERT INTO billing.bank_accounts (esco, name, iban) VALUES ('00000000-0000-4000-8000-0000000014a1', 'main', 'GB82 WEST 1234 5698 7654 32');

-- A statement: Olive's transfer (mangled reference), a payout, bank charges, one nobody's.
SELECT format('{"format": "camt053", "file_hash": "%s", "statements": [{"period_start": "2026-11-02", "period_end": "2026-11-03",
  "opening_balance": "100.00", "closing_balance": "%s", "account": {"iban": "GB82WEST12345698765432"}, "entries": [
  {"booking_date": "2026-11-02", "amount": "20.00", "reference": "Ref ACC-000%s", "counterparty": "O OWNER"},
  {"booking_date": "2026-11-03", "amount": "48.80", "reference": "STRIPE PAYOUT po_1x", "counterparty": "STRIPE"},
  {"booking_date": "2026-11-03", "amount": "-3.00", "reference": "CHARGES"},
  {"booking_date": "2026-11-03", "amount": "5.00", "reference": "hello"}]}]}', repeat('a', 64), '%s', :'number') AS tmpl \gset
-- two card payments received before the payout's day
INSERT INTO billing.payments (esco, account_id, amount, status, provider, origin, provider_reference, received_at, requested_by)
VALUES ('00000000-0000-4000-8000-0000000014a1', :'acct', 30, 'succeeded', 'stripe', 'processor', 'pi_tap1', '2026-11-01T10:00:00Z', 'tap'),
       ('00000000-0000-4000-8000-0000000014a1', :'acct', 20, 'succeeded', 'stripe', 'processor', 'pi_tap2', '2026-11-01T11:00:00Z', 'tap');

SELECT throws_like(format($$SELECT api.import_bank_statement('main', %L)$$, format(:'tmpl', '170.81')),
                   '%does not add up: opening 100.00 + 4 entries (70.80) = 170.80, but the closing balance is 170.81 (difference 0.01)%',
                   'a statement that does not add up is refused with the difference');
SELECT is((SELECT count(*) FROM billing.bank_statements), 0::bigint, 'and nothing was written');
SELECT throws_like($$SELECT api.import_bank_statement('elsewhere', '{}')$$, '%known: TAPBANK/main%', 'an unknown bank account is refused listing the known ones');
SELECT throws_like(format($$SELECT api.import_bank_statement('main', %L)$$,
                          replace(format(:'tmpl', '170.80'), '"amount": "20.00"', '"amount": "20.005"')),
                   'statements[0].entries[0]: amount must be in whole pence%', 'a fraction of a penny is refused naming the entry');

SELECT api.import_bank_statement('main', format(:'tmpl', '170.80')::jsonb) AS result \gset
SELECT is((:'result'::jsonb ->> 'added')::int, 4, 'the statement''s four entries are added');
SELECT is((:'result'::jsonb ->> 'bank_transfers')::int, 1, 'the transfer naming the account became a payment');
SELECT is((:'result'::jsonb ->> 'payouts')::int, 1, 'the payout settled its batch');
SELECT is((SELECT fees FROM billing.processor_payouts), 1.20, 'the payout shows the processor''s fees (50.00 - 48.80)');
SELECT is((SELECT array_agg(ledger_account || ' ' || amount ORDER BY ledger_account) FROM billing.journal_entries e JOIN billing.journals j ON j.id = e.journal_id WHERE j.kind = 'processor_payout'),
          ARRAY['cash_at_bank 48.80', 'processor_clearing -50.00', 'processor_fees 1.20'], 'its journal: cash at bank and fees from processor clearing');
SELECT is((SELECT p.amount FROM billing.payments p WHERE p.origin = 'bank_statement'), 20.00::numeric(8,2), 'a bank_transfer payment of 20.00');
SELECT is((SELECT count(*) FROM billing.topups t JOIN billing.payments p ON p.id = t.payment_id WHERE p.origin = 'bank_statement'), 1::bigint, 'with its top-up, as any payment');
SELECT is((SELECT api.import_bank_statement('main', format(:'tmpl', '170.80')::jsonb) ->> 'outcome'), 'already_imported', 'the same file again adds nothing');
SELECT is((SELECT (api.import_bank_statement('main', replace(format(:'tmpl', '170.80'), repeat('a', 64), repeat('b', 64))::jsonb) ->> 'added')::int), 0,
          'the same entries in another file add nothing');
SELECT is((SELECT array_agg(queue_reason ORDER BY amount) FROM api.bank_queue),
          ARRAY['a payment out (debit): dismiss it with what it was', 'no account number in the reference ''hello'''], 'the queue says why');
SELECT id AS hello FROM billing.bank_transactions WHERE bank_reference = 'hello' \gset
SELECT id AS tap1 FROM billing.payments WHERE provider_reference = 'pi_tap1' \gset
SELECT throws_like(format($$SELECT api.match_bank_transaction_to_payment(%L, %L)$$, :'hello', :'tap1'),
                   'payment_id names a succeeded stripe payment of 30.00 GBP: only a received bank transfer of 5.00 GBP fits',
                   'matched to a payment that is not its bank transfer: refused naming payment_id');
SELECT throws_like(format($$SELECT api.match_bank_transaction_to_payout(%L, ARRAY[%L]::uuid[])$$, :'hello', :'tap1'),
                   'payout_payment_ids: 1 of them are not received processor payments of this ESCO not yet paid out',
                   'as the payout of a payment already paid out: refused naming payout_payment_ids');
SELECT lives_ok(format($$SELECT api.match_bank_transaction_to_account(%L, %L, 'Olive''s daughter')$$, :'hello', :'acct'), 'an operator matches it to an account');
SELECT throws_like(format($$SELECT api.dismiss_bank_transaction(%L, 'not ours')$$, :'hello'), '%already matched: matched by%', 'an entry is decided once');


-- Personal data: the entries about Olive (sql/schema/gdpr/subjects.sql) and what her erasure waits for.
SELECT customer_id AS olive FROM billing.customer_accounts WHERE account_id = :'acct' LIMIT 1 \gset
SELECT set_eq(format($$SELECT transaction_id FROM gdpr.customer_bank_transactions(%L)$$, :'olive'),
              $$SELECT m.transaction_id FROM billing.bank_matches m WHERE m.payment_id IS NOT NULL$$,
              'her entries are those that paid her payments (O OWNER''s too); not the payout, the processor''s');
SELECT api.import_bank_statement('main', format('{"format": "camt053", "file_hash": "%s", "statements": [{
  "period_start": "2026-11-04", "period_end": "2026-11-04", "opening_balance": "170.80", "closing_balance": "179.80",
  "entries": [{"booking_date": "2026-11-04", "amount": "7.00", "reference": "for OLIVE OWNER", "counterparty": "MUM"},
              {"booking_date": "2026-11-04", "amount": "2.00", "reference": "for Olivia Owners"}]}]}', repeat('c', 64))::jsonb);
SELECT id AS named FROM billing.bank_transactions WHERE amount = 7 \gset
SELECT is((SELECT array_agg(t.amount) FROM gdpr.customer_bank_transactions(:'olive') b
           JOIN billing.bank_transactions t ON t.id = b.transaction_id WHERE t.status = 'unmatched'), ARRAY[7.00],
          'and a queued one naming her, as a whole name in any case (not Olivia Owners'')');
SELECT is((SELECT reason FROM gdpr.erasure_refusals(:'olive') WHERE check_name = 'bank_entry_queued'),
          format('a bank credit of £7.00 booked 2026-11-04 that names them waits in the bank queue (entry %s)', :'named'),
          'her erasure waits for it to be decided');
SELECT api.dismiss_bank_transaction(:'named', 'sent back: Olive Owner asked');
SELECT is((SELECT count(*) FROM gdpr.erasure_refusals(:'olive') WHERE check_name = 'bank_entry_queued'), 0::bigint,
          'dismissed (still hers: exported, and erased with her), it holds nothing');

SELECT * FROM finish();
ROLLBACK;

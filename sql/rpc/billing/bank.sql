-- Bank statements over HTTP: the ESCO's bank accounts (operators add them and
-- their CSV mapping), the statements and entries imported, the queue of
-- entries no rule matched, the decisions log, the processor payouts; and the
-- operator workflows: import a statement (normalised JSON; `flows bank
-- import` and the gateway's POST /bank/statements parse the bank's files into
-- it), run the rules again, match, split, dismiss.

CREATE VIEW api.bank_accounts WITH (security_invoker = true) AS
SELECT id, esco, name, bank_name, sort_code, account_number, iban, currency, processor_counterparty, payout_fee_rate,
       payout_fee_fixed, csv_mapping, created_at
FROM billing.bank_accounts;
ALTER VIEW api.bank_accounts ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.bank_accounts IS
    'The ESCO''s bank accounts (name, sort code and account number or IBAN, GBP): statements are imported into '
    'them. processor_counterparty: how the processor''s payouts show; csv_mapping: the columns of the bank''s CSV.';

CREATE VIEW api.bank_statements WITH (security_invoker = true) AS
SELECT s.id, s.esco, s.bank_account_id, b.name AS bank_account, s.source_format, s.file_name, s.file_hash,
       s.file_position, s.statement_reference, s.period_start, s.period_end, s.currency, s.opening_balance,
       s.closing_balance, s.balance_check, s.entries, s.entries_added, s.imported_at, s.imported_by
FROM billing.bank_statements AS s
JOIN billing.bank_accounts AS b ON b.id = s.bank_account_id;
COMMENT ON VIEW api.bank_statements IS
    'Statements imported (one per statement of a file): period, balances, how they were checked (running, '
    'totals, unchecked), entries in the file and how many were new.';

CREATE VIEW api.bank_transactions WITH (security_invoker = true) AS
SELECT t.id, t.esco, t.bank_account_id, b.name AS bank_account, t.statement_id, t.booking_date, t.value_date, t.amount,
       t.currency, t.bank_reference, t.counterparty, t.remittance, t.bank_entry_id, t.dedup_key, t.status,
       t.queue_reason, d.action AS decision, d.rule, d.decided_by, d.decided_at, t.created_at
FROM billing.bank_transactions AS t
JOIN billing.bank_accounts AS b ON b.id = t.bank_account_id
LEFT JOIN billing.bank_decisions AS d ON d.transaction_id = t.id;
COMMENT ON VIEW api.bank_transactions IS
    'Bank statement entries, each once (amount signed: credits positive): status unmatched (queue_reason) -> '
    'matched | dismissed, with the decision that settled it.';

CREATE VIEW api.bank_queue WITH (security_invoker = true) AS
SELECT t.id, t.esco, t.bank_account_id, b.name AS bank_account, t.booking_date, t.amount, t.bank_reference,
       t.counterparty, t.remittance, t.queue_reason, (CURRENT_DATE - t.booking_date) AS days_waiting
FROM billing.bank_transactions AS t
JOIN billing.bank_accounts AS b ON b.id = t.bank_account_id
WHERE t.status = 'unmatched';
COMMENT ON VIEW api.bank_queue IS
    'Bank entries no rule matched, with why (queue_reason): work them with match_bank_transaction_to_account, '
    '_to_payment or _to_payout, split_bank_transaction or dismiss_bank_transaction.';

CREATE VIEW api.bank_decisions WITH (security_invoker = true) AS
SELECT d.id, d.esco, d.transaction_id, t.bank_account_id, t.booking_date, t.amount, t.bank_reference, t.counterparty,
       d.action, d.rule, d.reason, d.decided_by, d.decided_at,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                   'part', m.part, 'amount', m.amount, 'payment_id', m.payment_id,
                   'account_number', (SELECT a.account_number FROM billing.payments AS p
                                      JOIN billing.accounts AS a ON a.id = p.account_id WHERE p.id = m.payment_id),
                   'payout_id', m.payout_id)) ORDER BY m.part)
        FROM billing.bank_matches AS m WHERE m.decision_id = d.id) AS parts
FROM billing.bank_decisions AS d
JOIN billing.bank_transactions AS t ON t.id = d.transaction_id;
COMMENT ON VIEW api.bank_decisions IS
    'The decisions log: each bank entry decided (matched, split, dismissed), by which rule or operator '
    '(rule null), why, when, and the parts (payment and account, or processor payout).';

CREATE VIEW api.processor_payouts WITH (security_invoker = true) AS
SELECT o.id, o.esco, o.bank_transaction_id, o.provider, o.payout_reference, o.gross, o.fees, o.amount, o.payments,
       o.journal_id, o.created_at,
       ARRAY(SELECT pp.payment_id FROM billing.processor_payout_payments AS pp WHERE pp.payout_id = o.id
             ORDER BY pp.payment_id) AS payment_ids
FROM billing.processor_payouts AS o;
COMMENT ON VIEW api.processor_payouts IS
    'Processor payouts received in the bank: gross (the payments paid out) - fees = amount; payment_ids.';


CREATE FUNCTION api.import_bank_statement(bank_account text, statement jsonb, esco_code text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.bank_accounts := billing.bank_account_named(import_bank_statement.bank_account,
                                                                import_bank_statement.esco_code);
    file jsonb := import_bank_statement.statement;
    results jsonb := '[]'::jsonb;
    one jsonb;
    position integer := 0;
    matching jsonb;
BEGIN
    IF pg_catalog.jsonb_typeof(file) IS DISTINCT FROM 'object'
       OR coalesce(file ->> 'format', '') NOT IN ('camt053', 'ofx', 'mt940', 'csv') THEN
        RAISE EXCEPTION 'statement.format must be camt053, ofx, mt940 or csv, got %', coalesce(file ->> 'format', 'nothing')
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF coalesce(file ->> 'file_hash', '') !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'statement.file_hash must be the file''s SHA-256 (64 hex digits)'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF pg_catalog.jsonb_typeof(file -> 'statements') IS DISTINCT FROM 'array'
          OR pg_catalog.jsonb_array_length(file -> 'statements') = 0 THEN
        RAISE EXCEPTION 'statement.statements must list the file''s statements' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- one import at a time per bank account: the same file sent twice at once is imported once
    PERFORM FROM billing.bank_accounts AS b WHERE b.id = account.id FOR UPDATE;
    IF EXISTS (SELECT FROM billing.bank_statements AS s
               WHERE s.bank_account_id = account.id AND s.file_hash = file ->> 'file_hash') THEN
        RETURN pg_catalog.jsonb_build_object(
            'outcome', 'already_imported', 'bank_account', account.name, 'added', 0,
            'statements', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                      'id', s.id, 'period_start', s.period_start, 'period_end', s.period_end,
                                      'entries', s.entries, 'added', 0, 'duplicates', s.entries,
                                      'imported_at', s.imported_at) ORDER BY s.file_position)
                           FROM billing.bank_statements AS s
                           WHERE s.bank_account_id = account.id AND s.file_hash = file ->> 'file_hash'));
    END IF;
    FOR one IN SELECT value FROM pg_catalog.jsonb_array_elements(file -> 'statements') LOOP
        results := results || billing.import_bank_statement(account, file ->> 'format', file ->> 'file_hash',
                                                             NULLIF(file ->> 'file_name', ''), position, one);
        position := position + 1;
    END LOOP;
    matching := billing.match_bank_transactions(account.id);
    RETURN pg_catalog.jsonb_build_object(
        'outcome', 'imported', 'bank_account', account.name, 'statements', results,
        'entries', (SELECT sum((r ->> 'entries')::integer) FROM pg_catalog.jsonb_array_elements(results) AS r),
        'added', (SELECT sum((r ->> 'added')::integer) FROM pg_catalog.jsonb_array_elements(results) AS r),
        'duplicates', (SELECT sum((r ->> 'duplicates')::integer) FROM pg_catalog.jsonb_array_elements(results) AS r))
        || matching;
END
$$;
COMMENT ON FUNCTION api.import_bank_statement(text, jsonb, text) IS
    'Imports a bank file''s statements (normalised JSON: {format, file_hash, file_name, statements: [{period_start, '
    'period_end, opening_balance, closing_balance, entries: [{booking_date, amount, reference, ...}]}]}) into a '
    'bank account (its name), all or nothing, then runs the matching rules. The same file again: already_imported.';

CREATE FUNCTION api.rematch_bank_transactions(bank_account_id uuid) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.bank_accounts := billing.bank_account_named(rematch_bank_transactions.bank_account_id::text);
BEGIN
    PERFORM FROM billing.bank_accounts AS b WHERE b.id = account.id FOR UPDATE;
    RETURN billing.match_bank_transactions(account.id);
END
$$;
COMMENT ON FUNCTION api.rematch_bank_transactions(uuid) IS
    'Runs the matching rules again over a bank account''s unmatched entries (e.g. after adding an account or '
    'once the processor payments a payout pays have arrived): {payouts, bank_transfers, queued}.';

-- Matching one queued entry whole, one function per target (each takes the ids
-- it needs, all required): to an account, to a bank transfer already recorded,
-- as the processor's payout of a batch of payments.
CREATE FUNCTION api.match_bank_transaction_to_account(transaction_id uuid, account_id uuid, reason text DEFAULT NULL)
RETURNS SETOF api.bank_transactions
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT billing.match_bank_transaction(match_bank_transaction_to_account.transaction_id,
                                          pg_catalog.jsonb_build_object('account_id',
                                                                        match_bank_transaction_to_account.account_id),
                                          match_bank_transaction_to_account.reason);
    SELECT * FROM api.bank_transactions AS t WHERE t.id = match_bank_transaction_to_account.transaction_id;
$$;
COMMENT ON FUNCTION api.match_bank_transaction_to_account(uuid, uuid, text) IS
    'Matches a bank credit from the queue to an account: a bank_transfer payment of its amount is made for it '
    '(journal, top-up, as any payment).';

CREATE FUNCTION api.match_bank_transaction_to_payment(transaction_id uuid, payment_id uuid, reason text DEFAULT NULL)
RETURNS SETOF api.bank_transactions
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT billing.match_bank_transaction(match_bank_transaction_to_payment.transaction_id,
                                          pg_catalog.jsonb_build_object('payment_id',
                                                                        match_bank_transaction_to_payment.payment_id),
                                          match_bank_transaction_to_payment.reason);
    SELECT * FROM api.bank_transactions AS t WHERE t.id = match_bank_transaction_to_payment.transaction_id;
$$;
COMMENT ON FUNCTION api.match_bank_transaction_to_payment(uuid, uuid, text) IS
    'Matches a bank credit from the queue to the bank transfer of the same amount an operator already recorded '
    '(record_payment): linked, no second journal.';

CREATE FUNCTION api.match_bank_transaction_to_payout(transaction_id uuid, payout_payment_ids uuid[],
                                                     reason text DEFAULT NULL)
RETURNS SETOF api.bank_transactions
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT billing.match_bank_transaction(match_bank_transaction_to_payout.transaction_id,
                                          pg_catalog.jsonb_build_object(
                                              'payout_payment_ids',
                                              coalesce(pg_catalog.to_jsonb(match_bank_transaction_to_payout.payout_payment_ids),
                                                       '[]')),
                                          match_bank_transaction_to_payout.reason);
    SELECT * FROM api.bank_transactions AS t WHERE t.id = match_bank_transaction_to_payout.transaction_id;
$$;
COMMENT ON FUNCTION api.match_bank_transaction_to_payout(uuid, uuid[], text) IS
    'Matches a bank credit from the queue as the processor''s payout of payout_payment_ids (received processor '
    'payments not yet paid out, gross at least the credit): the payout, its fees (gross - credit) and journal.';

CREATE FUNCTION api.split_bank_transaction(transaction_id uuid, parts jsonb, reason text DEFAULT NULL)
RETURNS SETOF api.bank_transactions
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(split_bank_transaction.parts) IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_array_length(split_bank_transaction.parts) < 2 THEN
        RAISE EXCEPTION 'parts must be an array of at least two {amount, account_id | payment_id}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing.decide_bank_transaction(split_bank_transaction.transaction_id, 'split',
                                            split_bank_transaction.parts, NULL,
                                            coalesce(NULLIF(pg_catalog.btrim(split_bank_transaction.reason), ''),
                                                     'split by an operator'));
    RETURN QUERY SELECT * FROM api.bank_transactions AS t WHERE t.id = split_bank_transaction.transaction_id;
END
$$;
COMMENT ON FUNCTION api.split_bank_transaction(uuid, jsonb, text) IS
    'Splits a bank credit into parts ([{amount, account_id | payment_id}], adding up to it), each matched.';

CREATE FUNCTION api.dismiss_bank_transaction(transaction_id uuid, reason text DEFAULT NULL)
RETURNS SETOF api.bank_transactions
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.decide_bank_transaction(dismiss_bank_transaction.transaction_id, 'dismissed', NULL, NULL,
                                            dismiss_bank_transaction.reason);
    RETURN QUERY SELECT * FROM api.bank_transactions AS t WHERE t.id = dismiss_bank_transaction.transaction_id;
END
$$;
COMMENT ON FUNCTION api.dismiss_bank_transaction(uuid, text) IS
    'Marks a bank entry as not ours (or not a payment: bank charges, a payment out), with the reason; no journal.';

-- 0014_bank: bank statements and matching. The ESCO's bank accounts, statements imported from the banks'
-- files (CAMT.053, OFX, MT940, CSV, parsed in Python into one shape) by one function in one transaction,
-- their entries (each once), the matching rules (processor payouts, bank transfers naming an account), the
-- queue, operators' decisions (match, split, dismiss) and the processor payouts with their journal
-- (processor_clearing -> cash_at_bank, fees to the new processor_fees account).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/billing/payments.sql: payments made by matching a bank statement ----
ALTER TABLE billing.payments DROP CONSTRAINT payments_origin_valid;
ALTER TABLE billing.payments ADD CONSTRAINT payments_origin_valid
        CHECK (origin IN ('operator', 'scheduled', 'auto_top_up', 'processor', 'bank_statement'));

-- ---- schema/billing/ledger.sql: processor payouts and their fees ----
ALTER TABLE billing.journals DROP CONSTRAINT journals_kind_valid;
ALTER TABLE billing.journals ADD CONSTRAINT journals_kind_valid CHECK (kind IN ('payment_received', 'refund', 'topup_funded', 'topup_credited',
                                                   'statement_charge', 'reversal', 'processor_payout'));
INSERT INTO billing.ledger_accounts (code, name, kind, description) VALUES
    ('processor_fees', 'Processor fees', 'expense', 'What the payment processor kept from its payouts.');

-- ---- schema/billing/bank.sql ----
-- Bank statements and matching (docs/reconciliation.md, "Bank statements and
-- matching"). The ESCO's bank accounts, the statements imported from the
-- bank's files (CAMT.053, OFX, MT940, CSV: parsed in Python into one shape,
-- written here by one function in one transaction), their entries, and what
-- each credit was matched to:
--
--   bank entry ──rule processor_payout──► processor payout (the batch of card payments it pays, fees)
--        │       journal: cash_at_bank + processor_fees / processor_clearing
--        ├──rule account_reference──► bank_transfer payment (journal, top-up: as any payment)
--        ├──operator: match (account, payment, payout), split (parts, each matched), dismiss (not ours)
--        └──► waits in the queue (queue_reason says why no rule took it)
--
-- Every decision is a row of bank_decisions (who, when, rule or operator,
-- reason), written in the transaction that posts its journals; an entry is
-- decided once (unique) and a payment is funded by at most one entry part.

-- An IBAN's check digits (ISO 13616: the rearranged digits mod 97 = 1).
CREATE FUNCTION billing.iban_valid(p_iban text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT p_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'
       AND (SELECT pg_catalog.string_agg(CASE WHEN x.c ~ '[A-Z]' THEN (pg_catalog.ascii(x.c) - 55)::text ELSE x.c END,
                                         '' ORDER BY x.n)
            FROM pg_catalog.regexp_split_to_table(pg_catalog.substr(p_iban, 5) || pg_catalog.substr(p_iban, 1, 4), '')
                 WITH ORDINALITY AS x (c, n))::numeric % 97 = 1
$$;
COMMENT ON FUNCTION billing.iban_valid(text) IS 'An IBAN (capitals, no spaces) whose check digits are right.';

-- What is wrong with a CSV column mapping (null: nothing). The mapping names
-- the columns of a bank's CSV export (by header): date and amount (or credit
-- and debit) are required; reference, counterparty, remittance, entry_id,
-- balance and value_date are optional; date_format (strftime, default
-- %Y-%m-%d), delimiter (default ,) and order (oldest_first | newest_first).
CREATE FUNCTION billing.csv_mapping_problem(p_mapping jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT CASE
        WHEN pg_catalog.jsonb_typeof(p_mapping) IS DISTINCT FROM 'object' THEN 'must be a JSON object'
        WHEN EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(p_mapping) AS k
                     WHERE k NOT IN ('date', 'value_date', 'amount', 'credit', 'debit', 'reference', 'counterparty',
                                     'remittance', 'entry_id', 'balance', 'date_format', 'delimiter', 'order'))
            THEN 'has unknown keys: ' || (SELECT pg_catalog.string_agg(k, ', ' ORDER BY k)
                                          FROM pg_catalog.jsonb_object_keys(p_mapping) AS k
                                          WHERE k NOT IN ('date', 'value_date', 'amount', 'credit', 'debit',
                                                          'reference', 'counterparty', 'remittance', 'entry_id',
                                                          'balance', 'date_format', 'delimiter', 'order'))
                 || ' (known: date, value_date, amount, credit, debit, reference, counterparty, remittance, entry_id, '
                 || 'balance, date_format, delimiter, order)'
        WHEN EXISTS (SELECT FROM pg_catalog.jsonb_each(p_mapping) AS e WHERE pg_catalog.jsonb_typeof(e.value) <> 'string'
                                                                        OR pg_catalog.btrim(e.value #>> '{}') = '')
            THEN 'every value must be a non-empty string (a column header, or the format settings)'
        WHEN NOT p_mapping ? 'date' THEN 'needs "date": the header of the booking date column'
        WHEN (p_mapping ? 'amount') = (p_mapping ? 'credit' OR p_mapping ? 'debit')
            THEN 'needs either "amount" (signed) or both "credit" and "debit" columns'
        WHEN (p_mapping ? 'credit') <> (p_mapping ? 'debit') THEN 'needs both "credit" and "debit", or "amount"'
        WHEN pg_catalog.length(coalesce(p_mapping ->> 'delimiter', ',')) <> 1 THEN '"delimiter" must be one character'
        WHEN coalesce(p_mapping ->> 'order', 'oldest_first') NOT IN ('oldest_first', 'newest_first')
            THEN '"order" must be oldest_first or newest_first'
    END
$$;
COMMENT ON FUNCTION billing.csv_mapping_problem(jsonb) IS
    'What is wrong with a bank account''s CSV column mapping, or null when it is usable.';


CREATE TABLE billing.bank_accounts (
    id                     uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                   uuid         NOT NULL REFERENCES flows.escos (id),
    name                   text         NOT NULL,
    bank_name              text,
    sort_code              text,
    account_number         text,
    iban                   text,
    currency               text         NOT NULL DEFAULT 'GBP',
    processor_counterparty text         NOT NULL DEFAULT 'STRIPE',
    payout_fee_rate        numeric(5, 4) NOT NULL DEFAULT 0.0325,
    payout_fee_fixed       numeric(6, 2) NOT NULL DEFAULT 0.20,
    csv_mapping            jsonb,
    created_at             timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT bank_accounts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT bank_accounts_esco_name_key UNIQUE (esco, name),
    CONSTRAINT bank_accounts_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,39}$'),
    CONSTRAINT bank_accounts_sort_code_format CHECK (sort_code ~ '^[0-9]{6}$'),
    CONSTRAINT bank_accounts_account_number_format CHECK (account_number ~ '^[0-9]{8}$'),
    CONSTRAINT bank_accounts_iban_valid CHECK (billing.iban_valid(iban)),
    CONSTRAINT bank_accounts_identified CHECK (iban IS NOT NULL OR (sort_code IS NOT NULL AND account_number IS NOT NULL)),
    CONSTRAINT bank_accounts_currency_gbp CHECK (currency = 'GBP'),
    CONSTRAINT bank_accounts_processor_counterparty_not_blank CHECK (btrim(processor_counterparty) <> ''),
    CONSTRAINT bank_accounts_payout_fees_range CHECK (payout_fee_rate BETWEEN 0 AND 0.2 AND payout_fee_fixed BETWEEN 0 AND 5),
    CONSTRAINT bank_accounts_csv_mapping_valid CHECK (csv_mapping IS NULL OR billing.csv_mapping_problem(csv_mapping) IS NULL)
);
COMMENT ON TABLE billing.bank_accounts IS
    'The ESCO''s bank accounts statements are imported into (name: what `flows bank import --bank-account` takes). '
    'processor_counterparty: how the processor''s payouts show on the statement; payout_fee_rate and '
    'payout_fee_fixed (per payment): the most fees a payout may keep to match a batch; csv_mapping: the columns '
    'of this bank''s CSV export.';

-- Readable refusals for the checks above (a CHECK names only its constraint).
CREATE FUNCTION billing.check_bank_account() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    problem text := CASE WHEN NEW.csv_mapping IS NOT NULL THEN billing.csv_mapping_problem(NEW.csv_mapping) END;
BEGIN
    NEW.iban := pg_catalog.upper(pg_catalog.replace(NEW.iban, ' ', ''));
    NEW.sort_code := pg_catalog.replace(pg_catalog.replace(NEW.sort_code, '-', ''), ' ', '');
    IF NEW.iban IS NOT NULL AND NOT billing.iban_valid(NEW.iban) THEN
        RAISE EXCEPTION 'iban % is not a valid IBAN (its check digits are wrong or it is malformed)', NEW.iban
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'csv_mapping %', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER bank_accounts_check BEFORE INSERT OR UPDATE ON billing.bank_accounts
    FOR EACH ROW EXECUTE FUNCTION billing.check_bank_account();


CREATE TABLE billing.bank_statements (
    id                  uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid           NOT NULL,
    bank_account_id     uuid           NOT NULL,
    file_hash           text           NOT NULL,
    file_position       smallint       NOT NULL DEFAULT 0,
    file_name           text,
    source_format       text           NOT NULL,
    statement_reference text,
    period_start        date           NOT NULL,
    period_end          date           NOT NULL,
    currency            text           NOT NULL DEFAULT 'GBP',
    opening_balance     numeric(14, 2),
    closing_balance     numeric(14, 2),
    balance_check       text           NOT NULL,
    entries             integer        NOT NULL,
    entries_added       integer        NOT NULL,
    imported_at         timestamptz    NOT NULL DEFAULT now(),
    imported_by         text           NOT NULL,
    CONSTRAINT bank_statements_id_esco_key UNIQUE (id, esco),
    CONSTRAINT bank_statements_file_key UNIQUE (esco, bank_account_id, file_hash, file_position),
    CONSTRAINT bank_statements_bank_account_esco_fkey
        FOREIGN KEY (bank_account_id, esco) REFERENCES billing.bank_accounts (id, esco),
    CONSTRAINT bank_statements_source_format_valid CHECK (source_format IN ('camt053', 'ofx', 'mt940', 'csv')),
    CONSTRAINT bank_statements_file_hash_format CHECK (file_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT bank_statements_period_order CHECK (period_end >= period_start),
    CONSTRAINT bank_statements_currency_gbp CHECK (currency = 'GBP'),
    CONSTRAINT bank_statements_balance_check_valid CHECK (balance_check IN ('running', 'totals', 'unchecked')),
    CONSTRAINT bank_statements_entries_added CHECK (entries_added BETWEEN 0 AND entries)
);
COMMENT ON TABLE billing.bank_statements IS
    'A statement imported from a bank file (file_hash: SHA-256 of the file; file_position: which statement of '
    'the file). balance_check: running (every entry''s running balance checked), totals (opening + entries = '
    'closing), unchecked (the file gives no opening balance and no earlier statement ends the day before, or no '
    'balances at all: a CSV export without a balance column).';
CREATE INDEX bank_statements_account_idx ON billing.bank_statements (bank_account_id, period_end);


CREATE TABLE billing.bank_transactions (
    id              uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco            uuid           NOT NULL,
    bank_account_id uuid           NOT NULL,
    statement_id    uuid           NOT NULL,
    booking_date    date           NOT NULL,
    value_date      date,
    amount          numeric(14, 2) NOT NULL,
    currency        text           NOT NULL DEFAULT 'GBP',
    bank_reference  text,
    counterparty    text,
    remittance      text,
    bank_entry_id   text,
    dedup_key       text           NOT NULL,
    status          text           NOT NULL DEFAULT 'unmatched',
    queue_reason    text,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT bank_transactions_id_esco_key UNIQUE (id, esco),
    CONSTRAINT bank_transactions_dedup_key UNIQUE (esco, bank_account_id, dedup_key),
    CONSTRAINT bank_transactions_bank_account_esco_fkey
        FOREIGN KEY (bank_account_id, esco) REFERENCES billing.bank_accounts (id, esco),
    CONSTRAINT bank_transactions_statement_esco_fkey
        FOREIGN KEY (statement_id, esco) REFERENCES billing.bank_statements (id, esco),
    CONSTRAINT bank_transactions_currency_gbp CHECK (currency = 'GBP'),
    CONSTRAINT bank_transactions_status_valid CHECK (status IN ('unmatched', 'matched', 'dismissed'))
);
COMMENT ON TABLE billing.bank_transactions IS
    'Entries of the bank''s statements, each once (dedup_key: booking date, amount and the occurrence of that '
    'amount that day, in the bank''s order: the same in every format). amount: signed, credits positive. '
    'status unmatched (queue_reason says why) -> matched | dismissed, by a rule or an operator (bank_decisions).';
COMMENT ON COLUMN billing.bank_transactions.bank_entry_id IS
    'The bank''s own id of the entry where the format gives one (CAMT AcctSvcrRef, OFX FITID, MT940 bank '
    'reference): kept for the operator, not for deduplication (each format numbers entries its own way).';
CREATE INDEX bank_transactions_queue_idx ON billing.bank_transactions (bank_account_id, booking_date)
    WHERE status = 'unmatched';
CREATE INDEX bank_transactions_statement_idx ON billing.bank_transactions (statement_id);


-- A processor's payout as it arrived in the bank: the batch of processor
-- payments it pays (processor_payout_payments), gross, the fees it kept.
CREATE TABLE billing.processor_payouts (
    id                  uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid           NOT NULL,
    bank_transaction_id uuid           NOT NULL,
    provider            text           NOT NULL DEFAULT 'stripe',
    payout_reference    text,
    gross               numeric(14, 2) NOT NULL,
    fees                numeric(14, 2) NOT NULL,
    amount              numeric(14, 2) NOT NULL,
    payments            integer        NOT NULL,
    journal_id          uuid           NOT NULL,
    created_at          timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT processor_payouts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT processor_payouts_bank_transaction_key UNIQUE (bank_transaction_id),
    CONSTRAINT processor_payouts_journal_key UNIQUE (journal_id),
    CONSTRAINT processor_payouts_bank_transaction_esco_fkey
        FOREIGN KEY (bank_transaction_id, esco) REFERENCES billing.bank_transactions (id, esco),
    CONSTRAINT processor_payouts_journal_esco_fkey FOREIGN KEY (journal_id, esco) REFERENCES billing.journals (id, esco),
    CONSTRAINT processor_payouts_provider_valid CHECK (provider = 'stripe'),
    CONSTRAINT processor_payouts_adds_up CHECK (gross - fees = amount AND fees >= 0 AND amount > 0 AND payments > 0)
);
COMMENT ON TABLE billing.processor_payouts IS
    'A processor payout received in the bank: gross (the payments it pays) - fees = amount (the bank entry); '
    'its journal moves the money from processor_clearing to cash_at_bank and the fees to processor_fees.';

CREATE TABLE billing.processor_payout_payments (
    payout_id  uuid           NOT NULL,
    esco       uuid           NOT NULL,
    payment_id uuid           NOT NULL,
    amount     numeric(8, 2)  NOT NULL,
    CONSTRAINT processor_payout_payments_pkey PRIMARY KEY (payout_id, payment_id),
    CONSTRAINT processor_payout_payments_payment_key UNIQUE (payment_id),
    CONSTRAINT processor_payout_payments_payout_esco_fkey
        FOREIGN KEY (payout_id, esco) REFERENCES billing.processor_payouts (id, esco),
    CONSTRAINT processor_payout_payments_payment_esco_fkey
        FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco)
);
COMMENT ON TABLE billing.processor_payout_payments IS
    'Which processor payments a payout pays (each payment paid out once).';


-- What was decided about a bank entry, once: matched (by a rule or an
-- operator), split (into parts, each matched), dismissed (not ours).
CREATE TABLE billing.bank_decisions (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid        NOT NULL,
    transaction_id uuid        NOT NULL,
    action         text        NOT NULL,
    rule           text,
    reason         text        NOT NULL,
    decided_by     text        NOT NULL,
    decided_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bank_decisions_id_esco_key UNIQUE (id, esco),
    CONSTRAINT bank_decisions_once UNIQUE (transaction_id),
    CONSTRAINT bank_decisions_transaction_esco_fkey
        FOREIGN KEY (transaction_id, esco) REFERENCES billing.bank_transactions (id, esco),
    CONSTRAINT bank_decisions_action_valid CHECK (action IN ('matched', 'split', 'dismissed')),
    CONSTRAINT bank_decisions_rule_valid CHECK (rule IN ('processor_payout', 'account_reference')),
    CONSTRAINT bank_decisions_rules_match CHECK (rule IS NULL OR action = 'matched'),
    CONSTRAINT bank_decisions_reason_not_blank CHECK (btrim(reason) <> '')
);
COMMENT ON TABLE billing.bank_decisions IS
    'The decisions log: for each bank entry decided, the action (matched, split, dismissed), the rule that '
    'decided it (processor_payout, account_reference) or null for an operator, why, who and when.';
COMMENT ON COLUMN billing.bank_decisions.decided_by IS
    'The operator (the token''s sub) or, for a rule, whoever ran the import or the matching.';

-- The parts a decision matched: each to one payment (a bank transfer made or
-- found) or one processor payout.
CREATE TABLE billing.bank_matches (
    id             uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid           NOT NULL,
    decision_id    uuid           NOT NULL,
    transaction_id uuid           NOT NULL,
    part           smallint       NOT NULL,
    amount         numeric(14, 2) NOT NULL,
    payment_id     uuid,
    payout_id      uuid,
    CONSTRAINT bank_matches_id_esco_key UNIQUE (id, esco),
    CONSTRAINT bank_matches_part_key UNIQUE (transaction_id, part),
    CONSTRAINT bank_matches_payment_once UNIQUE (payment_id),
    CONSTRAINT bank_matches_payout_once UNIQUE (payout_id),
    CONSTRAINT bank_matches_decision_esco_fkey FOREIGN KEY (decision_id, esco) REFERENCES billing.bank_decisions (id, esco),
    CONSTRAINT bank_matches_transaction_esco_fkey
        FOREIGN KEY (transaction_id, esco) REFERENCES billing.bank_transactions (id, esco),
    CONSTRAINT bank_matches_payment_esco_fkey FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco),
    CONSTRAINT bank_matches_payout_esco_fkey FOREIGN KEY (payout_id, esco) REFERENCES billing.processor_payouts (id, esco),
    CONSTRAINT bank_matches_one_target CHECK (num_nonnulls(payment_id, payout_id) = 1),
    CONSTRAINT bank_matches_amount_positive CHECK (amount > 0)
);
COMMENT ON TABLE billing.bank_matches IS
    'What a bank entry (or each part of a split one) paid: one payment or one processor payout; a payment is '
    'funded by at most one entry part.';


-- The account keys a payer's reference may carry, tolerant of the usual
-- mangling: case, spaces and punctuation, prefixes (REF, ACC, ACCT, ACCOUNT,
-- A/C, NO, CUST, FLOWS ...) glued on or not, leading zeros. Each word gives a
-- key (its digits or letters-and-digits, leading zeros off), and so do all the
-- reference's digits run together ("10 01" -> 1001); keys are 3 to 12
-- characters (shorter ones match too much).
CREATE FUNCTION billing.bank_reference_keys(p_reference text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    WITH cleaned AS (
        SELECT pg_catalog.regexp_replace(
                   pg_catalog.regexp_replace(pg_catalog.upper(coalesce(p_reference, '')), '[^A-Z0-9]+', ' ', 'g'),
                   '\m(REFERENCE|REF|ACCOUNT|ACCT|ACC|AC|A C|NUMBER|NO|NUM|CUSTOMER|CUST|FLOWS|PAYMENT|PMT)(?=[0-9]|\M)',
                   ' ', 'g') AS t
    ),
    words AS (
        SELECT pg_catalog.ltrim(w, '0') AS key
        FROM cleaned, pg_catalog.regexp_split_to_table(pg_catalog.btrim(cleaned.t), ' +') AS w
        UNION
        SELECT pg_catalog.ltrim(pg_catalog.regexp_replace(cleaned.t, '[^0-9]', '', 'g'), '0') FROM cleaned
    )
    SELECT coalesce(pg_catalog.array_agg(DISTINCT w.key ORDER BY w.key), '{}') FROM words AS w
    WHERE pg_catalog.length(w.key) BETWEEN 3 AND 12
$$;
COMMENT ON FUNCTION billing.bank_reference_keys(text) IS
    'Account numbers a payer''s reference may name (leading zeros off), tolerant of case, spaces, prefixes.';

-- An account number as the references are compared with it.
CREATE FUNCTION billing.account_key(p_account_number text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.ltrim(pg_catalog.upper(p_account_number), '0');


-- The bank account an import or a command names (its name, or its id), among
-- those the caller sees; an unknown one is refused listing the known ones.
CREATE FUNCTION billing.bank_account_named(p_name text, p_esco_code text DEFAULT NULL) RETURNS billing.bank_accounts
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    found billing.bank_accounts[];
    known text;
BEGIN
    found := ARRAY(SELECT b FROM billing.bank_accounts AS b JOIN flows.escos AS e ON e.id = b.esco
                   WHERE (b.name = p_name OR b.id::text = p_name) AND (p_esco_code IS NULL OR e.code = p_esco_code));
    IF pg_catalog.cardinality(found) = 1 THEN
        RETURN found[1];
    END IF;
    SELECT pg_catalog.string_agg(e.code || '/' || b.name, ', ' ORDER BY e.code, b.name) INTO known
    FROM billing.bank_accounts AS b JOIN flows.escos AS e ON e.id = b.esco
    WHERE p_esco_code IS NULL OR e.code = p_esco_code;
    IF pg_catalog.cardinality(found) > 1 THEN
        RAISE EXCEPTION 'bank_account % is the name of accounts of several ESCOs (%): name the ESCO too', p_name, known
            USING ERRCODE = 'invalid_parameter_value', HINT = 'esco_code (flows bank import --esco CODE)';
    END IF;
    RAISE EXCEPTION 'bank_account % is not a bank account you can import into; known: %', coalesce(p_name, 'null'),
        coalesce(known, 'none (add one: POST /bank_accounts)')
        USING ERRCODE = 'invalid_parameter_value', HINT = 'known bank accounts are listed as ESCO/name';
END
$$;
COMMENT ON FUNCTION billing.bank_account_named(text, text) IS
    'The visible bank account with that name (or id), else 22023 listing the known ones (ESCO/name).';


-- One bank entry decided: the parts (a JSON array of {amount, account_id} (a
-- bank transfer for that account: a payment, its journal and top-up),
-- {amount, payment_id} (a bank transfer already recorded), or {amount,
-- payout_payment_ids, payout_reference} (a processor payout of those
-- payments)), or none to dismiss it. Locks the entry; refuses, naming the
-- field, an entry already decided, parts not adding up, a target not fit.
-- Returns the decision's id.
CREATE FUNCTION billing.decide_bank_transaction(p_transaction uuid, p_action text, p_parts jsonb, p_rule text,
                                                p_reason text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    entry billing.bank_transactions;
    decision uuid;
    part jsonb;
    n integer := 0;
    part_amount numeric;
    total numeric := 0;
    account billing.accounts;
    payment billing.payments;
    payout uuid;
    journal uuid;
    gross numeric;
    batch integer;
    received timestamptz;
    field text;  -- how the refusals name a part: parts[n]. in a split, nothing when the entry is matched whole
BEGIN
    SELECT * INTO entry FROM billing.bank_transactions AS t WHERE t.id = p_transaction FOR UPDATE;
    IF entry.id IS NULL THEN
        RAISE EXCEPTION 'transaction_id names no bank entry (%)', coalesce(p_transaction::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF entry.status <> 'unmatched' THEN
        RAISE EXCEPTION 'transaction_id names an entry already %: %', entry.status,
            (SELECT pg_catalog.format('%s by %s at %s (%s)', d.action, coalesce('rule ' || d.rule, d.decided_by),
                                      d.decided_at, d.reason)
             FROM billing.bank_decisions AS d WHERE d.transaction_id = entry.id)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'each bank entry is decided once';
    ELSIF p_reason IS NULL OR pg_catalog.btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'reason must say why' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_action <> 'dismissed' AND entry.amount <= 0 THEN
        RAISE EXCEPTION 'transaction_id names a payment out (% GBP): only money in is matched; dismiss it with a reason',
            entry.amount USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO billing.bank_decisions (esco, transaction_id, action, rule, reason, decided_by)
    VALUES (entry.esco, entry.id, p_action, p_rule, p_reason, flows.requester())
    RETURNING id INTO decision;
    received := flows.uk_day_start(coalesce(entry.value_date, entry.booking_date));
    FOR part IN SELECT value FROM pg_catalog.jsonb_array_elements(coalesce(p_parts, '[]')) LOOP
        n := n + 1;
        field := CASE WHEN p_action = 'split' THEN pg_catalog.format('parts[%s].', n - 1) ELSE '' END;
        IF pg_catalog.jsonb_typeof(part) <> 'object' OR pg_catalog.jsonb_typeof(part -> 'amount') <> 'number'
           OR (part ->> 'amount')::numeric <= 0 OR (part ->> 'amount')::numeric <> round((part ->> 'amount')::numeric, 2) THEN
            RAISE EXCEPTION '%amount must be a positive amount in whole pence, got %', field,
                coalesce(part ->> 'amount', 'nothing') USING ERRCODE = 'invalid_parameter_value';
        END IF;
        part_amount := (part ->> 'amount')::numeric;
        total := total + part_amount;
        IF part ? 'account_id' THEN
            SELECT * INTO account FROM billing.accounts AS a WHERE a.id = (part ->> 'account_id')::uuid;
            IF account.id IS NULL OR account.esco <> entry.esco THEN
                RAISE EXCEPTION '%account_id names no account (%)', field, part ->> 'account_id'
                    USING ERRCODE = 'invalid_parameter_value';
            ELSIF account.status = 'closed' THEN
                RAISE EXCEPTION '%account_id names account %, which is closed', field, account.account_number
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'match it to another account, or dismiss it';
            END IF;
            PERFORM billing.check_amount(field || 'amount', part_amount, 0.01, 500);
            INSERT INTO billing.payments (esco, account_id, customer_id, amount, status, provider, origin,
                                          provider_reference, description, scheduled_at, received_at, requested_by)
            VALUES (entry.esco, account.id, billing.payer_at(account.id, received), part_amount, 'succeeded',
                    'bank_transfer', 'bank_statement',
                    'bank:' || entry.id || CASE WHEN p_action = 'split' THEN '/' || n ELSE '' END,
                    pg_catalog.left(pg_catalog.concat_ws(' ', 'bank transfer', entry.bank_reference,
                                                         'from ' || entry.counterparty), 200),
                    received, received, flows.requester())
            RETURNING * INTO payment;
            PERFORM billing.payment_received(payment);
            INSERT INTO billing.bank_matches (esco, decision_id, transaction_id, part, amount, payment_id)
            VALUES (entry.esco, decision, entry.id, n, part_amount, payment.id);
        ELSIF part ? 'payment_id' THEN
            SELECT * INTO payment FROM billing.payments AS p WHERE p.id = (part ->> 'payment_id')::uuid;
            IF payment.id IS NULL OR payment.esco <> entry.esco THEN
                RAISE EXCEPTION '%payment_id names no payment (%)', field, part ->> 'payment_id'
                    USING ERRCODE = 'invalid_parameter_value';
            ELSIF payment.provider <> 'bank_transfer' OR payment.status NOT IN ('succeeded', 'refunded')
                  OR payment.amount <> part_amount THEN
                RAISE EXCEPTION '%payment_id names a % % payment of % GBP: only a received bank transfer of % GBP fits',
                    field, payment.status, payment.provider, payment.amount, part_amount
                    USING ERRCODE = 'invalid_parameter_value';
            ELSIF EXISTS (SELECT FROM billing.bank_matches AS m WHERE m.payment_id = payment.id) THEN
                RAISE EXCEPTION '%payment_id names payment % which another bank entry already funds', field,
                    payment.id USING ERRCODE = 'invalid_parameter_value';
            END IF;
            INSERT INTO billing.bank_matches (esco, decision_id, transaction_id, part, amount, payment_id)
            VALUES (entry.esco, decision, entry.id, n, part_amount, payment.id);
        ELSIF part ? 'payout_payment_ids' THEN
            IF pg_catalog.jsonb_typeof(part -> 'payout_payment_ids') <> 'array'
               OR pg_catalog.jsonb_array_length(part -> 'payout_payment_ids') = 0 THEN
                RAISE EXCEPTION '%payout_payment_ids must list the processor payments the payout pays', field
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT count(*), sum(p.amount - p.refunded_amount) INTO batch, gross
            FROM billing.payments AS p
            WHERE p.id IN (SELECT x::uuid FROM pg_catalog.jsonb_array_elements_text(part -> 'payout_payment_ids') AS x)
              AND p.esco = entry.esco AND p.provider = 'stripe' AND p.status IN ('succeeded', 'refunded')
              AND NOT EXISTS (SELECT FROM billing.processor_payout_payments AS pp WHERE pp.payment_id = p.id);
            IF batch <> (SELECT count(DISTINCT x) FROM pg_catalog.jsonb_array_elements_text(part -> 'payout_payment_ids') AS x)
            THEN
                RAISE EXCEPTION '%payout_payment_ids: % of them are not received processor payments of this '
                                'ESCO not yet paid out', field,
                    pg_catalog.jsonb_array_length(part -> 'payout_payment_ids') - batch
                    USING ERRCODE = 'invalid_parameter_value';
            ELSIF gross < part_amount THEN
                RAISE EXCEPTION '%payout_payment_ids: the payments come to % GBP, less than the payout of % GBP', field,
                    gross,
                    part_amount USING ERRCODE = 'invalid_parameter_value', HINT = 'a payout is the payments less fees';
            END IF;
            journal := billing.post_journal(entry.esco, 'processor_payout',
                pg_catalog.format('stripe payout %s: %s payments, gross %s, fees %s',
                                  coalesce(part ->> 'payout_reference', entry.bank_reference, entry.id::text), batch,
                                  gross, gross - part_amount),
                pg_catalog.jsonb_build_array(
                    pg_catalog.jsonb_build_object('ledger_account', 'cash_at_bank', 'amount', part_amount),
                    pg_catalog.jsonb_build_object('ledger_account', 'processor_fees', 'amount', gross - part_amount),
                    pg_catalog.jsonb_build_object('ledger_account', 'processor_clearing', 'amount', -gross)));
            INSERT INTO billing.processor_payouts (esco, bank_transaction_id, payout_reference, gross, fees, amount,
                                                   payments, journal_id)
            VALUES (entry.esco, entry.id, part ->> 'payout_reference', gross, gross - part_amount, part_amount, batch,
                    journal)
            RETURNING id INTO payout;
            INSERT INTO billing.processor_payout_payments (payout_id, esco, payment_id, amount)
            SELECT payout, entry.esco, p.id, p.amount - p.refunded_amount FROM billing.payments AS p
            WHERE p.id IN (SELECT x::uuid FROM pg_catalog.jsonb_array_elements_text(part -> 'payout_payment_ids') AS x);
            INSERT INTO billing.bank_matches (esco, decision_id, transaction_id, part, amount, payout_id)
            VALUES (entry.esco, decision, entry.id, n, part_amount, payout);
        ELSE
            RAISE EXCEPTION '% must name account_id, payment_id or payout_payment_ids',
                coalesce(NULLIF(pg_catalog.rtrim(field, '.'), ''), 'the match')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF p_action = 'dismissed' AND n > 0 OR p_action <> 'dismissed' AND n = 0 THEN
        RAISE EXCEPTION 'a % entry takes %', p_action,
            CASE WHEN p_action = 'dismissed' THEN 'no parts' ELSE 'at least one part' END
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_action <> 'dismissed' AND total <> entry.amount THEN
        RAISE EXCEPTION 'parts add up to % GBP but the bank entry is % GBP', total, entry.amount
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the parts of a split add up to the entry';
    END IF;
    UPDATE billing.bank_transactions AS t
    SET status = CASE WHEN p_action = 'dismissed' THEN 'dismissed' ELSE 'matched' END, queue_reason = NULL
    WHERE t.id = entry.id;
    RETURN decision;
END
$$;
COMMENT ON FUNCTION billing.decide_bank_transaction(uuid, text, jsonb, text, text) IS
    'Decides a bank entry once (matched, split, dismissed): payments, payouts and their journals, the decision, '
    'in the caller''s transaction.';

-- An operator matches a queued entry whole to one target ({account_id},
-- {payment_id} or {payout_payment_ids}): the api's match_bank_transaction_to_*.
CREATE FUNCTION billing.match_bank_transaction(p_transaction uuid, p_target jsonb, p_reason text) RETURNS uuid
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT billing.decide_bank_transaction(
        p_transaction, 'matched',
        pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'amount', (SELECT t.amount FROM billing.bank_transactions AS t WHERE t.id = p_transaction)) || p_target),
        NULL, coalesce(NULLIF(pg_catalog.btrim(p_reason), ''), 'matched by an operator'))
$$;


-- The processor payments a payout on p_day of p_amount pays: the oldest not
-- yet paid out, received before that day, the shortest run of them whose
-- gross covers the payout with fees within the account's limits (rate x
-- gross + fixed per payment). Null when none fits.
CREATE FUNCTION billing.payout_batch(p_account billing.bank_accounts, p_day date, p_amount numeric,
                                     OUT payment_ids uuid[], OUT gross numeric)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    WITH unpaid AS (
        SELECT p.id, p.received_at,
               sum(p.amount - p.refunded_amount) OVER w AS running, row_number() OVER w AS n
        FROM billing.payments AS p
        WHERE p.esco = p_account.esco AND p.provider = 'stripe' AND p.status IN ('succeeded', 'refunded')
          AND p.received_at < flows.uk_day_start(p_day)
          AND NOT EXISTS (SELECT FROM billing.processor_payout_payments AS pp WHERE pp.payment_id = p.id)
        WINDOW w AS (ORDER BY p.received_at, p.id)
    ),
    cut AS (
        SELECT u.n, u.running FROM unpaid AS u
        WHERE u.running >= p_amount
          AND u.running - p_amount <= round(u.running * p_account.payout_fee_rate, 2) + u.n * p_account.payout_fee_fixed
        ORDER BY u.n LIMIT 1
    )
    SELECT ARRAY(SELECT u.id FROM unpaid AS u, cut WHERE u.n <= cut.n ORDER BY u.n), cut.running FROM cut
$$;


-- Runs the matching rules, in order, over a bank account's unmatched
-- entries (after each import; again whenever asked):
--   1. processor_payout: a credit from the processor (its counterparty, reference
--      or remittance names processor_counterparty) settles the batch of
--      processor payments it pays (billing.payout_batch);
--   2. account_reference: a credit whose reference (else remittance) names
--      exactly one open account of the ESCO (billing.bank_reference_keys)
--      becomes a bank_transfer payment for it (0.01-500 GBP);
-- then every entry still unmatched gets its queue_reason. Returns counts.
CREATE FUNCTION billing.match_bank_transactions(p_bank_account uuid) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.bank_accounts;
    entry record;
    batch record;
    payouts integer := 0;
    transfers integer := 0;
    fitting jsonb;
    one jsonb;
BEGIN
    SELECT * INTO account FROM billing.bank_accounts AS b WHERE b.id = p_bank_account;
    FOR entry IN
        SELECT t.id, t.booking_date, t.amount, t.bank_reference, t.remittance FROM billing.bank_transactions AS t
        WHERE t.bank_account_id = account.id AND t.status = 'unmatched' AND t.amount > 0
          AND pg_catalog.concat_ws(' ', t.counterparty, t.bank_reference, t.remittance)
              ILIKE '%' || account.processor_counterparty || '%'
        ORDER BY t.booking_date, t.dedup_key
    LOOP
        SELECT * INTO batch FROM billing.payout_batch(account, entry.booking_date, entry.amount);
        IF batch.payment_ids IS NULL THEN
            UPDATE billing.bank_transactions AS t
            SET queue_reason = pg_catalog.format('a %s payout, but no run of processor payments received before %s '
                                                 'covers %s GBP within the fee limits', account.processor_counterparty,
                                                 entry.booking_date, entry.amount)
            WHERE t.id = entry.id;
            CONTINUE;
        END IF;
        PERFORM billing.decide_bank_transaction(entry.id, 'matched',
            pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                'amount', entry.amount, 'payout_payment_ids', pg_catalog.to_jsonb(batch.payment_ids),
                'payout_reference', pg_catalog.substring(pg_catalog.concat_ws(' ', entry.bank_reference,
                                                                              entry.remittance), 'po_[A-Za-z0-9]+'))),
            'processor_payout',
            pg_catalog.format('%s payout of %s GBP = %s processor payments received before %s (gross %s) - fees %s',
                              account.processor_counterparty, entry.amount, pg_catalog.cardinality(batch.payment_ids),
                              entry.booking_date, batch.gross, batch.gross - entry.amount));
        payouts := payouts + 1;
    END LOOP;

    -- The credits the reference names, read once: those naming exactly one open account (and not over 500
    -- GBP) collected to be made payments one by one (each is a payment, journal and top-up), every other one
    -- given its queue reason in the same statement, set-based.
    WITH credits AS (
        SELECT t.id, t.esco, t.amount,
               coalesce(NULLIF(pg_catalog.btrim(t.bank_reference), ''), t.remittance) AS reference
        FROM billing.bank_transactions AS t
        WHERE t.bank_account_id = account.id AND t.status = 'unmatched' AND t.amount > 0
          AND pg_catalog.concat_ws(' ', t.counterparty, t.bank_reference, t.remittance)
              NOT ILIKE '%' || account.processor_counterparty || '%'
    ),
    named AS (
        SELECT c.id, c.amount, c.reference,
               pg_catalog.array_agg(DISTINCT a.id) FILTER (WHERE a.id IS NOT NULL) AS accounts,
               pg_catalog.array_agg(DISTINCT a.account_number) FILTER (WHERE a.id IS NOT NULL) AS numbers,
               coalesce(pg_catalog.bool_or(a.status = 'closed'), false) AS closed
        FROM credits AS c
        LEFT JOIN LATERAL pg_catalog.unnest(billing.bank_reference_keys(c.reference)) AS k (key) ON true
        LEFT JOIN billing.accounts AS a ON a.esco = c.esco AND billing.account_key(a.account_number) = k.key
        GROUP BY c.id, c.amount, c.reference
    ),
    fitted AS MATERIALIZED (
        SELECT n.*, (coalesce(pg_catalog.cardinality(n.accounts), 0) = 1 AND NOT n.closed AND n.amount <= 500) AS fits
        FROM named AS n
    ),
    queued AS (
        UPDATE billing.bank_transactions AS t
        SET queue_reason = CASE
            WHEN n.accounts IS NULL THEN pg_catalog.format('no account number in the reference %s',
                                                           coalesce(pg_catalog.quote_literal(n.reference), '(none)'))
            WHEN pg_catalog.cardinality(n.accounts) > 1
                THEN pg_catalog.format('the reference %s names several accounts (%s)',
                                       pg_catalog.quote_literal(n.reference), pg_catalog.array_to_string(n.numbers, ', '))
            WHEN n.closed THEN pg_catalog.format('account %s is closed', n.numbers[1])
            ELSE pg_catalog.format('%s GBP for account %s is over the 500 GBP a payment may be: split it',
                                   n.amount, n.numbers[1])
        END
        FROM fitted AS n
        WHERE t.id = n.id AND NOT n.fits
    )
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', n.id, 'amount', n.amount, 'account', n.accounts[1], 'number', n.numbers[1],
               'reference', n.reference) ORDER BY n.id), '[]')
    INTO fitting
    FROM fitted AS n
    WHERE n.fits;
    FOR one IN SELECT value FROM pg_catalog.jsonb_array_elements(fitting) LOOP
        PERFORM billing.decide_bank_transaction((one ->> 'id')::uuid, 'matched',
            pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('amount', (one ->> 'amount')::numeric,
                                                                       'account_id', one ->> 'account')),
            'account_reference',
            pg_catalog.format('reference %s names account %s', pg_catalog.quote_literal(one ->> 'reference'),
                              one ->> 'number'));
        transfers := transfers + 1;
    END LOOP;

    UPDATE billing.bank_transactions AS t
    SET queue_reason = CASE WHEN t.amount < 0 THEN 'a payment out (debit): dismiss it with what it was'
                            ELSE 'nothing to match: zero amount' END
    WHERE t.bank_account_id = account.id AND t.status = 'unmatched' AND t.amount <= 0 AND t.queue_reason IS NULL;
    RETURN pg_catalog.jsonb_build_object(
        'payouts', payouts, 'bank_transfers', transfers,
        'queued', (SELECT count(*) FROM billing.bank_transactions AS t
                   WHERE t.bank_account_id = account.id AND t.status = 'unmatched'));
END
$$;
COMMENT ON FUNCTION billing.match_bank_transactions(uuid) IS
    'The matching rules in order (processor_payout, account_reference) over a bank account''s unmatched entries; '
    'what stays unmatched gets its queue_reason. Returns {payouts, bank_transfers, queued}.';


-- What is wrong with one entry of a statement (null: nothing), for the
-- refusal of a file whose entries do not all read (only called then).
CREATE FUNCTION billing.bank_entry_problem(p_entry jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
DECLARE
    field text;
BEGIN
    IF pg_catalog.jsonb_typeof(p_entry) IS DISTINCT FROM 'object' THEN
        RETURN 'must be an object';
    END IF;
    FOREACH field IN ARRAY ARRAY['booking_date', 'amount'] LOOP
        IF p_entry ->> field IS NULL THEN
            RETURN field || ' is missing';
        END IF;
    END LOOP;
    BEGIN
        field := 'booking_date';
        PERFORM (p_entry ->> 'booking_date')::date;
        field := 'value_date';
        PERFORM (p_entry ->> 'value_date')::date;
        field := 'amount';
        IF (p_entry ->> 'amount')::numeric <> round((p_entry ->> 'amount')::numeric, 2) THEN
            RETURN 'amount must be in whole pence, got ' || (p_entry ->> 'amount');
        END IF;
        field := 'balance';
        PERFORM (p_entry ->> 'balance')::numeric;
    EXCEPTION WHEN data_exception THEN
        RETURN pg_catalog.format('%s is not a %s: %s', field,
                                 CASE WHEN field LIKE '%date' THEN 'date (YYYY-MM-DD)' ELSE 'decimal amount' END,
                                 p_entry ->> field);
    END;
    IF p_entry ? 'currency' AND p_entry ->> 'currency' IS DISTINCT FROM 'GBP' THEN
        RETURN 'currency must be GBP, got ' || coalesce(p_entry ->> 'currency', 'null');
    END IF;
    RETURN NULL;
END
$$;

-- "entry 7 (2026-11-04, 12.40, reference 'ACC 1001')": how refusals name an entry.
CREATE FUNCTION billing.describe_bank_entry(p_n bigint, p_date date, p_amount numeric, p_reference text,
                                            p_counterparty text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = ''
RETURN pg_catalog.format('entry %s (%s, %s%s%s)', p_n, p_date, p_amount,
                         ', reference ' || pg_catalog.quote_literal(NULLIF(p_reference, '')),
                         ', from ' || pg_catalog.quote_literal(NULLIF(p_counterparty, '')));

-- Imports one statement of a file (p_statement: the normalised shape,
-- docs/reconciliation.md) into a bank account: checks it, refuses it when its
-- balances do not add up (naming the entry where the running balance breaks),
-- adds the entries not seen before. Returns what it did.
CREATE FUNCTION billing.import_bank_statement(p_account billing.bank_accounts, p_format text, p_file_hash text,
                                              p_file_name text, p_position integer, p_statement jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    where_ text := pg_catalog.format('statements[%s]', p_position);
    opening numeric;
    closing numeric;
    period_from date;
    period_to date;
    checked text;
    total numeric;
    running_given boolean;
    entry_count integer;
    added integer;
    statement_id uuid;
    broken record;
    problem record;
    hint text;
BEGIN
    IF pg_catalog.jsonb_typeof(p_statement) IS DISTINCT FROM 'object'
       OR pg_catalog.jsonb_typeof(p_statement -> 'entries') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION '% must be an object with an entries array', where_ USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_statement ->> 'currency', 'GBP') <> p_account.currency THEN
        RAISE EXCEPTION '%.currency is %, bank account % is in %', where_, p_statement ->> 'currency', p_account.name,
            p_account.currency USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the file must be this account's (when it says which)
    IF NULLIF(p_statement #>> '{account,iban}', '') IS NOT NULL AND p_account.iban IS NOT NULL
       AND pg_catalog.upper(pg_catalog.replace(p_statement #>> '{account,iban}', ' ', '')) <> p_account.iban
       OR NULLIF(p_statement #>> '{account,account_number}', '') IS NOT NULL AND p_account.account_number IS NOT NULL
          AND p_statement #>> '{account,account_number}' <> p_account.account_number THEN
        RAISE EXCEPTION '%.account: the file is a statement of %, not of bank account % (%)', where_,
            coalesce(p_statement #>> '{account,iban}', p_statement #>> '{account,account_number}'), p_account.name,
            coalesce(p_account.iban, p_account.sort_code || ' ' || p_account.account_number)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'choose the --bank-account the file belongs to';
    END IF;
    SELECT min(p.n) AS n, (array_agg(p.problem ORDER BY p.n))[1] AS problem INTO problem
    FROM (SELECT x.n, billing.bank_entry_problem(x.v) AS problem
          FROM pg_catalog.jsonb_array_elements(p_statement -> 'entries') WITH ORDINALITY AS x (v, n)
          WHERE pg_catalog.jsonb_typeof(x.v) <> 'object' OR NOT x.v ? 'booking_date' OR NOT x.v ? 'amount'
             OR x.v ->> 'amount' !~ '^-?[0-9]+(\.[0-9]{1,2})?$' OR x.v ->> 'booking_date' !~ '^\d{4}-\d{2}-\d{2}$'
             OR coalesce(x.v ->> 'value_date', '2000-01-01') !~ '^\d{4}-\d{2}-\d{2}$'
             OR coalesce(x.v ->> 'balance', '0') !~ '^-?[0-9]+(\.[0-9]{1,2})?$'
             OR coalesce(x.v ->> 'currency', 'GBP') <> 'GBP') AS p
    WHERE p.problem IS NOT NULL OR true;
    IF problem.n IS NOT NULL THEN
        RAISE EXCEPTION '%.entries[%]: %', where_, problem.n - 1,
            coalesce(problem.problem, 'amount must be a decimal in whole pence, dates YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        opening := (p_statement ->> 'opening_balance')::numeric;
        closing := (p_statement ->> 'closing_balance')::numeric;
        period_from := (p_statement ->> 'period_start')::date;
        period_to := (p_statement ->> 'period_end')::date;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION '%: opening_balance and closing_balance must be decimal amounts, period_start and period_end '
                        'dates (YYYY-MM-DD)', where_ USING ERRCODE = 'invalid_parameter_value';
    END;
    IF period_from IS NULL OR period_to IS NULL OR period_to < period_from THEN
        RAISE EXCEPTION '% needs period_start and period_end (period_end not before period_start)',
            where_ USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- (the same table for plpgsql_check, which cannot see one made at run time)
    PERFORM 'PRAGMA:TABLE: bank_import_entries (n bigint, booking_date date, value_date date, amount numeric(14, 2), '
            'balance numeric(14, 2), bank_reference text, counterparty text, remittance text, bank_entry_id text, '
            'occurrence bigint)';
    CREATE TEMPORARY TABLE IF NOT EXISTS bank_import_entries (
        n bigint, booking_date date, value_date date, amount numeric(14, 2), balance numeric(14, 2),
        bank_reference text, counterparty text, remittance text, bank_entry_id text, occurrence bigint
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.bank_import_entries;
    INSERT INTO pg_temp.bank_import_entries
    SELECT x.n, (x.v ->> 'booking_date')::date, (x.v ->> 'value_date')::date, (x.v ->> 'amount')::numeric,
           (x.v ->> 'balance')::numeric, NULLIF(pg_catalog.btrim(x.v ->> 'reference'), ''),
           NULLIF(pg_catalog.btrim(x.v ->> 'counterparty'), ''), NULLIF(pg_catalog.btrim(x.v ->> 'remittance'), ''),
           NULLIF(pg_catalog.btrim(x.v ->> 'entry_id'), ''),
           row_number() OVER (PARTITION BY (x.v ->> 'booking_date')::date, (x.v ->> 'amount')::numeric ORDER BY x.n)
    FROM pg_catalog.jsonb_array_elements(p_statement -> 'entries') WITH ORDINALITY AS x (v, n);
    SELECT count(*), coalesce(sum(e.amount), 0), count(*) > 0 AND count(e.balance) = count(*)
    INTO entry_count, total, running_given FROM pg_temp.bank_import_entries AS e;
    SELECT e.n INTO broken FROM pg_temp.bank_import_entries AS e
    WHERE e.booking_date NOT BETWEEN period_from AND period_to ORDER BY e.n LIMIT 1;
    IF broken.n IS NOT NULL THEN
        RAISE EXCEPTION '%.entries[%]: booked outside the statement''s period % to %', where_, broken.n - 1,
            period_from, period_to USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The balance check (docs/reconciliation.md, "The balance check").
    IF running_given THEN
        opening := coalesce(opening, (SELECT e.balance - e.amount FROM pg_temp.bank_import_entries AS e ORDER BY e.n LIMIT 1));
        closing := coalesce(closing, (SELECT e.balance FROM pg_temp.bank_import_entries AS e ORDER BY e.n DESC LIMIT 1));
        SELECT r.* INTO broken FROM (
            SELECT e.*, opening + sum(e.amount) OVER (ORDER BY e.n) AS expected,
                        coalesce(lag(e.balance) OVER (ORDER BY e.n), opening) AS before
            FROM pg_temp.bank_import_entries AS e) AS r
        WHERE r.balance <> r.before + r.amount ORDER BY r.n LIMIT 1;
        IF broken.n IS NOT NULL THEN
            RAISE EXCEPTION '% does not add up: the running balance breaks at %: % + % should give %, the bank says % '
                            '(difference %)', where_,
                billing.describe_bank_entry(broken.n, broken.booking_date, broken.amount, broken.bank_reference,
                                            broken.counterparty),
                broken.before, broken.amount, broken.before + broken.amount, broken.balance,
                broken.balance - broken.before - broken.amount
                USING ERRCODE = 'invalid_parameter_value', HINT = 'the file is refused whole; nothing was imported';
        END IF;
        checked := 'running';
    ELSE
        IF opening IS NULL THEN  -- OFX: no opening balance; the statement that ends the day before gives it
            SELECT s.closing_balance INTO opening FROM billing.bank_statements AS s
            WHERE s.bank_account_id = p_account.id AND s.period_end = period_from - 1
            ORDER BY s.imported_at DESC LIMIT 1;
        END IF;
        checked := CASE WHEN opening IS NULL OR closing IS NULL THEN 'unchecked' ELSE 'totals' END;
    END IF;
    IF opening IS NOT NULL AND opening + total <> closing THEN
        SELECT string_agg(billing.describe_bank_entry(e.n, e.booking_date, e.amount, e.bank_reference, e.counterparty)
                          || CASE WHEN e.amount = closing - opening - total THEN ' is exactly the difference (missing?)'
                                  ELSE ' is half the difference (its sign wrong?)' END, '; ' ORDER BY e.n)
        INTO hint FROM pg_temp.bank_import_entries AS e
        WHERE e.amount = -(closing - opening - total) OR 2 * e.amount = -(closing - opening - total)
           OR e.amount = closing - opening - total;
        SELECT e.* INTO broken FROM pg_temp.bank_import_entries AS e ORDER BY e.n DESC LIMIT 1;
        RAISE EXCEPTION '% does not add up: opening % + % entries (%) = %, but the closing balance is % (difference '
                        '%); the file gives no running balances, so the break lies between entry 1 and %', where_,
            opening, entry_count, total, opening + total, closing, closing - opening - total,
            coalesce(billing.describe_bank_entry(broken.n, broken.booking_date, broken.amount, broken.bank_reference,
                                                 broken.counterparty), 'the end (no entries)')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = coalesce(hint || '. ', '') || 'the file is refused whole; nothing was imported';
    END IF;

    INSERT INTO billing.bank_statements (esco, bank_account_id, file_hash, file_position, file_name, source_format,
                                         statement_reference, period_start, period_end, currency, opening_balance,
                                         closing_balance, balance_check, entries, entries_added, imported_by)
    VALUES (p_account.esco, p_account.id, p_file_hash, p_position, p_file_name, p_format,
            NULLIF(p_statement ->> 'statement_id', ''), period_from, period_to, p_account.currency, opening, closing,
            checked, entry_count, 0, flows.requester())
    RETURNING id INTO statement_id;
    INSERT INTO billing.bank_transactions (esco, bank_account_id, statement_id, booking_date, value_date, amount,
                                           bank_reference, counterparty, remittance, bank_entry_id, dedup_key)
    SELECT p_account.esco, p_account.id, statement_id, e.booking_date, e.value_date, e.amount, e.bank_reference,
           e.counterparty, e.remittance, e.bank_entry_id,
           pg_catalog.format('%s|%s|%s', e.booking_date, e.amount, e.occurrence)
    FROM pg_temp.bank_import_entries AS e ORDER BY e.n
    ON CONFLICT ON CONSTRAINT bank_transactions_dedup_key DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    UPDATE billing.bank_statements AS s SET entries_added = added WHERE s.id = statement_id;
    RETURN pg_catalog.jsonb_build_object('id', statement_id, 'period_start', period_from, 'period_end', period_to,
                                         'entries', entry_count, 'added', added, 'duplicates', entry_count - added,
                                         'balance_check', checked);
END
$$;
COMMENT ON FUNCTION billing.import_bank_statement(billing.bank_accounts, text, text, text, integer, jsonb) IS
    'Checks and writes one statement of a bank file (entries seen before are skipped); refuses, naming the entry, '
    'one whose balances do not add up.';

-- ---- rpc/billing/bank.sql ----
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

-- ---- schema/audit_registry.sql ----
-- Bank statements: the accounts (configuration), each entry's decision (the
-- status it moves to; entries are inserted unmatched and not audited then)
-- and the decisions log itself.
CALL flows.audit('billing.bank_accounts');
CALL flows.audit('billing.bank_transactions', ignored_columns => '{queue_reason}',
                 only_rows => '{row}.status <> ''unmatched''');
CALL flows.audit('billing.bank_decisions');

-- ---- rls/privileges.sql ----
-- == Bank statements and matching ==========================================
-- Operators set up the ESCO's bank accounts (and their CSV mapping) through
-- the view, import statements and work the queue through the api RPCs (invoker
-- rights: they hold the table privileges those use, within their ESCO);
-- analysts read. Customers see none of it.
GRANT SELECT ON
    billing.bank_accounts, api.bank_accounts,
    billing.bank_statements, api.bank_statements,
    billing.bank_transactions, api.bank_transactions, api.bank_queue,
    billing.bank_decisions, billing.bank_matches, api.bank_decisions,
    billing.processor_payouts, billing.processor_payout_payments, api.processor_payouts
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON billing.bank_accounts TO flows_admin, flows_operator;
GRANT INSERT (esco, name, bank_name, sort_code, account_number, iban, processor_counterparty, payout_fee_rate,
              payout_fee_fixed, csv_mapping),
      UPDATE (bank_name, processor_counterparty, payout_fee_rate, payout_fee_fixed, csv_mapping)
    ON api.bank_accounts TO flows_admin, flows_operator;
GRANT INSERT ON billing.bank_statements, billing.bank_decisions, billing.bank_matches, billing.processor_payouts,
                billing.processor_payout_payments
    TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.bank_transactions TO flows_admin, flows_operator;
GRANT UPDATE (entries_added) ON billing.bank_statements TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION
    billing.iban_valid(text),
    billing.csv_mapping_problem(jsonb),
    billing.check_bank_account(),
    billing.bank_reference_keys(text),
    billing.account_key(text),
    billing.bank_account_named(text, text),
    billing.decide_bank_transaction(uuid, text, jsonb, text, text),
    billing.match_bank_transaction(uuid, jsonb, text),
    billing.payout_batch(billing.bank_accounts, date, numeric),
    billing.match_bank_transactions(uuid),
    billing.bank_entry_problem(jsonb),
    billing.describe_bank_entry(bigint, date, numeric, text, text),
    billing.import_bank_statement(billing.bank_accounts, text, text, text, integer, jsonb),
    api.import_bank_statement(text, jsonb, text),
    api.rematch_bank_transactions(uuid),
    api.match_bank_transaction_to_account(uuid, uuid, text),
    api.match_bank_transaction_to_payment(uuid, uuid, text),
    api.match_bank_transaction_to_payout(uuid, uuid[], text),
    api.split_bank_transaction(uuid, jsonb, text),
    api.dismiss_bank_transaction(uuid, text)
TO flows_admin, flows_operator;

-- ---- rls/policies.sql ----
-- == Bank statements and matching ==========================================
-- Tenant = ESCO as above; customers see none of it.
ALTER TABLE billing.bank_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_accounts_all ON billing.bank_accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_accounts_own_esco ON billing.bank_accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_statements ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_statements_all ON billing.bank_statements TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_statements_own_esco ON billing.bank_statements TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_transactions ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_transactions_all ON billing.bank_transactions TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_transactions_own_esco ON billing.bank_transactions TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.processor_payouts ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_payouts_all ON billing.processor_payouts TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_payouts_own_esco ON billing.processor_payouts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.processor_payout_payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_payout_payments_all ON billing.processor_payout_payments TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_payout_payments_own_esco ON billing.processor_payout_payments TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_decisions_all ON billing.bank_decisions TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_decisions_own_esco ON billing.bank_decisions TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_matches ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_matches_all ON billing.bank_matches TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_matches_own_esco ON billing.bank_matches TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- ---- schema/gdpr/subjects.sql: the bank entries about a customer ----
-- The bank entries about a customer: those that paid their payments (a bank
-- transfer matched to their account, or to a payment recorded for them), and
-- those that paid nobody (dismissed: money paid back to them, a transfer
-- returned; or still in the queue) whose counterparty, reference or
-- remittance names them (one of their identities as a whole token,
-- gdpr.identity_pattern). An entry that paid another customer's payment or a
-- processor payout is not theirs, whatever it says. (After their erasure the
-- entries that only named them are no longer found: their name is gone.)
CREATE FUNCTION gdpr.customer_bank_transactions(p_customer uuid) RETURNS TABLE (transaction_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT m.transaction_id
    FROM billing.bank_matches AS m JOIN billing.payments AS p ON p.id = m.payment_id
    WHERE p.customer_id = p_customer
    UNION
    SELECT t.id
    FROM billing.bank_transactions AS t
    WHERE t.esco = (SELECT c.esco FROM billing.customers AS c WHERE c.id = p_customer) AND t.status <> 'matched'
      AND pg_catalog.concat_ws(' ', t.counterparty, t.bank_reference, t.remittance)
          ~* (SELECT gdpr.identity_pattern(gdpr.identities(p_customer)))
$$;
COMMENT ON FUNCTION gdpr.customer_bank_transactions(uuid) IS
    'Bank entries about a customer: those that paid their payments, and those that paid nobody but name them.';

-- ---- schema/gdpr/personal_data.sql: where personal data lives in the bank tables ----
-- The bank (bank statements and matching, docs/reconciliation.md): the
-- entries about them (gdpr.customer_bank_transactions: those that paid their
-- payments, and those that paid nobody but name them) carry the payer's name
-- as the bank gives it (pseudonymised: "O OWNER" is no whole identity to
-- scrub) and the reference and remittance they typed (scrubbed); the
-- decisions on them, the operators' reasons (scrubbed). Accounting records:
-- 6 years. Amounts, dates, the dedup key, statuses and every link stay, so
-- that a statement imported again finds its entries and the matches hold.
CALL gdpr.register('billing.bank_transactions',
    subject => '{row}.id IN (SELECT b.transaction_id FROM gdpr.customer_bank_transactions({customer}) AS b)',
    personal => '{"counterparty": "pseudonym", "bank_reference": "scrub", "remittance": "scrub", "queue_reason": "scrub"}',
    retain_until => '{row}.booking_date + interval ''6 years''',
    retention => 'Your payments as they came into (or went out of) the ESCO''s bank account: 6 years (HMRC: '
                 'accounting records); the name and text on them go at erasure.');
CALL gdpr.register('billing.bank_decisions',
    subject => '{row}.transaction_id IN (SELECT b.transaction_id FROM gdpr.customer_bank_transactions({customer}) AS b)'
               ' OR {row}.esco = (SELECT c.esco FROM billing.customers AS c WHERE c.id = {customer})'
               ' AND {row}.reason ~* (SELECT gdpr.identity_pattern(gdpr.identities({customer})))',
    personal => '{"reason": "scrub"}',
    retain_until => '{row}.decided_at::date + interval ''6 years''',
    retention => 'What was decided about those bank entries, and why: 6 years (HMRC: accounting records).');
CALL gdpr.register('billing.bank_matches',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})',
    retain_until => '(SELECT e.booking_date FROM billing.bank_transactions AS e WHERE e.id = {row}.transaction_id)'
                    ' + interval ''6 years''',
    retention => 'Which bank entry paid which of your payments: 6 years (HMRC: accounting records).');
CALL gdpr.register('billing.processor_payout_payments',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})',
    retain_until => '(SELECT o.created_at FROM billing.processor_payouts AS o WHERE o.id = {row}.payout_id)::date'
                    ' + interval ''6 years''',
    retention => 'Which processor payout paid your card payments to the ESCO: 6 years (HMRC: accounting records).');
-- Named like personal data, but no person's.
CALL gdpr.not_personal('billing.bank_accounts', '{sort_code,account_number,iban}',
    'the ESCO''s own bank account, which statements are imported into: no customer''s (a payer''s name and '
    'text are on their bank_transactions)');

-- What must be settled before a customer is erased.
-- A bank entry that names them waits in the bank queue: it may be their money,
-- not yet credited to anyone, and the operator deciding it needs the name the
-- erasure would take (docs/operations.md, "GDPR runbook").
CALL gdpr.erasure_check('bank_entry_queued',
    $$SELECT format('a bank %s of £%s booked %s that names them waits in the bank queue (entry %s)',
                    CASE WHEN t.amount < 0 THEN 'payment out' ELSE 'credit' END, abs(t.amount), t.booking_date, t.id)
      FROM billing.bank_transactions AS t
      WHERE t.id IN (SELECT b.transaction_id FROM gdpr.customer_bank_transactions({customer}) AS b)
        AND t.status = 'unmatched'$$,
    hint => 'decide it first: match it (rpc/match_bank_transaction_to_account, a payment for them to pay back) '
            'or dismiss it saying what it was (rpc/dismiss_bank_transaction)');

-- Where personal data lives: one line per table holding data about customers
-- (gdpr.register, schema/gdpr/registry.sql), read by the export, the erasure
-- and the retention view; columns named like personal data that are not a
-- person's (gdpr.not_personal); and what must be settled before an erasure
-- (gdpr.erasure_check, schema/gdpr/erasure.sql). Loaded after every table; a
-- new table adds its line here and the same line in its migration.
--
-- Retention: HMRC wants VAT records (statements, their lines, payments) for 6
-- years; a claim under a contract can be brought for 6 years after it ends
-- (Limitation Act 1980). Identity and contact data go at erasure; what stays
-- refers to the pseudonym only. Messages sent to a customer are kept a year
-- (enough to answer "did you tell me?"), and go at erasure.

-- The customer: identity and contact data (an open invitation ends with its token).
CALL gdpr.register('billing.customers', subject => '{row}.id = {customer}',
    personal => '{"fullname": "pseudonym", "email": "null", "phone": "null", "invite_token": "null",'
                ' "invite_expires_at": "null"}',
    omit => '{invite_token}',
    retain_until => '(SELECT max(i.period_end) FROM billing.invoices AS i WHERE i.customer_id = {row}.id)'
                    ' + interval ''6 years''',
    retention => 'Name, email and phone: until you ask us to erase them; the (pseudonymised) customer record as '
                 'long as the statements that refer to it (6 years after the last).');

-- Who stood behind which account when, their accounts and contracts, their tariffs.
CALL gdpr.register('billing.customer_accounts', subject => '{row}.customer_id = {customer}',
    retain_until => 'coalesce({row}.end_time, now())::date + interval ''6 years''',
    retention => 'Moves in and out with their reads: 6 years after the move-out (they explain the statements).');
CALL gdpr.register('billing.accounts',
    subject => '{row}.id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca WHERE ca.customer_id = {customer})',
    retention => 'The property''s account: kept with the property (the next occupant is billed on it).');
CALL gdpr.register('billing.contracts', subject => '{row}.customer_id = {customer}',
    retain_until => 'coalesce({row}.end_date, now()::date) + interval ''6 years''',
    retention => 'Contracts: 6 years after they end (Limitation Act 1980).');
CALL gdpr.register('billing.customer_tariffs', subject => '{row}.customer_id = {customer}',
    retain_until => '{row}.effective_to::date + interval ''6 years''',
    retention => 'Your rates: 6 years after they ended (they price the statements).');

-- Statements: VAT records. The frozen details print the name and email; the
-- PDF is deleted and rendered again from the pseudonymised statement.
CALL gdpr.register('billing.invoices', subject => '{row}.customer_id = {customer}',
    personal => '{"details.customer.fullname": "pseudonym", "details.customer.email": "null", "reason": "scrub"}',
    retain_until => '{row}.period_end + interval ''6 years''',
    retention => 'Statements and credit notes: 6 years after the period they cover (HMRC: VAT records).');
CALL gdpr.register('billing.invoice_lines',
    subject => '{row}.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = {customer})',
    retain_until => '(SELECT i.period_end FROM billing.invoices AS i WHERE i.id = {row}.invoice_id)'
                    ' + interval ''6 years''',
    retention => 'Statement lines: with their statement (HMRC: VAT records, 6 years).');
CALL gdpr.register('billing.invoice_documents',
    subject => '{row}.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = {customer})',
    personal => '{"content": "delete_row"}', omit => '{content}',
    retain_until => '(SELECT i.period_end FROM billing.invoices AS i WHERE i.id = {row}.invoice_id)'
                    ' + interval ''6 years''',
    retention => 'Statement PDFs: with their statement; erasure deletes them and they are rendered again '
                 'with the pseudonym.');

-- The home and the meter data of the supply they paid for, while they paid for it.
CALL gdpr.register('flows.properties',
    subject => '{row}.id IN (SELECT a.property FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    personal => '{"address": "keep: the home''s address; it stays with the property and its next occupants"}',
    history => false, retention => 'The property: kept with the community''s network.');
CALL gdpr.register('flows.meter_registry',
    subject => '{row}.id IN (SELECT a.meter_id FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    history => false, retention => 'The meter: kept with the property.');
CALL gdpr.register('flows.meter_registers',
    subject => '{row}.meter_id IN (SELECT a.meter_id FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    history => false, retention => 'The meter''s registers: kept with the meter.');
CALL gdpr.register('flows.register_interval_hh',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Half-hourly consumption: 6 years (it is what the statements bill); after erasure it refers to '
                 'the pseudonym only.');
CALL gdpr.register('flows.register_interval_daily',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.day), flows.uk_day_start({row}.day + 1)))',
    retain_until => '{row}.day + interval ''6 years''',
    retention => 'Daily consumption: 6 years.');
CALL gdpr.register('flows.register_interval_monthly',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.month),'
               ' flows.uk_day_start(({row}.month + interval ''1 month'')::date)))',
    retain_until => '{row}.month + interval ''6 years''',
    retention => 'Monthly consumption: 6 years.');
CALL gdpr.register('flows.register_import',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Meter reads (import): 6 years.');
CALL gdpr.register('flows.register_export',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Meter reads (export): 6 years.');
CALL gdpr.register('flows.meter_prepay_balance',
    subject => 'EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s WHERE s.meter_id = {row}.meter_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Credit on the meter: 6 years (the statements'' opening and closing balances).');
CALL gdpr.register('flows.meter_ledger_days',
    subject => 'EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s WHERE s.meter_id = {row}.meter_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.day), flows.uk_day_start({row}.day + 1)))',
    retain_until => '{row}.day + interval ''6 years''',
    retention => 'The shadow ledger''s days (the credit on the meter each day, from its balances): 6 years.');
-- The pushes to their meter: every round of their top-ups (billing.topups
-- below) and tokens an operator sent by hand, with the meter's answers. The
-- tokens stay: they are the meter's credit codes, not the customer's identity,
-- and prove what the meter took.
CALL gdpr.register('flows.meter_commands',
    subject => '{row}.kind = ''send_token'' AND EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s'
               ' WHERE s.meter_id = {row}.meter_id AND s.period @> {row}.created_at)',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Tokens sent to your meter and its answers: 6 years (HMRC: the money they record).');

-- Money in: payments, refunds, what the processor told us about them, saved
-- ways to pay, top-ups, gifts, solar credit and the wallet. Money records: 6
-- years (HMRC), the figures and the processor's references unchanged (a
-- refund or a reconciliation needs them); free text that may name the
-- customer is scrubbed, and who asked (requested_by: a customer's own token
-- names them) too.
CALL gdpr.register('billing.payments', subject => '{row}.customer_id = {customer}',
    personal => '{"description": "scrub", "failure_reason": "scrub", "requested_by": "scrub",'
                ' "receipt_url": "null: the processor''s receipt page shows the payer''s email and card",'
                ' "provider_reference": "keep: the processor''s or bank''s reference: refunds and reconciliation need it"}',
    retain_until => 'coalesce({row}.received_at, {row}.created_at)::date + interval ''6 years''',
    retention => 'Payments: 6 years after they were made (HMRC: VAT records).');
CALL gdpr.register('billing.refunds',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})',
    personal => '{"reason": "scrub", "failure_reason": "scrub", "requested_by": "scrub"}',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Refunds: 6 years after they were made (HMRC).');
-- The processor's events carry what it knows of the payer (a charge's billing
-- details, the receipt email): emptied, and any other mention scrubbed. An
-- event arriving after the erasure is stored erased (gdpr.erase_late_processor_event).
CALL gdpr.register('billing.processor_events',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})'
               ' OR {row}.refund_id IN (SELECT r.id FROM billing.refunds AS r JOIN billing.payments AS p'
               ' ON p.id = r.payment_id WHERE p.customer_id = {customer})',
    personal => '{"payload": "scrub", "detail": "scrub",'
                ' "payload.data.object.billing_details": "null", "payload.data.object.receipt_email": "null",'
                ' "payload.data.object.shipping": "null", "payload.data.object.customer_details": "null",'
                ' "payload.data.object.receipt_url": "null"}',
    retain_until => '{row}.received_at::date + interval ''6 years''',
    retention => 'What the payment processor told us about your payments: 6 years (it proves what was paid); '
                 'the names, emails and addresses in it go at erasure.');
CALL gdpr.register('billing.payment_methods', subject => '{row}.customer_id = {customer}',
    personal => '{"label": "scrub",'
                ' "processor_customer": "keep: the processor''s id for the payer, needed to ask it to erase them too"}',
    retain_until => 'coalesce((SELECT max(p.created_at) FROM billing.payments AS p WHERE p.payment_method_id = {row}.id),'
                    ' {row}.created_at)::date + interval ''6 years''',
    retention => 'Your saved card or mandate (the processor''s references, never the card): 6 years after its last '
                 'payment.');
CALL gdpr.register('billing.topups', subject => '{row}.customer_id = {customer}',
    personal => '{"notes": "scrub", "reference": "scrub", "requested_by": "scrub"}',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Top-ups of your meter: 6 years (HMRC: the money they record).');
CALL gdpr.register('billing.gifts',
    subject => '{row}.id IN (SELECT t.gift_id FROM billing.topups AS t WHERE t.customer_id = {customer})'
               ' OR EXISTS (SELECT FROM billing.payer_periods AS p WHERE p.customer_id = {customer}'
               ' AND p.account_id = {row}.account_id AND p.period @> {row}.scheduled_at)',
    personal => '{"reason": "scrub", "cancel_reason": "scrub", "requested_by": "scrub"}',
    retain_until => 'coalesce({row}.given_at, {row}.created_at)::date + interval ''6 years''',
    retention => 'Credit given to you: 6 years (HMRC).');
CALL gdpr.register('billing.solar_credits', subject => '{row}.customer_id = {customer}',
    retain_until => '{row}.month + interval ''6 years''',
    retention => 'Solar credit earned: 6 years (HMRC).');
CALL gdpr.register('billing.wallets',
    subject => '{row}.account_id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca'
               ' WHERE ca.customer_id = {customer})',
    history => false, retention => 'The account''s wallet (top-up settings): kept with the account.');
-- The ledger: append-only, never changed, erasure included. Its journals
-- refer to payments, top-ups and statements by id (erased there), so nothing
-- in it names the customer; a memo repeats a payment's reference or an
-- operator's reason for a gift or an adjustment.
CALL gdpr.register('billing.journals',
    subject => '{row}.id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)',
    personal => '{"memo": "keep: the books are append-only (HMRC: 6 years); a memo repeats a reference or an '
                'operator''s reason: write no names in them"}',
    retain_until => '{row}.posted_at::date + interval ''6 years''',
    retention => 'Your money in the ESCO''s books: 6 years (HMRC: accounting records).');
CALL gdpr.register('billing.journal_entries',
    subject => '{row}.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)',
    retain_until => '(SELECT j.posted_at FROM billing.journals AS j WHERE j.id = {row}.journal_id)::date'
                    ' + interval ''6 years''',
    retention => 'The lines of those journals: 6 years (HMRC).');

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

-- Notifications: their choices, and the messages sent to them (the outbox:
-- address, and parameters naming them). A message is kept a year, then goes;
-- at erasure it goes at once (its recipient is an address or nothing: there
-- is no pseudonym for it, and a message is not worth keeping without it).
CALL gdpr.register('flows.notification_preferences', subject => '{row}.customer_id = {customer}',
    retention => 'Your notification choices: as long as your customer record.');
CALL gdpr.register('flows.notification_outbox', subject => '{row}.customer_id = {customer}',
    personal => '{"recipient": "delete_row"}',
    retain_until => '{row}.created_at::date + interval ''1 year''',
    retention => 'Messages sent to you (email, text): a year; deleted at erasure.');

-- Consent and erasure records: the proof of what was agreed and done.
CALL gdpr.register('gdpr.consents', subject => '{row}.customer_id = {customer}',
    personal => '{"recorded_by": "scrub"}',
    retention => 'Your consents and withdrawals: kept as the proof of what you agreed to.');
CALL gdpr.register('gdpr.erasures', subject => '{row}.customer_id = {customer}',
    personal => '{"reference": "scrub"}',
    retention => 'The record that your data was erased: kept.');

-- Named like personal data, but no person's.
CALL gdpr.not_personal('billing.esco_billing', '{address,email,phone}',
    'the ESCO''s own contact details, printed on statements');
CALL gdpr.not_personal('flows.meter_registry', '{ip_address}', 'the meter''s modem address on the network');
CALL gdpr.not_personal('flows.notification_settings', '{operator_emails,operator_phones}',
    'the ESCO''s own staff contacts for operator alerts, not a customer''s: the ESCO keeps them in its settings '
    'and removes a person''s when they leave');
CALL gdpr.not_personal('billing.bank_accounts', '{sort_code,account_number,iban}',
    'the ESCO''s own bank account, which statements are imported into: no customer''s (a payer''s name and '
    'text are on their bank_transactions)');


-- What must be settled before a customer is erased.
CALL gdpr.erasure_check('live',
    $$SELECT 'they are a live customer (status live)' FROM billing.customers AS c
      WHERE c.id = {customer} AND c.status = 'live'$$,
    hint => 'end their supply first: set them exiting and record the move-out (rpc/move_out)');
CALL gdpr.erasure_check('still_supplied',
    $$SELECT format('they are still the %s of account %s (since %s)', ca.role, a.account_number,
                    to_char(ca.start_time AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.customer_accounts AS ca JOIN billing.accounts AS a ON a.id = ca.account_id
      WHERE ca.customer_id = {customer} AND (ca.end_time IS NULL OR ca.end_time > now())$$,
    hint => 'record the move-out (rpc/move_out), or end their ownership (end_time of their customer_accounts row)');
CALL gdpr.erasure_check('statement_open',
    $$SELECT format('a statement of account %s for %s is open in the draft billing run %s', a.account_number,
                    to_char(i.period_start, 'FMMonth YYYY'), i.run_id)
      FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
      WHERE i.customer_id = {customer} AND i.status = 'draft'$$,
    hint => 'finalise the billing run (rpc/finalise_billing_run) so that the statement is issued');
CALL gdpr.erasure_check('not_billed',
    $$SELECT format('their supply on account %s is billed up to %s, not to their move-out at %s', a.account_number,
                    coalesce(to_char(b.billed_to AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'), 'nothing'),
                    to_char(upper(p.period) AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.payer_periods AS p JOIN billing.accounts AS a ON a.id = p.account_id
      CROSS JOIN LATERAL (SELECT max(i.period_to) AS billed_to FROM billing.invoices AS i
                          WHERE i.account_id = p.account_id AND i.customer_id = p.customer_id
                            AND i.kind = 'statement' AND i.status = 'final') AS b
      WHERE p.customer_id = {customer} AND a.type IN ('supply', 'ev') AND NOT upper_inf(p.period)
        AND upper(p.period) > coalesce(b.billed_to, lower(p.period))
      UNION ALL
      SELECT format('their statement %s of account %s for %s was credited and the month not billed again',
                    v.number, a.account_number, to_char(v.period_start, 'FMMonth YYYY'))
      FROM billing.invoices AS v JOIN billing.accounts AS a ON a.id = v.account_id
      WHERE v.customer_id = {customer} AND v.kind = 'statement' AND v.status = 'void'
        AND NOT EXISTS (SELECT FROM billing.invoices AS n
                        WHERE n.corrects = v.id AND n.kind = 'statement' AND n.status = 'final')$$,
    hint => 'bill the months up to the move-out (rpc/create_billing_run, then rpc/finalise_billing_run)');
-- Money: on an account billed as a credit meter, what they owe by the ledger
-- (their journals' customer credit: statements less what they paid), plus
-- statements issued before the ledger existed (not posted); on a prepayment
-- meter, a debt left on the meter (its own balance on their last statement:
-- there the customer credit is only money on its way to the meter). And what
-- is held for them, to put on the meter or pay back.
CALL gdpr.erasure_check('money_owed',
    $$SELECT format('account %s owes £%s (by the ledger: their statements less what they paid)', a.account_number,
                    o.owed)
      FROM (SELECT x.account_id, sum(x.amount) AS owed
            FROM (SELECT e.account_id, e.amount FROM billing.journal_entries AS e
                  WHERE e.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)
                    AND e.ledger_account = 'customer_credit'
                  UNION ALL
                  SELECT i.account_id, i.total FROM billing.invoices AS i
                  WHERE i.customer_id = {customer} AND i.status IN ('final', 'void') AND NOT i.prepay
                    AND i.total <> 0
                    AND NOT EXISTS (SELECT FROM billing.journals AS j
                                    WHERE j.invoice_id = i.id AND j.kind = 'statement_charge')) AS x
            GROUP BY x.account_id) AS o
      JOIN billing.accounts AS a ON a.id = o.account_id
      WHERE o.owed > 0
        AND EXISTS (SELECT FROM billing.invoices AS c WHERE c.account_id = o.account_id AND c.customer_id = {customer}
                    AND c.status <> 'draft' AND NOT c.prepay)
      UNION ALL
      SELECT format('statement %s of account %s: £%s owed on the prepayment meter', i.number, a.account_number,
                    -i.closing_balance)
      FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
      WHERE i.customer_id = {customer} AND i.kind = 'statement' AND i.status = 'final' AND i.prepay
        AND i.closing_balance < 0
        AND i.period_to = (SELECT max(l.period_to) FROM billing.invoices AS l
                           WHERE l.account_id = i.account_id AND l.customer_id = i.customer_id AND l.status = 'final')$$,
    hint => 'settle what is owed first: record their payment (rpc/record_payment), or the processor''s');
CALL gdpr.erasure_check('credit_held',
    $$SELECT format('£%s of theirs is held on account %s (received or given, not on the meter nor refunded)',
                    -sum(e.amount), a.account_number)
      FROM billing.journal_entries AS e JOIN billing.accounts AS a ON a.id = e.account_id
      WHERE e.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)
        AND e.ledger_account = 'customer_credit'
      GROUP BY a.account_number
      HAVING sum(e.amount) < 0$$,
    hint => 'put it on their meter (their top-up), or pay it back (rpc/refund_payment)');
-- Money in flight: an erasure never races a payment, a refund or a top-up
-- (the processor's next event, the meter's answer would find the row changed
-- under them, and the money unsettled).
CALL gdpr.erasure_check('payment_in_flight',
    $$SELECT format('their %s payment of £%s is %s (since %s)', p.provider, p.amount, p.status,
                    to_char(coalesce(p.submitted_at, p.created_at) AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.payments AS p
      WHERE p.customer_id = {customer} AND p.status IN ('pending', 'created', 'processing')$$,
    hint => 'wait until the processor settles it (succeeded or failed), or cancel it before it is submitted '
            '(rpc/cancel_payment)');
CALL gdpr.erasure_check('refund_in_flight',
    $$SELECT format('a refund of £%s of their payment %s is %s', r.amount, r.payment_id, r.status)
      FROM billing.refunds AS r JOIN billing.payments AS p ON p.id = r.payment_id
      WHERE p.customer_id = {customer} AND r.status IN ('pending', 'submitted')$$,
    hint => 'wait until the processor pays it back (the payments job)');
CALL gdpr.erasure_check('topup_unfinished',
    $$SELECT format('their %s top-up of £%s to meter %s %s%s', replace(t.source, '_', ' '), t.amount, m.serial,
                    CASE t.status WHEN 'wait_token_fetch' THEN 'is waiting for its token'
                                  WHEN 'wait_token_push' THEN 'is waiting to reach the meter'
                                  ELSE 'failed' END,
                    coalesce(' (' || coalesce(t.waiting_reason, t.last_error) || ')', ''))
      FROM billing.topups AS t JOIN flows.meter_registry AS m ON m.id = t.meter_id
      WHERE t.customer_id = {customer} AND t.status NOT IN ('completed', 'cancelled')$$,
    hint => 'let the worker put it on the meter, retry it (rpc/retry_topup) or cancel it (rpc/cancel_topup: a '
            'payment''s money then stays their credit, to pay back)');
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

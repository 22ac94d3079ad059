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
-- refers to the pseudonym only.

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
-- Top-ups pushed to their meter (until top-ups have a table of their own).
CALL gdpr.register('flows.meter_commands',
    subject => '{row}.kind = ''send_token'' AND EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s'
               ' WHERE s.meter_id = {row}.meter_id AND s.period @> {row}.created_at)',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Top-ups sent to the meter: 6 years (HMRC: the money they record).');

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
-- Money owed, until the ledger knows payments: a prepayment account that
-- ended in debt on the meter, and any statement of a credit (not prepay) meter.
CALL gdpr.erasure_check('money_owed',
    $$SELECT format('statement %s of account %s: £%s owed', i.number, a.account_number,
                    CASE WHEN i.prepay THEN -i.closing_balance ELSE i.total END)
      FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
      WHERE i.customer_id = {customer} AND i.kind = 'statement' AND i.status = 'final'
        AND CASE WHEN i.prepay
                 THEN i.closing_balance < 0 AND i.period_to = (SELECT max(l.period_to) FROM billing.invoices AS l
                                                               WHERE l.account_id = i.account_id
                                                                 AND l.customer_id = i.customer_id
                                                                 AND l.status = 'final')
                 ELSE i.total > 0 END$$,
    hint => 'settle what is owed first (a prepayment debt on the meter, or the bill of a credit meter: Flows '
            'records no payments yet, so a credit customer''s statements count as owed)');

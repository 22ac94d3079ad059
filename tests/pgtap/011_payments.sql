-- Money in, in SQL: payments and their top-ups on the send_token commands, a
-- meter that is offline, refused tokens, processor events (replays, out of
-- order, unknown, unmatched, conflicting), refunds, gifts, adjustments, solar
-- credit, wallets (auto top-up, regular payments), the append-only ledger, and
-- what a customer sees and may change. Time stands still in this transaction:
-- where a test needs time to pass it moves the row's time back instead.
BEGIN;
SELECT plan(102);

-- A community: Olive lives in P-1 (twin-element prepay meter m1), Tina rents P-2 (m2) from Larry,
-- the hall (P-3) has a three-phase credit meter, P-4 a passive prepay meter (a digital twin).
INSERT INTO flows.escos (id, code, name, max_running_commands) VALUES ('00000000-0000-4000-8000-0000000001a1', 'TAPPAY', 'Pay', 100);
INSERT INTO flows.sites (id, esco, code, name) VALUES ('00000000-0000-4000-8000-0000000001a2', '00000000-0000-4000-8000-0000000001a1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot)
SELECT ('00000000-0000-4000-8000-00000000010' || n)::uuid, '00000000-0000-4000-8000-0000000001a1',
       '00000000-0000-4000-8000-0000000001a2', 'P-' || n
FROM generate_series(1, 4) AS n;
INSERT INTO flows.service_head_registry (id, esco, name)
SELECT ('00000000-0000-4000-8000-00000000020' || n)::uuid, '00000000-0000-4000-8000-0000000001a1', 'H' || n
FROM generate_series(1, 4) AS n;
INSERT INTO flows.properties_service_head
SELECT ('00000000-0000-4000-8000-00000000010' || n)::uuid, ('00000000-0000-4000-8000-00000000020' || n)::uuid,
       '00000000-0000-4000-8000-0000000001a1'
FROM generate_series(1, 4) AS n;
SELECT api.register_meter(serial => 'EML3200000001', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000001a1') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3200000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000001a1') ->> 'id' AS m2 \gset
SELECT api.register_meter(serial => 'EMP1AX3200000003', hardware => 'P1.ax', esco => '00000000-0000-4000-8000-0000000001a1') ->> 'id' AS m3 \gset
SELECT api.register_meter(serial => 'EML3200000004', hardware => 'B1.w', mode => 'passive', esco => '00000000-0000-4000-8000-0000000001a1') ->> 'id' AS m4 \gset
INSERT INTO flows.service_head_meter VALUES
    ('00000000-0000-4000-8000-000000000201', :'m1', '00000000-0000-4000-8000-0000000001a1'),
    ('00000000-0000-4000-8000-000000000202', :'m2', '00000000-0000-4000-8000-0000000001a1'),
    ('00000000-0000-4000-8000-000000000203', :'m3', '00000000-0000-4000-8000-0000000001a1'),
    ('00000000-0000-4000-8000-000000000204', :'m4', '00000000-0000-4000-8000-0000000001a1');
SELECT api.onboard_customer('00000000-0000-4000-8000-000000000101', 'Olive Owner', 'olive@example.com', move_in => '2025-01-01T00:00:00Z') AS olive \gset
SELECT (:'olive'::jsonb -> 'customer' ->> 'id') AS olive_id, (:'olive'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct1 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-000000000102', 'Larry Landlord', role => 'owner', move_in => '2025-01-01T00:00:00Z') -> 'customer' ->> 'id' AS larry \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-000000000102', 'Tina Tenant', role => 'occupier', move_in => '2025-01-01T00:00:00Z') AS tina \gset
SELECT (:'tina'::jsonb -> 'customer' ->> 'id') AS tina_id, (:'tina'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct2 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-000000000103', 'Hall', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct3 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-000000000104', 'Twin Owner', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct4 \gset
INSERT INTO flows.properties (id, esco, site, plot) VALUES ('00000000-0000-4000-8000-000000000105', '00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-0000000001a2', 'P-5');
INSERT INTO billing.accounts (id, esco, account_number, property, meter_id, status, opened_at, closed_at)
VALUES ('00000000-0000-4000-8000-0000000003c5', '00000000-0000-4000-8000-0000000001a1', 'C0001', '00000000-0000-4000-8000-000000000105', :'m2',
        'closed', '2025-01-01', '2025-06-01');

-- A worker, in SQL: claims the meter's pending command and ends it as the worker would.
CREATE FUNCTION pg_temp.claimed(p_meter uuid) RETURNS TABLE (id uuid, attempt integer) LANGUAGE sql AS $$
    SELECT c.id, c.attempt FROM flows.claim_meter_commands_v1('tap-worker', 100) AS c WHERE c.meter_id = p_meter
$$;
CREATE FUNCTION pg_temp.credit(p_meter uuid, p_token text, p_count integer) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    claim record;
BEGIN
    SELECT * INTO claim FROM pg_temp.claimed(p_meter);
    PERFORM flows.note_meter_command_progress_v1(claim.id, 'tap-worker', claim.attempt,
        jsonb_build_object('token', p_token, 'count_before', p_count - 1, 'balance_before', '4.5', 'pushed_at', now()));
    PERFORM flows.finish_meter_command_v1(claim.id, 'tap-worker', claim.attempt, jsonb_build_object('result',
        jsonb_build_object('token', p_token, 'balance_before', '4.5', 'balance_after', '17.0',
                           'transactions_before', p_count - 1, 'transactions_after', p_count)));
    RETURN claim.id;
END
$$;
CREATE FUNCTION pg_temp.fail(p_meter uuid, p_error text, p_progress jsonb DEFAULT '{}') RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    claim record;
BEGIN
    SELECT * INTO claim FROM pg_temp.claimed(p_meter);
    IF p_progress <> '{}' THEN
        PERFORM flows.note_meter_command_progress_v1(claim.id, 'tap-worker', claim.attempt, p_progress);
    END IF;
    PERFORM flows.fail_meter_command_v1(claim.id, 'tap-worker', claim.attempt, p_error, false);
    RETURN claim.id;
END
$$;

-- Bad input: refused naming the field, nothing written ----------------------------------------
SELECT throws_like(format($$ SELECT api.record_payment('%s', -5) $$, :'acct1'), 'amount must be between 0.01 and 500 GBP%',
                   'a negative amount is refused, naming the field');
SELECT throws_like(format($$ SELECT api.record_payment('%s', 500.01) $$, :'acct1'), 'amount must be between 0.01 and 500 GBP%',
                   'so is one over the limit');
SELECT throws_like(format($$ SELECT api.record_payment('%s', 10.005) $$, :'acct1'), '%whole pence%', 'and a fraction of a penny');
SELECT throws_like($$ SELECT api.record_payment('00000000-0000-4000-8000-0000000003c5', 10) $$,
                   'account_id names account C0001, which is closed%', 'a payment for a closed account is refused');
SELECT throws_like(format($$ SELECT api.create_adjustment_topup('%s', 5, 'goodwill') $$, :'acct3'),
                   'account_id cannot take a top-up: meter EMP1AX3200000003 is three phase%', 'no top-up for a three-phase meter');
SELECT throws_like(format($$ SELECT api.create_adjustment_topup('%s', 5, 'goodwill') $$, :'acct4'),
                   'account_id cannot take a top-up: meter EML3200000004 is passive%', 'nor for a passive one');
SELECT throws_like(format($$ SELECT api.create_gift('%s', 10, 'welcome', now() - interval '1 day') $$, :'acct1'),
                   'scheduled_at must be from now%', 'a gift in the past is refused');
SELECT throws_ok(format($$ SELECT api.record_payment('%s', 10, provider => 'stripe') $$, :'acct1'), '22023', NULL,
                 'card payments are not recorded by hand');
SELECT is((SELECT count(*)::int FROM billing.payments) + (SELECT count(*)::int FROM billing.topups)
          + (SELECT count(*)::int FROM billing.gifts) + (SELECT count(*)::int FROM billing.journals), 0,
          'and nothing was written');

-- A cash payment: received, journal, top-up on its command, credited --------------------------
SELECT id AS cash FROM api.record_payment(:'acct1', 12.50, reference => 'receipt 17') \gset
SELECT is((SELECT status || ' ' || customer_id FROM billing.payments WHERE id = :'cash'), 'succeeded ' || :'olive_id',
          'a cash payment is received at once, from the account''s payer');
SELECT is((SELECT array_agg(ledger_account || ' ' || amount ORDER BY amount) FROM billing.journal_entries e
           JOIN billing.journals j ON j.id = e.journal_id WHERE j.payment_id = :'cash' AND j.kind = 'payment_received'),
          ARRAY['customer_credit -12.50', 'cash_at_bank 12.50'], 'posted: cash at bank, the account''s credit');
SELECT id AS cash_topup, command_id AS cash_command FROM billing.topups WHERE payment_id = :'cash' \gset
SELECT is((SELECT status || ' ' || source || ' ' || amount || ' ' || meter_id FROM billing.topups WHERE id = :'cash_topup'),
          'wait_token_fetch payment 12.50 ' || :'m1', 'its top-up for the account''s meter, in the same transaction');
SELECT is((SELECT parameters FROM flows.meter_commands WHERE id = :'cash_command'),
          jsonb_build_object('amount', '12.50', 'source', 'payment', 'topup_id', :'cash_topup'),
          'rides on a send_token command that names it');
SELECT throws_ok(format($$ INSERT INTO billing.topups (esco, account_id, meter_id, amount, source, payment_id, requested_by)
                          VALUES ('00000000-0000-4000-8000-0000000001a1', '%s', '%s', 12.50, 'payment', '%s', 'me') $$,
                        :'acct1', :'m1', :'cash'), '23505', NULL, 'one payment funds at most one top-up (a unique key)');
SELECT pg_temp.credit(:'m1', '11112222333344445555', 7) IS NOT NULL;
SELECT is((SELECT status || ' ' || token || ' ' || transaction_count || ' ' || balance_after FROM billing.topups WHERE id = :'cash_topup'),
          'completed 11112222333344445555 7 17.00000', 'credited: the status, token and the meter''s transaction count mirrored');
SELECT ok((SELECT used_at = c.finished_at FROM billing.topups t JOIN flows.meter_commands c ON c.id = t.command_id
           WHERE t.id = :'cash_topup'), 'used_at is when the meter took it');
SELECT is((SELECT customer_credit || ' ' || credit_on_meters || ' ' || received || ' ' || put_on_meter
           FROM api.account_balances WHERE account_id = :'acct1'), '0.00 12.50 12.50 12.50',
          'the money moved from the account''s credit onto its meter');
SELECT lives_ok('SET CONSTRAINTS billing.journals_balanced, billing.journal_entries_balanced IMMEDIATE',
                'every journal so far balances');
SET CONSTRAINTS ALL DEFERRED;

-- The ledger is append-only -------------------------------------------------------------------
SELECT throws_ok($$ UPDATE billing.journal_entries SET amount = amount * 2 $$, '42501', NULL,
                 'entries are never changed (a guard, even for the owner)');
SELECT throws_ok($$ DELETE FROM billing.journals $$, '42501', NULL, 'nor are journals removed');
SELECT throws_ok($$ TRUNCATE billing.journal_entries $$, '42501', NULL, 'nor truncated');
SELECT ok(NOT has_table_privilege('flows_operator', 'billing.journals', 'UPDATE')
          AND NOT has_table_privilege('flows_service', 'billing.journal_entries', 'DELETE')
          AND NOT has_table_privilege('flows_owner', 'billing.journal_entries', 'UPDATE'),
          'and nobody holds the privileges to');
SELECT throws_ok(format($$ SELECT billing.post_journal('00000000-0000-4000-8000-0000000001a1', 'refund', 'lopsided',
                          '[{"ledger_account": "cash_at_bank", "amount": 5}, {"ledger_account": "vat", "amount": -4}]') $$),
                 '23514', NULL, 'a journal that does not sum to zero is refused');
SAVEPOINT by_hand;
INSERT INTO billing.journals (id, esco, kind, memo, posted_by)
VALUES ('00000000-0000-4000-8000-0000000009f1', '00000000-0000-4000-8000-0000000001a1', 'refund', 'by hand', 'me');
INSERT INTO billing.journal_entries (esco, journal_id, ledger_account, amount)
VALUES ('00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-0000000009f1', 'cash_at_bank', 3);
SELECT throws_ok('SET CONSTRAINTS billing.journal_entries_balanced IMMEDIATE', '23514', NULL,
                 'entries written by hand must balance too, by commit');
ROLLBACK TO SAVEPOINT by_hand;
SELECT reverse_journal AS reversal FROM billing.reverse_journal(
    (SELECT id FROM billing.journals WHERE payment_id = :'cash' AND kind = 'payment_received'), 'a test correction') \gset
SELECT is((SELECT sum(amount) FROM billing.journal_entries WHERE journal_id = :'reversal'), 0.00, 'a reversal balances');
SELECT is((SELECT array_agg(ledger_account || ' ' || amount ORDER BY amount) FROM billing.journal_entries WHERE journal_id = :'reversal'),
          ARRAY['cash_at_bank -12.50', 'customer_credit 12.50'], 'and negates the journal it reverses');
SELECT throws_ok(format($$ SELECT billing.reverse_journal('%s', 'twice') $$,
                        (SELECT id FROM billing.journals WHERE payment_id = :'cash' AND kind = 'payment_received')),
                 '23505', NULL, 'a journal is reversed once');
SELECT throws_ok(format($$ SELECT billing.payment_received(p) FROM billing.payments p WHERE id = '%s' $$, :'cash'),
                 '23505', NULL, 'a payment is received once (a unique key on its journal)');

-- A meter that is offline: the top-up waits, with a reason, until the meter answers ----------------
SELECT id AS tina_pay FROM api.record_payment(:'acct2', 20, provider => 'bank_transfer', reference => 'TT-1') \gset
SELECT id AS tina_topup, command_id AS tina_round1 FROM billing.topups WHERE payment_id = :'tina_pay' \gset
SELECT pg_temp.fail(:'m2', 'ConnectionRefused: meter EML3200000002 refused the connection') IS NOT NULL;
SELECT is((SELECT status || ' ' || waiting_for FROM billing.topups WHERE id = :'tina_topup'), 'wait_token_fetch meter',
          'an unreachable meter: the top-up is not failed, it waits for the meter');
SELECT matches((SELECT waiting_reason FROM billing.topups WHERE id = :'tina_topup'),
               '^the meter has not answered since .*ConnectionRefused.*sent when it answers again$', 'saying why');
SELECT is((billing.run_money_pass_v1() ->> 'topups_resumed')::int, 0, 'and is not retried while the meter is silent');
UPDATE billing.topups SET waiting_since = now() - interval '1 hour' WHERE id = :'tina_topup';
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object('meter_id', :'m2', 'observed_at', now(),
                                                                      'health', 'healthy')));
SELECT is((billing.run_money_pass_v1() ->> 'topups_resumed')::int, 1, 'once the meter answers (a sync), it goes again');
SELECT is((SELECT rounds || ' ' || (command_id <> :'tina_round1') || ' ' || coalesce(waiting_for, 'none')
           FROM billing.topups WHERE id = :'tina_topup'), '2 true none', 'in a new round, on a new command');

-- A token the meter refuses fails the top-up; a retry vends a new one ---------------------------------
SELECT pg_temp.fail(:'m2', 'TokenRefused: the meter rejected the token (NAK 6)', '{"token": "99990000111122223333"}') IS NOT NULL;
SELECT is((SELECT status || ' ' || token FROM billing.topups WHERE id = :'tina_topup'),
          'failed_token_push 99990000111122223333', 'a refused token fails the top-up');
SELECT is((SELECT status || ' ' || coalesce(token, 'none') || ' ' || rounds FROM api.retry_topup(:'tina_topup')),
          'wait_token_fetch none 3', 'retry: a new round that vends a new token');

-- A round cut short after its push: the next sends the same token, knowing what the meter said before ---
SELECT pg_temp.fail(:'m2', 'abandoned: the worker''s lease ran out on attempt 6 of 5 (no error recorded)',
                    jsonb_build_object('token', '44445555666677778888', 'count_before', 3, 'balance_before', '2.5',
                                       'pushed_at', now())) AS cut_round \gset
SELECT is((SELECT status || ' ' || waiting_for FROM billing.topups WHERE id = :'tina_topup'), 'wait_token_push retry',
          'a round a worker left half done waits for a retry');
SELECT throws_like(format($$ SELECT api.cancel_topup('%s', 'changed my mind') $$, :'tina_topup'),
                   '%may be on its meter already%', 'and cannot be cancelled while its token may be on the meter');
SELECT is((billing.run_money_pass_v1(p_retry_base => '0 seconds') ->> 'topups_resumed')::int, 1, 'the retry comes');
SELECT is((SELECT c.parameters ->> 'token' || ' ' || (c.progress ->> 'count_before') || ' ' || (c.progress ->> 'carried_from')
           FROM billing.topups t JOIN flows.meter_commands c ON c.id = t.command_id WHERE t.id = :'tina_topup'),
          '44445555666677778888 3 ' || :'cut_round', 'with the same token and what the last round saw');

-- The processor: submission, events once, in any order -----------------------------------------------
INSERT INTO billing.payment_methods (id, esco, customer_id, kind, processor_customer, processor_method)
VALUES ('00000000-0000-4000-8000-0000000004a1', '00000000-0000-4000-8000-0000000001a1', :'olive_id', 'card', 'cus_olive', 'pm_card_visa');
SELECT id AS card FROM api.schedule_payment(:'acct1', 20) \gset
SELECT is((SELECT id || ' ' || attempt || ' ' || processor_method FROM billing.claim_payment_work_v1('job-1', 10)),
          :'card' || ' 1 pm_card_visa', 'the job claims the due payment, with what the processor needs');
SELECT ok((SELECT submitted_at IS NOT NULL FROM billing.payments WHERE id = :'card'),
          'and its submission is recorded before any call');
SELECT is(billing.record_payment_intent_v1(:'card', 'job-1', '{"id": "pi_card1", "amount": 2000, "currency": "gbp",
          "status": "requires_confirmation", "metadata": {}}', false), 'created', 'the processor''s id is stored');
SELECT throws_ok(format($$ SELECT billing.record_payment_intent_v1('%s', 'job-2', '{}', true) $$, :'card'), 'FL409', NULL,
                 'only by the job that holds it');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
          '{"id": "evt_1", "type": "payment_intent.succeeded", "created": 1790000000, "data": {"object": {"id": "pi_card1",
            "object": "payment_intent", "amount": 2000, "currency": "gbp", "status": "succeeded",
            "metadata": {"payment_id": "%s"}}}}', :'card')::jsonb)), 'applied', 'payment_intent.succeeded is applied');
SELECT is((SELECT status FROM billing.payments WHERE id = :'card'), 'succeeded', 'the payment succeeded');
SELECT is((SELECT count(*)::int FROM billing.topups WHERE payment_id = :'card'), 1, 'with its top-up');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
          '{"id": "evt_1", "type": "payment_intent.succeeded", "created": 1790000000, "data": {"object": {"id": "pi_card1",
            "object": "payment_intent", "amount": 2000, "currency": "gbp", "status": "succeeded",
            "metadata": {"payment_id": "%s"}}}}', :'card')::jsonb)), 'duplicate', 'the same event again is a duplicate');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
          '{"id": "evt_2", "type": "payment_intent.processing", "created": 1789999990, "data": {"object": {"id": "pi_card1",
            "object": "payment_intent", "amount": 2000, "currency": "gbp", "status": "processing",
            "metadata": {"payment_id": "%s"}}}}', :'card')::jsonb)), 'stale', 'processing after succeeded is stale');
SELECT is((SELECT count(*)::int FROM billing.topups WHERE payment_id = :'card')
          + (SELECT count(*)::int FROM billing.journals WHERE payment_id = :'card' AND kind = 'payment_received'), 2,
          'still one top-up and one receipt');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe',
          '{"id": "evt_3", "type": "customer.created", "created": 1790000000, "data": {"object": {"id": "cus_9"}}}')),
          'ignored', 'an event type Flows does not use is recorded and ignored');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe',
          '{"id": "evt_4", "type": "payment_intent.succeeded", "created": 1790000000, "data": {"object": {"id": "pi_x",
            "amount": 100, "currency": "gbp", "status": "succeeded",
            "metadata": {"payment_id": "00000000-0000-4000-8000-00000000dead"}}}}')), 'unmatched',
          'an event for no payment of ours is unmatched');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
          '{"id": "evt_5", "type": "payment_intent.succeeded", "created": 1790000000, "data": {"object": {"id": "pi_card1",
            "amount": 2001, "currency": "gbp", "status": "succeeded", "metadata": {"payment_id": "%s"}}}}', :'card')::jsonb)),
          'conflict', 'an amount that differs is a conflict, not applied');
SELECT throws_ok($$ SELECT billing.apply_processor_event_v1('stripe', '{"type": "payment_intent.succeeded"}') $$, '22023',
                 NULL, 'something that is not an event is refused');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
          '{"id": "evt_6", "type": "payment_intent.succeeded", "created": 1790000000, "data": {"object": {"id": "pi_link1",
            "amount": 1500, "currency": "gbp", "status": "succeeded", "description": "payment link",
            "metadata": {"account_id": "%s"}}}}', :'acct1')::jsonb)), 'applied',
          'a payment Flows did not create names its account');
SELECT is((SELECT origin || ' ' || status || ' ' || amount || ' ' || customer_id FROM billing.payments
           WHERE provider_reference = 'pi_link1'), 'processor succeeded 15.00 ' || :'olive_id', 'and is recorded then');
SELECT is((SELECT count(*)::int FROM billing.topups t JOIN billing.payments p ON p.id = t.payment_id
           WHERE p.provider_reference = 'pi_link1'), 1, 'with its top-up');

-- Refunds ------------------------------------------------------------------------------------------
SELECT is((SELECT status || ' ' || amount FROM api.refund_payment(:'tina_pay', 'overpaid', 5)), 'succeeded 5.00',
          'a bank payment is refunded at once');
SELECT is((SELECT refunded_amount || ' ' || status FROM billing.payments WHERE id = :'tina_pay'), '5.00 succeeded',
          'part of it');
SELECT throws_like(format($$ SELECT api.refund_payment('%s', 'again', 16) $$, :'tina_pay'),
                   'amount must be between 0.01 and 15.00 GBP%', 'never more than is left');
SELECT id AS card_refund FROM api.refund_payment(:'card', 'moved out') \gset
SELECT is((SELECT status || ' ' || amount FROM billing.refunds WHERE id = :'card_refund'), 'pending 20.00',
          'a card payment is refunded through the processor, in full by default');
SELECT is((SELECT id FROM billing.claim_refund_work_v1('job-1', 10)), :'card_refund'::uuid, 'the job claims it');
SELECT is(billing.record_refund_v1(:'card_refund', 'job-1', '{"id": "re_1", "amount": 2000, "status": "succeeded",
          "payment_intent": "pi_card1"}'), 'succeeded', 'and records what the processor says');
SELECT is((SELECT status FROM billing.payments WHERE id = :'card'), 'refunded', 'refunded in full');
SELECT is((SELECT array_agg(ledger_account || ' ' || amount ORDER BY amount) FROM billing.journal_entries e
           JOIN billing.journals j ON j.id = e.journal_id WHERE j.refund_id = :'card_refund'),
          ARRAY['processor_clearing -20.00', 'customer_credit 20.00'], 'posted back against the processor''s clearing');

-- Gifts and adjustments ---------------------------------------------------------------------------------
SELECT id AS later_gift FROM api.create_gift(:'acct1', 10, 'sign-up bonus', now() + interval '1 day') \gset
SELECT is((SELECT status FROM api.cancel_gift(:'later_gift', 'sent by mistake')), 'cancelled', 'a scheduled gift is cancelled');
UPDATE billing.gifts SET scheduled_at = now() - interval '1 minute' WHERE id = :'later_gift';
SELECT is((billing.run_money_pass_v1() ->> 'gifts')::int, 0, 'and never pays, even when its day comes');
SELECT id AS gift FROM api.create_gift(:'acct1', 7.25, 'winter fund') \gset
SELECT is((SELECT g.status || ' ' || t.source || ' ' || t.amount FROM billing.gifts g JOIN billing.topups t ON t.gift_id = g.id
           WHERE g.id = :'gift'), 'given gift 7.25', 'a gift due now becomes its top-up');
SELECT is((SELECT array_agg(e.ledger_account || ' ' || e.amount ORDER BY e.amount) FROM billing.journal_entries e
           JOIN billing.journals j ON j.id = e.journal_id JOIN billing.topups t ON t.id = j.topup_id
           WHERE t.gift_id = :'gift' AND j.kind = 'topup_funded'), ARRAY['customer_credit -7.25', 'gifts 7.25'],
          'funded by the ESCO''s gifts');
SELECT id AS gift_topup FROM billing.topups WHERE gift_id = :'gift' \gset
SELECT is((SELECT status FROM api.cancel_topup(:'gift_topup', 'wrong account')), 'cancelled', 'its top-up is cancelled');
SELECT is((SELECT c.status || ' ' || g.status FROM billing.topups t JOIN flows.meter_commands c ON c.id = t.command_id
           JOIN billing.gifts g ON g.id = t.gift_id WHERE t.id = :'gift_topup'), 'cancelled cancelled',
          'with its command and its gift');
SELECT is((SELECT sum(e.amount) FROM billing.journal_entries e JOIN billing.journals j ON j.id = e.journal_id
           WHERE j.topup_id = :'gift_topup' AND e.ledger_account = 'gifts'), 0.00, 'and the funding is reversed');
SELECT is((SELECT status || ' ' || amount FROM api.create_adjustment_topup(:'acct1', -3, 'double credit on 3 May')),
          'completed -3.00', 'a negative adjustment is a deduction in the books');
SELECT is((SELECT count(*)::int FROM flows.meter_commands WHERE parameters ->> 'amount' = '-3.00'), 0, 'never a token');

-- Solar credit ----------------------------------------------------------------------------------------
INSERT INTO billing.solar_rates (esco, effective_from, pence_per_kwp_year) VALUES ('00000000-0000-4000-8000-0000000001a1', '2025-01-01', 8000);
INSERT INTO billing.solar_installations (id, esco, property, mcs_certificate, declared_net_capacity_kwp, commissioned_on)
VALUES ('00000000-0000-4000-8000-0000000005a1', '00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-000000000101', 'MCS-00112233', 4, '2025-01-01');
INSERT INTO billing.solar_allocations (esco, installation_id, property, ratio) VALUES
    ('00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-0000000005a1', '00000000-0000-4000-8000-000000000101', 0.5),
    ('00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-0000000005a1', '00000000-0000-4000-8000-000000000102', 0.5);
SELECT lives_ok('SET CONSTRAINTS billing.solar_allocations_at_most_one IMMEDIATE', 'allocations of 0.5 and 0.5 are fine');
SET CONSTRAINTS ALL DEFERRED;
SAVEPOINT too_much;
INSERT INTO billing.solar_allocations (esco, installation_id, property, ratio)
VALUES ('00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-0000000005a1', '00000000-0000-4000-8000-000000000103', 0.2);
SELECT throws_like('SET CONSTRAINTS billing.solar_allocations_at_most_one IMMEDIATE', '%add up to 1.2000, more than 1%',
                   'allocations adding up to more than 1 are refused');
ROLLBACK TO SAVEPOINT too_much;
SET CONSTRAINTS ALL DEFERRED;
INSERT INTO billing.contracts (esco, customer_id, type, terms_version, signed_at, effective_date, end_date)
VALUES ('00000000-0000-4000-8000-0000000001a1', :'olive_id', 'solar', 'solar-1', '2024-12-01', '2025-01-01', '2025-06-21');
SELECT is((SELECT array_agg(c.customer_id || ' ' || c.amount || ' ' || c.status || ' ' || (c.details ->> 'days_paid')
                            ORDER BY c.amount)
           FROM api.generate_solar_credits('TAPPAY', '2025-06-01') AS c),
          ARRAY[:'tina_id' || ' 0.00 not_paid 0', :'olive_id' || ' 8.77 paid 20'],
          'June: Olive is paid for 20 days (4 kWp x 0.5 x 80 GBP / 365 a day: her contract ended on the 21st), '
          'Tina nothing (no solar contract)');
SELECT is((SELECT t.amount || ' ' || t.source || ' ' || t.meter_id FROM billing.topups t JOIN billing.solar_credits s
           ON s.id = t.solar_credit_id WHERE s.month = '2025-06-01'), '8.77 solar_credit ' || :'m1',
          'paid as a top-up on the supply meter');
SELECT is((SELECT count(*)::int FROM api.generate_solar_credits('TAPPAY', '2025-06-01')), 2, 'running it again');
SELECT is((SELECT count(*)::int FROM billing.topups WHERE source = 'solar_credit'), 1, 'pays nothing twice');
SELECT throws_like($$ SELECT api.generate_solar_credits('TAPPAY', date_trunc('month', now())::date) $$,
                   'month must be the first day of a month that is over%', 'a month not over is refused');
UPDATE billing.solar_installations SET commissioned_on = '2024-12-15' WHERE id = '00000000-0000-4000-8000-0000000005a1';
SELECT throws_like($$ SELECT api.generate_solar_credits('TAPPAY', '2024-12-01') $$, 'no solar rate in force on 2024-12-15%',
                   'an installation earning without a rate is refused, never paid silently less');

-- Wallets: auto top-up and regular payments -----------------------------------------------------------------
SELECT is((SELECT target_balance || ' ' || minimum_balance || ' ' || auto_top_up FROM api.set_wallet(:'acct1',
          target_balance => 30, minimum_balance => 10, auto_top_up => true, payment_method_id => '00000000-0000-4000-8000-0000000004a1')),
          '30.00 10.00 true', 'a wallet for Olive''s meter');
SELECT throws_like(format($$ SELECT api.set_wallet('%s', target_balance => 12) $$, :'acct1'),
                   'target_balance must be between 15.00 and 250 GBP%', 'the target stays 5 GBP above the minimum');
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object('meter_id', :'m1', 'observed_at', now(),
                                                                      'balance', '4.5', 'health', 'healthy')));
SELECT is((billing.run_money_pass_v1() ->> 'auto_top_ups')::int, 1, 'below the minimum: one auto top-up');
SELECT is((SELECT amount || ' ' || status || ' ' || origin FROM billing.payments WHERE origin = 'auto_top_up'),
          '25.50 pending auto_top_up', 'for the difference to the target');
SELECT is((billing.run_money_pass_v1() ->> 'auto_top_ups')::int, 0, 'never a second while one is open');
SELECT is((SELECT payment_timing || ' ' || regular_amount FROM api.set_wallet(:'acct1', payment_timing => 'weekly',
          regular_amount => 20, payment_day => extract(isodow FROM flows.uk_day(now() + interval '2 days'))::int)),
          'weekly 20.00', 'regular weekly payments');
SELECT is((billing.run_money_pass_v1() ->> 'scheduled_payments')::int, 1, 'are created a week ahead');
SELECT is((SELECT scheduled_at FROM billing.payments WHERE origin = 'scheduled'),
          (flows.uk_day(now() + interval '2 days') + time '09:00') AT TIME ZONE 'Europe/London',
          'at 09:00 UK time on their day, so the customer can be told the day before');
SELECT is((billing.run_money_pass_v1() ->> 'scheduled_payments')::int, 0, 'once');
SELECT payment_timing IS NULL FROM api.set_wallet(:'acct1', payment_timing => 'none');
SELECT is((billing.run_money_pass_v1() ->> 'scheduled_withdrawn')::int, 1, 'and withdrawn when the wallet stops them');

-- What a customer sees, and may change ---------------------------------------------------------------
-- (a SQL login's claims come from flows.sql_login_claims: this session's, for this test)
INSERT INTO flows.sql_login_claims (login, claims)
VALUES (session_user, jsonb_build_object('esco', 'TAPPAY', 'customer', :'olive_id'));
SET LOCAL ROLE flows_customer;
SELECT is((SELECT count(*)::int FROM api.payments WHERE customer_id <> :'olive_id'), 0, 'a customer sees only their payments');
SELECT ok((SELECT count(*) FROM api.payments) >= 3, 'all of them');
SELECT is((SELECT count(*)::int FROM api.topups WHERE customer_id <> :'olive_id'), 0, 'and their top-ups');
SELECT is((SELECT target_balance FROM api.set_wallet(:'acct1', target_balance => 40)), 40.00, 'changes their wallet');
SELECT throws_like(format($$ SELECT api.set_wallet('%s', minimum_balance => 150) $$, :'acct1'),
                   'minimum_balance must be between 0 and 100 GBP%', 'within the limits');
SELECT throws_ok(format($$ SELECT api.set_wallet('%s', payment_method_id => '00000000-0000-4000-8000-0000000004a1') $$, :'acct1'),
                 '42501', NULL, 'but not the payment method');
SELECT throws_like(format($$ SELECT api.set_wallet('%s', target_balance => 40) $$, :'acct2'),
                   'account_id names no account of yours%', 'nor anyone else''s wallet');
SELECT throws_ok($$ SELECT * FROM api.journals $$, '42501', NULL, 'and no ledger');
RESET ROLE;

SELECT lives_ok('SET CONSTRAINTS ALL IMMEDIATE', 'every journal balances, every allocation fits');
SELECT is((SELECT count(*)::int FROM (SELECT journal_id FROM billing.journal_entries GROUP BY journal_id
                                      HAVING sum(amount) <> 0) AS x), 0, 'no journal is off by a penny');
SELECT is((SELECT sum(CASE WHEN kind IN ('asset', 'expense') THEN balance ELSE -balance END) FROM api.esco_books
           WHERE esco = '00000000-0000-4000-8000-0000000001a1'), 0.00,
          'the books balance: assets + expenses = liabilities + income');

SELECT * FROM finish();
ROLLBACK;

-- Notifications in SQL: quiet hours and phone numbers, settings and
-- preferences, the rules (a low balance once per crossing and again after it
-- recovers, meters offline once per outage, rollout failures once per
-- rollout), the audience (channels, opt-outs, operators), dedupe, and the
-- senders' claim, fence, retry with backoff, dead letter and release.
-- The transaction's now() stands still: times are placed before it, and a
-- lease "runs out" by moving it into the past.
BEGIN;
SELECT plan(87);

-- Quiet hours (UK local time) and phone numbers --------------------------------------
SELECT is(flows.after_quiet_hours('2026-07-01 21:30+01', '21:00', '08:00'), '2026-07-02 08:00+01'::timestamptz,
          'a text at 21:30 waits for 08:00 the next morning');
SELECT is(flows.after_quiet_hours('2026-07-02 07:59+01', '21:00', '08:00'), '2026-07-02 08:00+01'::timestamptz,
          'a text at 07:59 waits a minute');
SELECT is(flows.after_quiet_hours('2026-07-02 12:00+01', '21:00', '08:00'), '2026-07-02 12:00+01'::timestamptz,
          'a text at noon goes at once');
SELECT is(flows.after_quiet_hours('2026-12-01 23:00+00', '21:00', '08:00'), '2026-12-02 08:00+00'::timestamptz,
          'in winter too (GMT)');
SELECT is(flows.after_quiet_hours('2026-03-28 22:00+00', '21:00', '08:00'), '2026-03-29 07:00+00'::timestamptz,
          'the night the clocks go forward: 08:00 BST');
SELECT is(flows.after_quiet_hours('2026-10-24 22:00+01', '21:00', '08:00'), '2026-10-25 08:00+00'::timestamptz,
          'the night they go back: 08:00 GMT');
SELECT is(flows.after_quiet_hours('2026-07-02 13:30+01', '13:00', '14:00'), '2026-07-02 14:00+01'::timestamptz,
          'quiet hours within a day');
SELECT is(flows.after_quiet_hours('2026-07-02 13:30+01', '13:00', '13:00'), '2026-07-02 13:30+01'::timestamptz,
          'equal bounds: no quiet hours');
SELECT is(flows.phone_e164('07700 900123'), '+447700900123', 'a UK mobile in E.164');
SELECT is(flows.phone_e164('+44 7700 900123'), '+447700900123', 'spaces dropped');
SELECT is(flows.phone_e164('12345'), NULL, 'not a number we can text');

-- A community: two homes, a twin-element and a single-element prepay meter ------------
INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000d1', 'TAPNOTE', 'Notify Energy');
SELECT is((SELECT offline_hours FROM flows.notification_settings WHERE esco = '00000000-0000-4000-8000-0000000000d1'),
          6, 'a new ESCO gets its notification settings (6 hours offline by default)');
SELECT throws_ok($$UPDATE flows.notification_settings SET operator_emails = '{not-an-address}'
                   WHERE esco = '00000000-0000-4000-8000-0000000000d1'$$, '23514', NULL,
                 'operator emails must be addresses');
UPDATE flows.notification_settings
SET operator_emails = '{ops@notify.example}', operator_phones = '{+447700900001}', offline_hours = 3
WHERE esco = '00000000-0000-4000-8000-0000000000d1';
INSERT INTO flows.sites (id, esco, code, name)
VALUES ('00000000-0000-4000-8000-0000000000d2', '00000000-0000-4000-8000-0000000000d1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot) VALUES
    ('00000000-0000-4000-8000-0000000000d3', '00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-0000000000d2', 'P-1'),
    ('00000000-0000-4000-8000-0000000000e3', '00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-0000000000d2', 'P-2');
INSERT INTO flows.service_head_registry (id, esco, name) VALUES
    ('00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-0000000000d1', 'H1'),
    ('00000000-0000-4000-8000-0000000000e4', '00000000-0000-4000-8000-0000000000d1', 'H2');
INSERT INTO flows.properties_service_head VALUES
    ('00000000-0000-4000-8000-0000000000d3', '00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-0000000000d1'),
    ('00000000-0000-4000-8000-0000000000e3', '00000000-0000-4000-8000-0000000000e4', '00000000-0000-4000-8000-0000000000d1');
SELECT api.register_meter(serial => 'EML3200000001', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000000d1',
    registers => '[{"element": "A", "start_time": "2026-01-01T00:00:00Z"}, {"element": "B", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3200000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000000d1',
    registers => '[{"element": "SINGLE", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m2 \gset
INSERT INTO flows.service_head_meter VALUES
    ('00000000-0000-4000-8000-0000000000d4', :'m1', '00000000-0000-4000-8000-0000000000d1'),
    ('00000000-0000-4000-8000-0000000000e4', :'m2', '00000000-0000-4000-8000-0000000000d1');
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000d3', 'Olive Owner', 'olive@notify.example',
                            '07700 900123') -> 'customer' ->> 'id' AS olive \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000e3', 'Tina Tenant', 'tina@notify.example',
                            role => 'occupier') -> 'customer' ->> 'id' AS tina \gset

-- Preferences: only what is not essential can be opted out of ------------------------
SELECT throws_ok(format($$INSERT INTO flows.notification_preferences (customer_id, esco, opted_out)
                          VALUES (%L, '00000000-0000-4000-8000-0000000000d1', '{statement_ready}')$$, :'tina'),
                 '23514', 'opted_out names statement_ready which cannot be opted out of',
                 'statement_ready is essential');
SELECT throws_ok(format($$INSERT INTO flows.notification_preferences (customer_id, esco, channels)
                          VALUES (%L, '00000000-0000-4000-8000-0000000000d1', '{}')$$, :'tina'),
                 '23514', NULL, 'at least one channel');
INSERT INTO flows.notification_preferences (customer_id, esco, opted_out)
VALUES (:'tina', '00000000-0000-4000-8000-0000000000d1', '{low_balance}');
INSERT INTO flows.notification_preferences (customer_id, esco, channels)
VALUES (:'olive', '00000000-0000-4000-8000-0000000000d1', '{email,sms}');

-- The rules look from a day ago (they were created with the database, before these rows' times).
UPDATE flows.notification_rules SET active_since = now() - interval '1 day';
CREATE TEMP VIEW queued AS
SELECT o.rule, o.channel, o.recipient, o.parameters, o.send_after, o.dedupe_key FROM flows.notification_outbox AS o
WHERE o.esco = '00000000-0000-4000-8000-0000000000d1';
CREATE FUNCTION pg_temp.balance(meter text, gbp numeric, minutes_ago integer) RETURNS void LANGUAGE sql AS $$
    SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object(
        'meter_id', meter, 'observed_at', now() - make_interval(mins => minutes_ago), 'balance', gbp)))
$$;
CREATE FUNCTION pg_temp.run() RETURNS integer LANGUAGE sql AS $$
    SELECT sum(queued)::integer FROM flows.run_notification_rules_v1()
$$;

-- Low balance: once per crossing, re-armed when it recovers -------------------------------
SELECT pg_temp.balance(:'m1', 20, 100);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance'), 0, 'GBP 20: nothing (threshold GBP 15)');
SELECT pg_temp.balance(:'m1', 12.345, 90);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance'), 2,
          'under GBP 15: one message per channel Olive chose (email and text)');
SELECT is((SELECT recipient || ' ' || (parameters ->> 'balance') || ' ' || (parameters ->> 'threshold')
           FROM queued WHERE rule = 'low_balance' AND channel = 'email'),
          'olive@notify.example 12.35 15.00', 'to Olive, with the balance rounded half-up and the threshold');
SELECT is((SELECT parameters ->> 'serial' || ' ' || (parameters ->> 'customer_name') || ' ' ||
                  (parameters ->> 'esco_name') FROM queued WHERE rule = 'low_balance' AND channel = 'email'),
          'EML3200000001 Olive Owner Notify Energy', 'naming the meter, the customer and the ESCO');
SELECT is((SELECT recipient FROM queued WHERE rule = 'low_balance' AND channel = 'sms'), '+447700900123',
          'the text goes to her number in E.164');
SELECT is((SELECT send_after FROM queued WHERE rule = 'low_balance' AND channel = 'sms'),
          flows.after_quiet_hours(now(), '21:00', '08:00'), 'after the ESCO''s quiet hours');
SELECT pg_temp.balance(:'m1', 10, 80);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance'), 2, 'still under: nothing more');
SELECT pg_temp.balance(:'m1', 25, 70);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance'), 2, 'recovered: nothing, but re-armed');
SELECT pg_temp.balance(:'m1', 9.5, 60);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance' AND channel = 'email'), 2,
          'falls again: a second email');
SELECT is((SELECT parameters ->> 'balance' FROM queued WHERE rule = 'low_balance' AND channel = 'email'
           ORDER BY parameters ->> 'observed_at' DESC LIMIT 1), '9.50', 'with the new balance');
SELECT pg_temp.balance(:'m1', 30, 50);
SELECT pg_temp.balance(:'m1', 40, 45);
SELECT pg_temp.balance(:'m1', 5, 40);
SELECT pg_temp.balance(:'m1', 20, 35);
SELECT pg_temp.balance(:'m1', 1, 30);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance' AND channel = 'email'), 4,
          'two crossings between runs: two emails');
SELECT pg_temp.balance(:'m2', 3, 90);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE recipient = 'tina@notify.example'), 0,
          'Tina opted out of low balance');
UPDATE flows.escos SET low_balance_threshold = 50 WHERE id = '00000000-0000-4000-8000-0000000000d1';
SELECT pg_temp.balance(:'m1', 45, 25);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'low_balance' AND channel = 'email'), 4,
          'a raised threshold: still under it, no new crossing');
UPDATE flows.escos SET low_balance_threshold = 15 WHERE id = '00000000-0000-4000-8000-0000000000d1';
SELECT is((SELECT below FROM flows.notification_balance_watch WHERE meter_id = :'m1'), true,
          'each meter''s last verdict is kept');

-- Meters offline, once per outage, to the ESCO's operators ------------------------------------
SELECT flows.record_meter_states(jsonb_build_array(
    jsonb_build_object('meter_id', :'m1', 'observed_at', now() - interval '5 hours', 'health', 'healthy'),
    jsonb_build_object('meter_id', :'m2', 'observed_at', now() - interval '2 hours', 'health', 'healthy')));
SELECT pg_temp.run();
SELECT is((SELECT array_agg(channel || ' ' || recipient ORDER BY channel) FROM queued WHERE rule = 'meter_offline'),
          ARRAY['email ops@notify.example', 'sms +447700900001'], 'the operators are told: email and text');
SELECT is((SELECT parameters -> 'meters' -> 0 ->> 'serial' FROM queued WHERE rule = 'meter_offline' LIMIT 1),
          'EML3200000001', 'of the meter not reached for over 3 hours, not the one reached 2 hours ago');
SELECT is((SELECT send_after FROM queued WHERE rule = 'meter_offline' AND channel = 'sms'), now(),
          'staff texts are not held by quiet hours');
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'meter_offline'), 2, 'told once per outage');
UPDATE flows.notification_settings SET offline_hours = 1 WHERE esco = '00000000-0000-4000-8000-0000000000d1';
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'meter_offline'), 4,
          'with 1 hour, the second meter is offline too: a new message for it alone');
SELECT is((SELECT (parameters ->> 'count')::int FROM queued WHERE rule = 'meter_offline' AND channel = 'email'
           ORDER BY parameters -> 'meters' -> 0 ->> 'serial' DESC LIMIT 1), 1, 'listing one meter');
SELECT flows.record_meter_states(jsonb_build_array(
    jsonb_build_object('meter_id', :'m1', 'observed_at', now() - interval '1 minute', 'health', 'healthy')));
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM flows.notification_offline_meters WHERE meter_id = :'m1'), 0,
          'a meter reached again is forgotten');
UPDATE flows.meter_shadows SET last_healthy_at = now() - interval '4 hours' WHERE id = :'m1';  -- as if hours passed
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'meter_offline'), 6, 'lost again: told again');

-- Tariff rollout failures, once per rollout, when it has ended ---------------------------
SELECT batch_id AS rollout FROM api.set_future_tariff(
    jsonb_build_object('standing_charge', '0.6', 'unit_rate_element_a', '0.25', 'unit_rate_element_b', '0.2',
                       'prepayment_emergency_credit', '10', 'prepayment_ecredit_availability', '5',
                       'prepayment_debt_recovery_rate', '0.3', 'activation_datetime', now() + interval '30 days'),
    ARRAY[:'m1', :'m2']::uuid[]) LIMIT 1 \gset
UPDATE flows.meter_commands SET status = 'failed', finished_at = now(), last_error = 'read-back differs: standing_charge'
WHERE batch_id = :'rollout' AND meter_id = :'m1';
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'tariff_rollout_failed'), 0, 'not while a meter is pending');
UPDATE flows.meter_commands SET status = 'done', finished_at = now() WHERE batch_id = :'rollout' AND meter_id = :'m2';
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'tariff_rollout_failed'), 2, 'ended with a failure: told');
SELECT is((SELECT parameters -> 'failures' -> 0 ->> 'serial' || ': ' || (parameters -> 'failures' -> 0 ->> 'error')
           || ' (' || (parameters ->> 'confirmed') || ' confirmed)'
           FROM queued WHERE rule = 'tariff_rollout_failed' AND channel = 'email'),
          'EML3200000001: read-back differs: standing_charge (1 confirmed)', 'which meter and why');
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'tariff_rollout_failed'), 2, 'once');

-- Dedupe: the same events queued again add nothing --------------------------------------
SELECT is(flows.queue_notifications('tariff_rollout_failed', ARRAY[
    ('00000000-0000-4000-8000-0000000000d1', :'rollout', NULL, '{}', NULL)::flows.notification_event]), 0,
    'an event already queued is not queued again');
SELECT is((SELECT last_error FROM flows.notification_rules WHERE rule = 'low_balance'), NULL, 'no rule failed');

-- Money: a payment due tomorrow, a payment that failed, a top-up credited ----------------------
-- Olive pays by Direct Debit, Tina by card (her email only: she gave no phone).
SELECT id AS acct1 FROM billing.accounts WHERE meter_id = :'m1' AND type = 'supply' \gset
SELECT id AS acct2 FROM billing.accounts WHERE meter_id = :'m2' AND type = 'supply' \gset
INSERT INTO billing.payment_methods (esco, customer_id, kind, processor_customer, processor_method, label) VALUES
    ('00000000-0000-4000-8000-0000000000d1', :'olive', 'direct_debit', 'cus_olive', 'pm_bacs_olive', 'Bacs ending 6789'),
    ('00000000-0000-4000-8000-0000000000d1', :'tina', 'card', 'cus_tina', 'pm_card_tina', NULL);
CREATE FUNCTION pg_temp.uk_tomorrow(at time) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT ((flows.uk_day(now()) + 1)::timestamp + at) AT TIME ZONE 'Europe/London'
$$;
-- A worker credits a top-up's token on the meter (its send_token command done), the balance after as read.
CREATE FUNCTION pg_temp.credit(p_topup uuid, p_balance_after numeric) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    command uuid := (SELECT command_id FROM billing.topups WHERE id = p_topup);
    attempt integer;
BEGIN
    UPDATE flows.meter_commands SET status = 'running', attempts = attempts + 1, lease_owner = 'tap-worker',
                                    lease_expires_at = now() + interval '1 minute', started_at = now()
    WHERE id = command RETURNING attempts INTO attempt;
    PERFORM flows.finish_meter_command_v1(command, 'tap-worker', attempt, jsonb_build_object('result',
        jsonb_build_object('balance_before', '4.5', 'balance_after', p_balance_after::text,
                           'transactions_before', 1, 'transactions_after', 2)));
END
$$;

SELECT id AS due_olive FROM api.schedule_payment(:'acct1', 25, pg_temp.uk_tomorrow('09:00')) \gset
SELECT id AS due_tina FROM api.schedule_payment(:'acct2', 30.5, pg_temp.uk_tomorrow('23:59')) \gset
SELECT id AS later FROM api.schedule_payment(:'acct1', 25, pg_temp.uk_tomorrow('09:00') + interval '1 day') \gset
SELECT id AS cancelled FROM api.schedule_payment(:'acct1', 40, pg_temp.uk_tomorrow('10:00')) \gset
SELECT id AS gone FROM api.schedule_payment(:'acct2', 15, pg_temp.uk_tomorrow('08:00')) \gset
SELECT status FROM api.cancel_payment(:'cancelled', 'asked by the customer');
UPDATE billing.payments SET submitted_at = now(), status = 'created', provider_reference = 'pi_gone' WHERE id = :'gone';
SELECT pg_temp.run();
SELECT is((SELECT array_agg(channel || ' ' || recipient ORDER BY channel, recipient) FROM queued WHERE rule = 'payment_due'),
          ARRAY['email olive@notify.example', 'email tina@notify.example', 'sms +447700900123'],
          'payments due tomorrow: their payers are told on the channels they chose');
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'payment_due' AND dedupe_key ~ (:'cancelled' || '|' || :'gone' || '|' || :'later')),
          0, 'not a cancelled payment, one already gone to the processor, nor one due the day after');
SELECT is((SELECT parameters ->> 'amount' || ' ' || (parameters ->> 'method') || ' ' || (parameters ->> 'method_label') || ' '
                  || (parameters ->> 'due_on') FROM queued WHERE rule = 'payment_due' AND channel = 'email'
                                                            AND recipient = 'olive@notify.example'),
          '25.00 direct_debit Bacs ending 6789 ' || to_char(pg_temp.uk_tomorrow('09:00') AT TIME ZONE 'Europe/London',
                                                            'FMDay FMDD FMMonth YYYY'),
          'the amount, how it is paid and the day (UK)');
SELECT is((SELECT parameters ->> 'amount' FROM queued WHERE rule = 'payment_due' AND recipient = 'tina@notify.example'),
          '30.50', 'amounts to the penny');
SELECT is((SELECT send_after FROM queued WHERE rule = 'payment_due' AND channel = 'sms'),
          flows.after_quiet_hours(now(), '21:00', '08:00'), 'the text waits for the end of the quiet hours');
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'payment_due'), 3, 'once per payment');
SELECT lives_ok(format($$UPDATE flows.notification_preferences SET opted_out = '{low_balance,payment_due,topup_applied}'
                         WHERE customer_id = %L$$, :'tina'), 'payment_due and topup_applied can be opted out of');
SELECT id AS due_tina2 FROM api.schedule_payment(:'acct2', 12, pg_temp.uk_tomorrow('12:00')) \gset
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'payment_due' AND recipient = 'tina@notify.example'), 1,
          'Tina opted out: her second payment due tomorrow is not told');

-- Tomorrow is the UK's, across the clocks changing. The rule's first pass of a day (its window holds the
-- day's start) tells every payment due the next day; a later pass only those scheduled since.
CREATE TEMP TABLE olive_pays AS
SELECT :'acct1'::uuid AS account, :'olive'::uuid AS customer, m.id AS method
FROM billing.payment_methods AS m WHERE m.processor_method = 'pm_bacs_olive';
CREATE FUNCTION pg_temp.due_at(at timestamptz, made timestamptz DEFAULT '2026-03-01 12:00+00') RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, payment_method_id, scheduled_at,
                                  requested_by, created_at)
    SELECT '00000000-0000-4000-8000-0000000000d1', o.account, o.customer, 10, 'stripe', 'operator', o.method, at,
           'pgtap', made
    FROM olive_pays AS o
    RETURNING id
$$;
SELECT pg_temp.due_at('2026-03-29 00:15+00') AS spring_a, pg_temp.due_at('2026-03-29 23:30+01') AS spring_b,
       pg_temp.due_at('2026-03-30 00:15+01') AS spring_monday, pg_temp.due_at('2026-03-28 23:45+00') AS spring_today \gset
SELECT is((SELECT array_agg(key ORDER BY key) FROM flows.payment_due_events('2026-03-28 00:00+00', '2026-03-28 23:30+00')),
          (SELECT array_agg(k ORDER BY k) FROM unnest(ARRAY[:'spring_a', :'spring_b']) AS k),
          'on Saturday 28 March (GMT), tomorrow is Sunday (clocks forward): 00:15 GMT to 23:30 BST, not Monday 00:15 BST');
SELECT pg_temp.due_at('2026-10-25 00:30+01') AS autumn_a, pg_temp.due_at('2026-10-25 23:30+00') AS autumn_b,
       pg_temp.due_at('2026-10-26 00:30+00') AS autumn_monday, pg_temp.due_at('2026-10-24 23:45+01') AS autumn_today \gset
SELECT is((SELECT array_agg(key ORDER BY key) FROM flows.payment_due_events('2026-10-24 00:00+01', '2026-10-24 23:30+01')),
          (SELECT array_agg(k ORDER BY k) FROM unnest(ARRAY[:'autumn_a', :'autumn_b']) AS k),
          'on Saturday 24 October (BST), tomorrow is the 25-hour Sunday: 00:30 BST (23:30 UTC the day before) to 23:30 GMT');
SELECT pg_temp.due_at('2026-10-25 12:00+00', '2026-10-24 23:10+01') AS autumn_late \gset
SELECT is((SELECT array_agg(key) FROM flows.payment_due_events('2026-10-24 23:00+01', '2026-10-24 23:30+01')),
          ARRAY[:'autumn_late'], 'a later pass: only the payment for tomorrow scheduled since the last');
SELECT is((SELECT parameters ->> 'due_on' FROM flows.payment_due_events('2026-10-24 00:00+01', '2026-10-24 23:30+01')
           WHERE key = :'autumn_a'), 'Sunday 25 October 2026', 'its day as the UK has it');
DELETE FROM billing.payments WHERE requested_by = 'pgtap';

-- A payment that failed: its payer told once; essential, so no opting out.
SELECT id AS declined FROM api.schedule_payment(:'acct1', 18) \gset
SELECT outcome FROM billing.apply_processor_event_v1('stripe', format(
    '{"id": "evt_tap_declined", "type": "payment_intent.payment_failed", "created": 1790000000, "data": {"object": {
      "id": "pi_tap_declined", "object": "payment_intent", "amount": 1800, "currency": "gbp",
      "status": "requires_payment_method", "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
      "metadata": {"payment_id": "%s"}}}}', :'declined')::jsonb);
SELECT pg_temp.run();
SELECT is((SELECT array_agg(channel || ' ' || (parameters ->> 'amount') || ' ' || (parameters ->> 'reason') ORDER BY channel)
           FROM queued WHERE rule = 'payment_failed'),
          ARRAY['email 18.00 Your card was declined.', 'sms 18.00 Your card was declined.'],
          'a declined payment: Olive is told the amount and why, by email and text');
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'payment_failed'), 2, 'once');
SELECT throws_ok(format($$UPDATE flows.notification_preferences SET opted_out = '{payment_failed}' WHERE customer_id = %L$$,
                        :'olive'), '23514', 'opted_out names payment_failed which cannot be opted out of',
                 'payment_failed is essential');

-- A top-up credited on the meter: its payer told once, with the amount, the source and the new balance.
SELECT id AS cash FROM api.record_payment(:'acct1', 12.5) \gset
SELECT id AS cash_topup FROM billing.topups WHERE payment_id = :'cash' \gset
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'topup_applied'), 0, 'paid, not on the meter yet: nothing');
SELECT pg_temp.credit(:'cash_topup', 24.845);
SELECT pg_temp.run();
SELECT is((SELECT array_agg(channel ORDER BY channel) FROM queued WHERE rule = 'topup_applied'), ARRAY['email', 'sms'],
          'credited: Olive is told by email and text');
SELECT is((SELECT concat_ws(' ', parameters ->> 'amount', parameters ->> 'source', parameters ->> 'paid_by',
                            parameters ->> 'balance_after', parameters ->> 'serial')
           FROM queued WHERE rule = 'topup_applied' AND channel = 'email'),
          '12.50 payment cash 24.85 EML3200000001', 'the amount, the source, the balance after (half-up) and the meter');
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'topup_applied'), 2, 'once per top-up');
SELECT id AS gift FROM api.create_gift(:'acct1', 5, 'winter fund') \gset
SELECT pg_temp.credit((SELECT id FROM billing.topups WHERE gift_id = :'gift'), 29.85);
SELECT id AS cancelled_topup FROM api.create_adjustment_topup(:'acct1', 3, 'goodwill') \gset
SELECT status FROM api.cancel_topup(:'cancelled_topup', 'entered twice');
SELECT id AS deduction FROM api.create_adjustment_topup(:'acct1', -2, 'meter reading corrected') \gset
SELECT pg_temp.run();
SELECT is((SELECT array_agg(parameters ->> 'source' || ' ' || (parameters ->> 'reason')) FROM queued
           WHERE rule = 'topup_applied' AND channel = 'email' AND parameters ->> 'source' <> 'payment'),
          ARRAY['gift winter fund'], 'a gift credited is told with its reason; a cancelled top-up and a deduction are not');
SELECT id AS tina_cash FROM api.record_payment(:'acct2', 20) \gset
SELECT id AS tina_topup FROM billing.topups WHERE payment_id = :'tina_cash' \gset
SELECT pg_temp.credit(:'tina_topup', 22);
SELECT pg_temp.run();
SELECT is((SELECT count(*)::int FROM queued WHERE rule = 'topup_applied' AND recipient = 'tina@notify.example'), 0,
          'Tina opted out of topup_applied');
SELECT is((SELECT count(*)::int FROM flows.topup_applied_events(now() - interval '1 hour', now()) WHERE key = :'tina_topup'),
          1, 'though the rule saw her top-up');
SELECT is((SELECT string_agg(rule || ': ' || last_error, '; ') FROM flows.notification_rules WHERE last_error IS NOT NULL),
          NULL, 'no rule failed');

-- Sending: claim, fence, retry with backoff, dead letter, release ----------------------------
SELECT is((SELECT count(*)::int FROM flows.claim_notifications_v1('email', 'w1', 100)),
          (SELECT count(*)::int FROM flows.notification_outbox WHERE channel = 'email'),
          'a sender claims every due email');
SELECT is((SELECT count(*)::int FROM flows.claim_notifications_v1('email', 'w2', 100)), 0, 'leased: nobody else');
SELECT id AS first FROM flows.notification_outbox WHERE channel = 'email' ORDER BY created_at, id LIMIT 1 \gset
SELECT throws_ok(format($$SELECT flows.record_notification_sent_v1(%L, 'w2', 1, 'x')$$, :'first'), 'FL409', NULL,
                 'only the sender holding it records it');
SELECT is(flows.record_notification_failed_v1(:'first', 'w1', 1, 'connection refused', false, '1 minute'), 'pending',
          'a transient failure: pending again');
SELECT ok((SELECT send_after >= now() + interval '45 seconds' AND attempts = 1 AND last_error = 'connection refused'
           FROM flows.notification_outbox WHERE id = :'first'), 'after the backoff, the attempt counted');
SELECT is((SELECT count(*)::int FROM flows.claim_notifications_v1('email', 'w1', 100)), 0, 'not before its time');
UPDATE flows.notification_outbox SET send_after = now() - interval '1 second' WHERE id = :'first';
SELECT is((SELECT attempt FROM flows.claim_notifications_v1('email', 'w1', 100)), 2::smallint, 'then attempt 2');
SELECT lives_ok(format($$SELECT flows.record_notification_sent_v1(%L, 'w1', 2, '<abc@flows>')$$, :'first'),
                'sent on attempt 2');
SELECT is((SELECT status || ' ' || provider_message_id FROM flows.notification_outbox WHERE id = :'first'),
          'sent <abc@flows>', 'sent, with the provider''s id');
SELECT id AS second FROM flows.notification_outbox WHERE channel = 'email' AND status = 'sending'
ORDER BY created_at, id LIMIT 1 \gset
SELECT is(flows.record_notification_failed_v1(:'second', 'w1', 1, '550 no such user', true), 'dead',
          'a refusal: dead at once');
SELECT id AS third FROM flows.notification_outbox WHERE channel = 'email' AND status = 'sending'
ORDER BY created_at, id LIMIT 1 \gset
UPDATE flows.notification_outbox SET attempts = max_attempts, lease_expires_at = now() - interval '1 second'
WHERE id = :'third';
SELECT is((SELECT count(*)::int FROM flows.claim_notifications_v1('email', 'w3', 100) WHERE id = :'third'), 0,
          'a lease that ran out on the last attempt is not tried again');
SELECT matches((SELECT status || ': ' || last_error FROM flows.notification_outbox WHERE id = :'third'),
               '^dead: abandoned: .* it may have been delivered', 'it is dead, saying it may have gone out');
SELECT is(flows.release_notifications_v1('w1', ARRAY(SELECT id FROM flows.notification_outbox WHERE status = 'sending'),
                                         ARRAY(SELECT attempts::int FROM flows.notification_outbox WHERE status = 'sending')),
          (SELECT count(*)::int FROM flows.notification_outbox WHERE status = 'sending'),
          'a stopping sender hands back what it holds');
SELECT is((SELECT count(*)::int FROM flows.notification_outbox WHERE channel = 'email' AND status = 'pending'
           AND attempts = 0), (SELECT count(*)::int FROM flows.notification_outbox WHERE channel = 'email'
                               AND status = 'pending'), 'pending again, the attempt not counted');
UPDATE flows.notification_outbox SET max_attempts = 1, send_after = now() - interval '1 second'
WHERE id = (SELECT id FROM flows.notification_outbox WHERE channel = 'email' AND status = 'pending' LIMIT 1)
RETURNING id AS fourth \gset
SELECT is((SELECT count(*)::int FROM flows.claim_notifications_v1('email', 'w1', 100) WHERE id = :'fourth'), 1,
          'claimed on its only attempt');
SELECT is(flows.record_notification_failed_v1(:'fourth', 'w1', 1, 'timed out', false), 'dead',
          'the last attempt failed: dead');
SELECT is((SELECT last_error FROM flows.notification_outbox WHERE id = :'fourth'), 'gave up after 1 attempts: timed out',
          'saying it gave up');

-- Operators: retry a dead letter, cancel what is not sent ----------------------------
SELECT count(*) AS outbox FROM queued \gset
-- (a SQL login's claims come from flows.sql_login_claims: this session's, for this test)
INSERT INTO flows.sql_login_claims (login, claims) VALUES (session_user, '{"esco": "TAPNOTE"}');
SET LOCAL ROLE flows_operator;
SELECT is((SELECT status || ' ' || attempts FROM api.retry_notification(:'second')), 'pending 0',
          'a dead letter is queued again, its attempts from zero');
SELECT throws_ok(format($$SELECT * FROM api.retry_notification(%L)$$, :'first'), '22023',
                 'only a dead or cancelled notification can be retried (this one is sent)', 'a sent one is never resent');
SELECT is((SELECT status FROM api.cancel_notification(:'second')), 'cancelled', 'a pending one can be cancelled');
SELECT is((SELECT count(*)::int FROM api.notifications), :outbox,
          'operators see their ESCO''s outbox');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

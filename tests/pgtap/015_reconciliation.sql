-- Reconciliation in SQL, with hand-computed cases (docs/reconciliation.md): the tariff periods of a meter
-- (a mid-period tariff change at midnight), the shadow prepay ledger (energy per element x the rate active
-- then, standing charge and debt recovery at UK midnight, emergency credit taken and repaid from the next
-- credit, a token typed on the keypad, an injected deduction) and the three-way exceptions with their
-- evidence, the day's summary, operator decisions (audited), and what each role may see.
BEGIN;
SELECT plan(32);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000015a1', 'TAPREC', 'Rec');
INSERT INTO flows.sites (id, esco, code, name) VALUES ('00000000-0000-4000-8000-0000000015a2', '00000000-0000-4000-8000-0000000015a1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot)
SELECT ('00000000-0000-4000-8000-00000000150' || n)::uuid, '00000000-0000-4000-8000-0000000015a1',
       '00000000-0000-4000-8000-0000000015a2', 'P-' || n
FROM generate_series(1, 2) AS n;
SELECT api.register_meter(serial => 'EML3300000001', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000015a1') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3300000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000015a1') ->> 'id' AS m2 \gset
UPDATE flows.meter_registers SET start_time = '2025-01-01' WHERE meter_id IN (:'m1', :'m2');
INSERT INTO flows.service_head_registry (id, esco, name)
SELECT ('00000000-0000-4000-8000-00000000160' || n)::uuid, '00000000-0000-4000-8000-0000000015a1', 'H' || n
FROM generate_series(1, 2) AS n;
INSERT INTO flows.properties_service_head
SELECT ('00000000-0000-4000-8000-00000000150' || n)::uuid, ('00000000-0000-4000-8000-00000000160' || n)::uuid,
       '00000000-0000-4000-8000-0000000015a1'
FROM generate_series(1, 2) AS n;
INSERT INTO flows.service_head_meter VALUES
    ('00000000-0000-4000-8000-000000001601', :'m1', '00000000-0000-4000-8000-0000000015a1'),
    ('00000000-0000-4000-8000-000000001602', :'m2', '00000000-0000-4000-8000-0000000015a1');
SELECT api.onboard_customer('00000000-0000-4000-8000-000000001501', 'Ann', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct1 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-000000001502', 'Bob', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct2 \gset

-- Tariffs read from the meters: T1 (A 0.20, B 0.10 GBP/kWh, standing 0.50/day, debt recovery 0.25/day,
-- emergency credit 15 below 10); m1 is sent T2 (A 0.30, standing 0.60) activating at midnight 11 January.
CREATE TEMP TABLE tariffs (name text, tariff jsonb);
INSERT INTO tariffs VALUES
    ('T1', '{"standing_charge": "0.5", "unit_rate_element_a": "0.2", "unit_rate_element_b": "0.1",
             "prepayment_emergency_credit": "15", "prepayment_ecredit_availability": "10",
             "prepayment_debt_recovery_rate": "0.25"}'),
    ('T2', '{"standing_charge": "0.6", "unit_rate_element_a": "0.3", "unit_rate_element_b": "0.1",
             "prepayment_emergency_credit": "15", "prepayment_ecredit_availability": "10",
             "prepayment_debt_recovery_rate": "0.25"}');
SELECT flows.record_meter_states(jsonb_build_array(
    jsonb_build_object('meter_id', :'m1', 'observed_at', '2026-01-09T12:00:00Z', 'tariffs_active', (SELECT tariff FROM tariffs WHERE name = 'T1')),
    jsonb_build_object('meter_id', :'m2', 'observed_at', '2026-01-09T12:00:00Z', 'tariffs_active', (SELECT tariff FROM tariffs WHERE name = 'T1')),
    jsonb_build_object('meter_id', :'m1', 'observed_at', '2026-01-10T12:00:00Z', 'tariffs_future',
                       (SELECT tariff || '{"activation_datetime": "2026-01-11T00:00:00+00:00"}' FROM tariffs WHERE name = 'T2')),
    jsonb_build_object('meter_id', :'m1', 'observed_at', '2026-01-11T06:00:00Z', 'tariffs_active', (SELECT tariff FROM tariffs WHERE name = 'T2'))));

SELECT results_eq(
    format($$SELECT valid_from, valid_to, unit_rate_a, standing_charge FROM billing.meter_tariff_periods
             WHERE meter_id = %L ORDER BY valid_from$$, :'m1'),
    $$VALUES ('-infinity'::timestamptz, '2026-01-11T00:00:00Z'::timestamptz, 0.2, 0.5),
             ('2026-01-11T00:00:00Z', 'infinity', 0.3, 0.6)$$,
    'a tariff read after its activation is active from the activation time of the future tariff it came from');

-- Half hours: m1 uses 0.1 kWh on A and 0.05 on B each half hour (0.025 GBP under T1, 0.035 under T2);
-- m2 uses nothing.
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(g.at), array_agg(CASE r.element WHEN 'B' THEN 0.05 WHEN 'A' THEN 0.1 ELSE 0 END),
                                array_agg(NULL::numeric))
FROM flows.meter_registers AS r
CROSS JOIN generate_series('2026-01-09T22:00:00Z'::timestamptz, '2026-01-12T23:30:00Z', interval '30 minutes') AS g (at)
WHERE r.meter_id IN (:'m1', :'m2');
-- m1 was loaded with 0.40 of debt: 0.25 recovered at midnight 10 January, the last 0.15 at midnight 11 January.
INSERT INTO billing.prepay_debts (meter_id, esco, amount, as_of) VALUES (:'m1', '00000000-0000-4000-8000-0000000015a1', 0.40, '2026-01-09T10:00:00Z');

-- m1's balance: 20.00 at 23:00 on the 9th; 10 Jan 12:00: 26 half hours (0.65) and the midnight (0.50 + 0.25)
-- later, 18.60; 23:00: 22 more half hours, 18.05. 11 Jan 12:00: 2 half hours at T1 (0.05), 24 at T2 (0.84),
-- the midnight at T2 (0.60 + 0.15): 16.41; 23:00: 22 half hours (0.77) and 0.50 nobody can explain: 15.14.
-- m2 (no consumption): 9.00; 06:00 after the midnight 8.50; 07:00 the customer took the emergency credit,
-- 23.50; a token typed on the keypad at 14:00 (event 48), 5.00 of which 15 repay the emergency credit: 13.50.
SELECT flows.record_meter_states(jsonb_agg(jsonb_build_object('meter_id', b.meter, 'observed_at', b.at, 'balance', b.balance)))
FROM (VALUES (:'m1', '2026-01-09T23:00:00Z', 20.00), (:'m1', '2026-01-10T12:00:00Z', 18.60),
             (:'m1', '2026-01-10T23:00:00Z', 18.05), (:'m1', '2026-01-11T12:00:00Z', 16.41),
             (:'m1', '2026-01-11T23:00:00Z', 15.14),
             (:'m2', '2026-01-09T23:00:00Z', 9.00), (:'m2', '2026-01-10T06:00:00Z', 8.50),
             (:'m2', '2026-01-10T07:00:00Z', 23.50), (:'m2', '2026-01-10T15:00:00Z', 13.50),
             (:'m2', '2026-01-10T23:00:00Z', 13.50)) AS b (meter, at, balance);
SELECT flows.record_meter_events(:'m2', ARRAY['2026-01-10T14:00:00Z', '2026-01-12T12:00:00Z']::timestamptz[],
                                 ARRAY[48, 38], ARRAY[1, 1]);

SELECT results_eq(
    format($$SELECT day, observations, energy_cost, daily_charges, expected_change, observed_change, residual, complete, finding
             FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000015a1', '2026-01-10', '2026-01-11')
             WHERE meter_id = %L ORDER BY day$$, :'m1'),
    $$VALUES ('2026-01-10'::date, 2, 1.20000, 0.75, -1.95000, -1.95, 0.00000, true, NULL::text),
             ('2026-01-11', 2, 1.66000, 0.75, -2.41000, -2.91, -0.50000, true, 'unexplained_deduction')$$,
    'm1: energy at the rate active then (the change at midnight), standing charge and debt recovery at midnight; '
    'the 0.50 nobody explains is the residual');
SELECT results_eq(
    format($$SELECT day, emergency_credit, token_credit, repaid, residual, finding
             FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000015a1', '2026-01-10', '2026-01-10')
             WHERE meter_id = %L$$, :'m2'),
    $$VALUES ('2026-01-10'::date, 15::numeric, 5.00000, 15::numeric, 0.00000, NULL::text)$$,
    'm2: the emergency credit taken and the keypad token explain the balance; the token repaid the emergency credit');

-- Money: Bob paid 12.00 in cash on the 10th and its top-up never happened; an adjustment of 3.00 on m2 was
-- marked credited on the 12th but the meter logged no credit for it (its log was read past it).
SELECT id AS payment FROM api.record_payment(:'acct2', 12.00, 'cash', 'R-1', '2026-01-10T10:00:00Z') \gset
-- (recorded when it was received: the grace runs from when Flows learned of a payment)
UPDATE billing.payments SET created_at = received_at WHERE id = :'payment';
INSERT INTO billing.topups (esco, account_id, meter_id, amount, source, notes, status, used_at, transaction_count,
                            balance_before, balance_after, requested_by)
VALUES ('00000000-0000-4000-8000-0000000015a1', :'acct2', :'m2', 3.00, 'adjustment', 'goodwill', 'completed',
        '2026-01-12T10:00:00Z', 4, 13.50, 16.50, 'tap') RETURNING id AS adjusted \gset

CREATE TEMP TABLE found AS SELECT * FROM billing.reconciliation_exceptions('00000000-0000-4000-8000-0000000015a1', '2026-01-09', '2026-01-12');
SELECT results_eq(
    $$SELECT day, kind, amount FROM found ORDER BY day, kind$$,
    $$VALUES ('2026-01-10'::date, 'credit_without_topup', 5.00000), ('2026-01-10', 'emergency_credit_taken', 15),
             ('2026-01-10', 'payment_without_topup', 12.00), ('2026-01-11', 'unexplained_deduction', 0.50000),
             ('2026-01-12', 'topup_without_credit', 3.00)$$,
    'one exception of each kind, on its UK day, with its amount, and nothing else');
SELECT is((SELECT account_id FROM found WHERE kind = 'payment_without_topup'), :'acct2'::uuid, 'the payment''s account');
SELECT is((SELECT meter_id FROM found WHERE kind = 'unexplained_deduction'), :'m1'::uuid, 'the deduction''s meter');
SELECT is((SELECT account_id FROM found WHERE kind = 'unexplained_deduction'), :'acct1'::uuid, 'and its account');
SELECT is((SELECT exception_key FROM found WHERE kind = 'payment_without_topup'), 'payment_without_topup:' || :'payment',
          'the key names the payment');
SELECT is((SELECT evidence -> 'topup' ->> 'status' FROM found WHERE kind = 'payment_without_topup'), 'wait_token_fetch',
          'evidence: the top-up and its status');
SELECT is((SELECT evidence ->> 'residual' FROM found WHERE kind = 'unexplained_deduction'), '-0.50000',
          'evidence: the day''s ledger');
SELECT ok((SELECT reason FROM found WHERE kind = 'topup_without_credit') ~ 'no credit \(event 48\)',
          'evidence: no credit event for the top-up');
SELECT is((SELECT evidence ->> 'credit_events' FROM found WHERE kind = 'credit_without_topup'), '1',
          'evidence: the keypad token''s credit event');
SELECT is((SELECT count(*)::integer FROM found WHERE status <> 'open'), 0, 'all open');

-- Within the grace period a payment is not an exception yet.
SELECT id AS recent FROM api.record_payment(:'acct1', 5.00, 'cash', 'R-2', now() - interval '1 hour') \gset
UPDATE billing.payments SET created_at = received_at WHERE id = :'recent';
INSERT INTO billing.reconciliation_settings (esco, topup_grace) VALUES ('00000000-0000-4000-8000-0000000015a1', '2 hours');
CREATE TEMP VIEW recent AS SELECT count(*)::integer AS n FROM billing.reconciliation_exceptions(
    '00000000-0000-4000-8000-0000000015a1', (now() AT TIME ZONE 'Europe/London')::date - 1, (now() AT TIME ZONE 'Europe/London')::date)
    WHERE kind = 'payment_without_topup';
SELECT is((SELECT n FROM recent), 0, 'a payment within its grace period waits');
UPDATE billing.reconciliation_settings SET topup_grace = '30 minutes';
SELECT is((SELECT n FROM recent), 1, 'after it, it is an exception');
-- Cash received five days ago but recorded only now: its grace runs from now.
SELECT id AS late FROM api.record_payment(:'acct1', 7.00, 'cash', 'R-3', now() - interval '5 days') \gset
SELECT is((SELECT count(*)::integer FROM billing.reconciliation_exceptions('00000000-0000-4000-8000-0000000015a1',
               (now() AT TIME ZONE 'Europe/London')::date - 6, (now() AT TIME ZONE 'Europe/London')::date)
           WHERE exception_key = 'payment_without_topup:' || :'late'), 0,
          'a payment recorded days after it was received has its grace from when it was recorded');
-- A wider tolerance forgives the 0.50.
UPDATE billing.reconciliation_settings SET topup_grace = '2 hours', tolerance = 0.6;
SELECT is((SELECT finding FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000015a1', '2026-01-11', '2026-01-11') WHERE meter_id = :'m1'),
          NULL, 'within the tolerance: no finding');
UPDATE billing.reconciliation_settings SET tolerance = 0.01;
-- A day with a half hour missing is not judged (the rollups recomputed, as whoever removes half hours does).
DELETE FROM flows.register_interval_hh WHERE "timestamp" = '2026-01-11T15:00:00Z';
SELECT flows.refresh_interval_rollups(array_agg(register_id), array_agg('2026-01-11T15:00:00Z'::timestamptz))
FROM flows.meter_registers WHERE esco = '00000000-0000-4000-8000-0000000015a1';
SELECT results_eq(
    format($$SELECT complete, finding FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000015a1', '2026-01-11', '2026-01-11') WHERE meter_id = %L$$, :'m1'),
    $$VALUES (false, NULL::text)$$, 'a day with missing half hours is incomplete: no finding');

SELECT results_eq(
    $$SELECT payments, payments_matched, topups, topups_matched, credit_events, meters_ledgered, meter_days_explained, exceptions
      FROM billing.reconciliation_summary('00000000-0000-4000-8000-0000000015a1', '2026-01-10', '2026-01-10')$$,
    $$VALUES (1, 0, 0, 0, 1, 2, 2, '{"payment_without_topup": 1, "credit_without_topup": 1, "emergency_credit_taken": 1}'::jsonb)$$,
    'the day''s summary: matched counts and exceptions by kind');

-- The API, as an operator of the ESCO.
-- (a SQL login's claims come from flows.sql_login_claims: this session's, for this test)
INSERT INTO flows.sql_login_claims (login, claims) VALUES (session_user, '{"esco": "TAPREC", "sub": "olga"}');
SET LOCAL ROLE flows_operator;
SELECT is((api.reconciliation('TAPREC', '2026-01-10') -> 'summary' ->> 'payments')::integer, 1, 'api.reconciliation: the summary');
SELECT is(jsonb_array_length(api.reconciliation('TAPREC', '2026-01-10') -> 'exceptions'), 3, 'and the day''s exceptions');
SELECT is(api.reconciliation('TAPREC', '2026-01-10') #>> '{exceptions,0,meter}', 'EML3300000002', 'naming the meter by serial');
SELECT throws_ok($$SELECT api.reconciliation('NOPE', '2026-01-10')$$, '22023', 'no ESCO ''NOPE''', 'an unknown ESCO is refused');
SELECT throws_ok($$SELECT api.reconciliation('TAPREC', current_date + 5)$$, '22023', NULL, 'a future day is refused');
SELECT is((api.decide_reconciliation_exception('TAPREC', 'payment_without_topup:' || :'payment', 'acknowledged', 'calling the meter''s owner')) ->> 'decided_by',
          'olga', 'an operator acknowledges an exception');
SELECT is((SELECT status FROM billing.reconciliation_exceptions('00000000-0000-4000-8000-0000000015a1', '2026-01-10', '2026-01-10')
           WHERE kind = 'payment_without_topup'), 'acknowledged', 'the exception shows the decision');
SELECT throws_ok($$SELECT api.decide_reconciliation_exception('TAPREC', 'payment_without_topup:x', 'resolved', ' ')$$,
                 '22023', 'note must say what was found or done', 'a decision needs a note');
SELECT throws_ok($$SELECT api.decide_reconciliation_exception('TAPREC', 'bogus:x', 'resolved', 'n')$$,
                 '22023', NULL, 'an unknown kind is refused');
RESET ROLE;
SELECT is((SELECT count(*)::integer FROM flows.audit_log WHERE relation = 'billing.reconciliation_decisions'), 1,
          'the decision is in the audit trail');

-- A customer sees none of it.
UPDATE flows.sql_login_claims SET claims = '{"esco": "TAPREC", "customer": "00000000-0000-4000-8000-000000000000"}'
WHERE login = session_user;
SET LOCAL ROLE flows_customer;
SELECT throws_ok($$SELECT * FROM billing.reconciliation_decisions$$, '42501', NULL, 'customers cannot read decisions');
RESET ROLE;

-- A meter clock running ahead: the only event after a second adjustment on m2 (the 12th at 13:00) is dated
-- after now, which does not show its log read past the adjustment; an event dated before now does.
INSERT INTO billing.topups (esco, account_id, meter_id, amount, source, notes, status, used_at, transaction_count,
                            balance_before, balance_after, requested_by)
VALUES ('00000000-0000-4000-8000-0000000015a1', :'acct2', :'m2', 2.00, 'adjustment', 'goodwill', 'completed',
        '2026-01-12T13:00:00Z', 5, 16.50, 18.50, 'tap') RETURNING id AS ahead \gset
CREATE TEMP VIEW ahead AS SELECT count(*)::integer AS n
FROM billing.reconciliation_exceptions('00000000-0000-4000-8000-0000000015a1', '2026-01-12', '2026-01-12')
WHERE exception_key = 'topup_without_credit:' || :'ahead';
SELECT flows.record_meter_events(:'m2', ARRAY[now() + interval '12 hours'], ARRAY[38], ARRAY[2]);
SELECT is((SELECT n FROM ahead), 0, 'an event dated after now does not show the log read past a top-up');
SELECT flows.record_meter_events(:'m2', ARRAY['2026-01-12T14:00:00Z']::timestamptz[], ARRAY[38], ARRAY[3]);
SELECT is((SELECT n FROM ahead), 1, 'an event dated before now, after the top-up, does');

SELECT * FROM finish();
ROLLBACK;

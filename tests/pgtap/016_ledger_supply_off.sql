-- The shadow prepay ledger when credit runs out (docs/reconciliation.md, "The charging model", rule 5): the
-- supply goes off when the balance reaches zero, so the half hour an observation at or below zero falls in was
-- used before that observation, not spread across it. Found by the 30-day property
-- (tests/reconciliation/test_ledger_property.py): a meter ran out of credit between two reads of the same half
-- hour, the day's last read; the ledger spread that half hour over midnight and reported an unexplained
-- deduction on one day and an unexplained credit the next. And a read that finds the supply still off: what its
-- half hour holds was used after it, once the customer took the emergency credit (the 30-day scenario).
BEGIN;
SELECT plan(6);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000016a1', 'TAPOFF', 'Off');
SELECT api.register_meter(serial => 'EML3300000016', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000016a1') ->> 'id' AS m \gset
UPDATE flows.meter_registers SET start_time = '2025-01-01' WHERE meter_id = :'m';

-- A 0.30 GBP/kWh, standing charge 0.50 a day, no debt, emergency credit 15 below 10 (UK time is UTC in February).
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object(
    'meter_id', :'m', 'observed_at', '2026-02-09T12:00:00Z', 'tariffs_active',
    '{"standing_charge": "0.5", "unit_rate_element_a": "0.3", "unit_rate_element_b": "0.3",
      "prepayment_emergency_credit": "15", "prepayment_ecredit_availability": "10",
      "prepayment_debt_recovery_rate": "0"}'::jsonb)));

-- 0.5 kWh (0.15 GBP) every half hour until the supply went off at 23:45 on the 10th: its last half hour holds
-- the quarter of an hour used before (0.25 kWh), nothing after; back on at 12:15 on the 12th: the quarter of an
-- hour after, then 0.5 kWh again.
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(g.at),
                                array_agg(CASE WHEN g.at < '2026-02-10T23:30:00Z' THEN 0.5
                                               WHEN g.at IN ('2026-02-10T23:30:00Z', '2026-02-12T12:00:00Z') THEN 0.25
                                               WHEN g.at > '2026-02-12T12:00:00Z' THEN 0.5 ELSE 0 END),
                                array_agg(NULL::numeric))
FROM flows.meter_registers AS r
CROSS JOIN generate_series('2026-02-09T00:00:00Z'::timestamptz, '2026-02-12T13:30:00Z', interval '30 minutes') AS g (at)
WHERE r.meter_id = :'m';

-- 9th 23:00: 7.92. 10th 12:00: 26 half hours (3.90) and the midnight (0.50) later, 3.52. 23:45: 23 half hours
-- and a quarter of an hour (3.525) later, -0.005: the supply is off. 11th: the midnight's 0.50, nothing used.
-- 12th: the midnight's 0.50 (-1.005 at 12:05, still off); at 12:15 the customer takes the emergency credit
-- (13.995), and uses a quarter of an hour and three half hours (0.525) by 14:00: 13.47.
SELECT flows.record_meter_states(jsonb_agg(jsonb_build_object('meter_id', :'m', 'observed_at', b.at, 'balance', b.balance)))
FROM (VALUES ('2026-02-09T23:00:00Z', 7.92), ('2026-02-10T12:00:00Z', 3.52), ('2026-02-10T23:45:00Z', -0.005),
             ('2026-02-11T12:00:00Z', -0.505), ('2026-02-11T23:00:00Z', -0.505), ('2026-02-12T12:05:00Z', -1.005),
             ('2026-02-12T14:00:00Z', 13.47)) AS b (at, balance);

SELECT results_eq(
    $$SELECT day, energy_cost, daily_charges, observed_change, residual, complete, finding
      FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000016a1', '2026-02-10', '2026-02-11') ORDER BY day$$,
    $$VALUES ('2026-02-10'::date, 7.42500, 0.50, -7.925, 0.00000, true, NULL::text),
             ('2026-02-11', 0.00000, 0.50, -0.500, 0.00000, true, NULL)$$,
    'the day the credit ran out is charged its last half hour whole, the next day nothing of it');
SELECT results_eq(
    $$SELECT ended_at, energy_cost, residual FROM billing.shadow_ledger_intervals('00000000-0000-4000-8000-0000000016a1', '2026-02-10', '2026-02-11')
      ORDER BY ended_at$$,
    $$VALUES ('2026-02-10T12:00:00Z'::timestamptz, 3.90000, 0.00000), ('2026-02-10T23:45:00Z', 3.52500, 0.00000),
             ('2026-02-11T12:00:00Z', 0.00000, 0.00000), ('2026-02-11T23:00:00Z', 0.00000, 0.00000)$$,
    'interval by interval: the half hour of the read that found the supply off belongs before that read');
SELECT results_eq(
    $$SELECT ended_at, energy_cost, emergency_credit, residual
      FROM billing.shadow_ledger_intervals('00000000-0000-4000-8000-0000000016a1', '2026-02-12', '2026-02-12') ORDER BY ended_at$$,
    $$VALUES ('2026-02-12T12:05:00Z'::timestamptz, 0.00000, 0::numeric, 0.00000),
             ('2026-02-12T14:00:00Z', 0.52500, 15::numeric, 0.00000)$$,
    'a read that finds the supply still off: its half hour was used after it (the emergency credit taken)');
SELECT results_eq(
    $$SELECT energy_cost, emergency_credit, residual, finding
      FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000016a1', '2026-02-12', '2026-02-12')$$,
    $$VALUES (0.52500, 15::numeric, 0.00000, NULL::text)$$,
    'and the day: the emergency credit explains the rise, nothing else to find');

-- With credit on both sides the half hour is used evenly, and spread across the read as before.
UPDATE flows.meter_prepay_balance SET balance = balance + 1 WHERE meter_id = :'m' AND "timestamp" >= '2026-02-10T23:45:00Z';
UPDATE flows.register_interval_hh SET import_kwh = 0.5
WHERE register_id IN (SELECT register_id FROM flows.meter_registers WHERE meter_id = :'m') AND "timestamp" = '2026-02-10T23:30:00Z';
SELECT flows.refresh_interval_rollups(array_agg(register_id), array_agg('2026-02-10T23:30:00Z'::timestamptz))
FROM flows.meter_registers WHERE meter_id = :'m';
SELECT results_eq(
    $$SELECT ended_at, energy_cost FROM billing.shadow_ledger_intervals('00000000-0000-4000-8000-0000000016a1', '2026-02-10', '2026-02-11')
      WHERE ended_at BETWEEN '2026-02-10T23:45:00Z' AND '2026-02-11T12:00:00Z' ORDER BY ended_at$$,
    $$VALUES ('2026-02-10T23:45:00Z'::timestamptz, 3.52500), ('2026-02-11T12:00:00Z', 0.07500)$$,
    'a read with credit left splits its half hour by time');
SELECT is((SELECT energy_cost FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000016a1', '2026-02-11', '2026-02-11')),
          0.07500, 'and so does the day''s end');

SELECT * FROM finish();
ROLLBACK;

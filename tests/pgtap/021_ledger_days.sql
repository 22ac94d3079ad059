-- The shadow ledger's days (flows.meter_ledger_days, docs/reconciliation.md, "How the ledger computes") stay
-- exact whatever order the raw rows come in: after each write below (half hours before the balances they
-- explain, a day's balances after the next day's, half hours backfilled into a day's tail, an observation
-- between two others, a correction, a deletion, a register ended) the kept rows equal a recomputation of every
-- day from the raw rows; and the ledger read from them equals the interval path's sum per day
-- (billing.shadow_ledger_intervals, from the raw rows), a tariff read after the half hours it prices included.
BEGIN;
SELECT plan(14);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000021a1', 'TAPDAYS', 'Days');
SELECT api.register_meter(serial => 'EML3300000021', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000021a1') ->> 'id' AS m \gset
UPDATE flows.meter_registers SET start_time = '2025-01-01' WHERE meter_id = :'m';

-- How many kept rows of the meter differ from a recomputation of all its days from the raw rows (which then
-- stands: each check covers the writes since the one before).
CREATE FUNCTION pg_temp.stale_days(p_meter uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    CREATE TEMP TABLE kept AS SELECT * FROM flows.meter_ledger_days WHERE meter_id = p_meter;
    DELETE FROM flows.meter_ledger_days WHERE meter_id = p_meter;
    PERFORM flows.refresh_meter_ledger_days(array_agg(b.meter_id), array_agg(flows.uk_day(b."timestamp")))
    FROM flows.meter_prepay_balance AS b WHERE b.meter_id = p_meter;
    SELECT count(*) INTO n FROM (
        (TABLE kept EXCEPT SELECT * FROM flows.meter_ledger_days WHERE meter_id = p_meter)
        UNION ALL
        (SELECT * FROM flows.meter_ledger_days WHERE meter_id = p_meter EXCEPT TABLE kept)) AS d;
    DROP TABLE kept;
    RETURN n;
END
$$;

-- A (0.2 GBP/kWh) and B (0.1), standing charge 0.50 a day (UK time is UTC in March before the 29th).
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object(
    'meter_id', :'m', 'observed_at', '2026-03-09T12:00:00Z', 'tariffs_active',
    '{"standing_charge": "0.5", "unit_rate_element_a": "0.2", "unit_rate_element_b": "0.1",
      "prepayment_emergency_credit": "0", "prepayment_ecredit_availability": "0",
      "prepayment_debt_recovery_rate": "0"}'::jsonb)));

-- 1. The 11th's half hours come first, but for its last hour; no balance yet.
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(g.at),
                                array_agg(CASE r.element WHEN 'A' THEN 0.4 ELSE 0.2 END), array_agg(NULL::numeric))
FROM flows.meter_registers AS r
CROSS JOIN generate_series('2026-03-11T00:00:00Z'::timestamptz, '2026-03-11T22:30:00Z', interval '30 minutes') AS g (at)
WHERE r.meter_id = :'m';
SELECT is((SELECT count(*) FROM flows.meter_ledger_days WHERE meter_id = :'m'), 0::bigint,
          'half hours without balances: no day kept (the ledger takes the days'' energy from the daily rollups)');

-- 2. The 11th's balances, then the 10th's (read later), then the 12th's first.
SELECT flows.record_meter_states(jsonb_agg(jsonb_build_object('meter_id', :'m', 'observed_at', b.at, 'balance', b.balance)))
FROM (VALUES ('2026-03-11T06:15:00Z', 60.0), ('2026-03-11T12:45:00Z', 56.0), ('2026-03-11T23:15:00Z', 51.5)) AS b (at, balance);
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'a day''s balances: its row as recomputed');
SELECT flows.record_meter_states(jsonb_agg(jsonb_build_object('meter_id', :'m', 'observed_at', b.at, 'balance', b.balance)))
FROM (VALUES ('2026-03-10T20:15:00Z', 64.0), ('2026-03-10T22:45:00Z', 63.5)) AS b (at, balance);
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'the day before read after it: both rows as recomputed');
SELECT flows.record_meter_states(jsonb_agg(jsonb_build_object('meter_id', :'m', 'observed_at', b.at, 'balance', b.balance)))
FROM (VALUES ('2026-03-12T00:15:00Z', 50.5), ('2026-03-12T09:45:00Z', 48.0)) AS b (at, balance);

-- 3. Half hours backfilled: the 10th's, and the 11th's last hour (its tail, after its last balance).
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(g.at),
                                array_agg(CASE r.element WHEN 'A' THEN 0.3 ELSE 0.1 END), array_agg(NULL::numeric))
FROM flows.meter_registers AS r
CROSS JOIN generate_series('2026-03-10T00:00:00Z'::timestamptz, '2026-03-10T23:30:00Z', interval '30 minutes') AS g (at)
WHERE r.meter_id = :'m';
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(g.at),
                                array_agg(CASE r.element WHEN 'A' THEN 0.6 ELSE 0.2 END), array_agg(NULL::numeric), 'reads')
FROM flows.meter_registers AS r
CROSS JOIN generate_series('2026-03-11T23:00:00Z'::timestamptz, '2026-03-12T12:00:00Z', interval '30 minutes') AS g (at)
WHERE r.meter_id = :'m';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'half hours backfilled, into a day''s tail too: as recomputed');
SELECT is((SELECT (tail_kwh_a, tail_kwh_b, tail_overlapping, tail_after) FROM flows.meter_ledger_days
           WHERE meter_id = :'m' AND day = '2026-03-11'),
          ROW(0.900, 0.300, 4, 2), 'the 11th''s tail: half of 23:00 and all of 23:30, per rate');
-- A half hour the meter's profile log corrects (the values derived from reads give way).
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg('2026-03-11T23:00:00Z'::timestamptz),
                                array_agg(0.8), array_agg(NULL::numeric))
FROM flows.meter_registers AS r WHERE r.meter_id = :'m' AND r.element = 'A';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'a half hour filled in later: as recomputed');

-- 4. An observation between two others (read late), a correction, a deletion.
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object('meter_id', :'m', 'observed_at', '2026-03-11T18:15:00Z',
                                                                      'balance', 54.0)));
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'an observation between two others: as recomputed');
UPDATE flows.meter_prepay_balance SET balance = 51.25 WHERE meter_id = :'m' AND "timestamp" = '2026-03-11T23:15:00Z';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'a balance corrected: as recomputed');
DELETE FROM flows.meter_prepay_balance WHERE meter_id = :'m' AND "timestamp" = '2026-03-10T22:45:00Z';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'an observation deleted (the next day''s start with it): as recomputed');
-- A balance at zero: the day's last splits where the supply went off, after the one before it.
UPDATE flows.meter_prepay_balance SET balance = 0 WHERE meter_id = :'m' AND "timestamp" = '2026-03-10T20:15:00Z';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'a day ending at zero: as recomputed');

-- 5. A new tariff read after the half hours it prices: the future tariff (A 0.3 from 14:00 on the 11th, inside
-- the day) read in the morning, the new active tariff in the afternoon; the kept rows are kWh, unchanged; the
-- ledger prices the 11th half hour by half hour, as the interval path does.
SELECT flows.record_meter_states(jsonb_build_array(
    jsonb_build_object('meter_id', :'m', 'observed_at', '2026-03-11T10:00:00Z', 'tariffs_future',
        '{"standing_charge": "0.5", "unit_rate_element_a": "0.3", "unit_rate_element_b": "0.1",
          "prepayment_emergency_credit": "0", "prepayment_ecredit_availability": "0",
          "prepayment_debt_recovery_rate": "0", "activation_datetime": "2026-03-11T14:00:00Z"}'::jsonb),
    jsonb_build_object('meter_id', :'m', 'observed_at', '2026-03-11T15:00:00Z', 'tariffs_active',
        '{"standing_charge": "0.5", "unit_rate_element_a": "0.3", "unit_rate_element_b": "0.1",
          "prepayment_emergency_credit": "0", "prepayment_ecredit_availability": "0",
          "prepayment_debt_recovery_rate": "0"}'::jsonb)));
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'tariffs read late change no kept row');
SELECT results_eq(
    format($$SELECT day, energy_cost, daily_charges, observed_change, residual, complete
             FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000021a1', '2026-03-11', '2026-03-12')
             WHERE meter_id = %L ORDER BY day$$, :'m'),
    format($$SELECT day, round(sum(energy_cost), 5), sum(daily_charges), sum(observed_change), round(sum(residual), 5),
                    bool_and(complete)
             FROM billing.shadow_ledger_intervals('00000000-0000-4000-8000-0000000021a1', '2026-03-11', '2026-03-12')
             WHERE meter_id = %L GROUP BY day ORDER BY day$$, :'m'),
    'the ledger from the kept days equals the sum of its intervals from the raw rows');
SELECT is((SELECT energy_cost FROM billing.shadow_ledger('00000000-0000-4000-8000-0000000021a1', '2026-03-11', '2026-03-11')
           WHERE meter_id = :'m'),
          -- from 20:15 on the 10th, at zero (its half hour used before it), to 23:15 on the 11th: the 10th's last 7 half
          -- hours (A 0.3, B 0.1 kWh at 0.2 and 0.1: 0.07 each) 0.49; the 11th until 14:00 (28 half hours of A 0.4 at
          -- 0.2, B 0.2 at 0.1: 0.10 each) 2.80, from 14:00 to 23:00 (18 at 0.4 x 0.3 + 0.02) 2.52, half of 23:00
          -- (A 0.8 at 0.3, B 0.2 at 0.1) 0.13
          0.49 + 2.80 + 2.52 + 0.13, 'and prices the 11th at the tariff in force each half hour');

-- 6. A register ended (a meter exchange): its half hours after the end no longer count in the tails.
UPDATE flows.meter_registers SET end_time = '2026-03-11T23:30:00Z' WHERE meter_id = :'m' AND element = 'B';
SELECT is(pg_temp.stale_days(:'m'), 0::bigint, 'a register ended: its meter''s days as recomputed');

SELECT * FROM finish();
ROLLBACK;

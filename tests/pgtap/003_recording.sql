-- Recording meter state and half hours: idempotent, never silently lossy,
-- late data never overwrites newer state.
BEGIN;
SELECT plan(24);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-000000000001', 'TAPREC', 'Recording');
SELECT api.register_meter(
    serial => 'EML1000000001', hardware => 'C1.w', esco => '00000000-0000-4000-8000-000000000001',
    registers => '[{"element": "A", "start_time": "2026-01-01T00:00:00Z"},
                   {"element": "B", "start_time": "2026-01-01T00:00:00Z", "direction_reversed": true}]') ->> 'id'
    AS meter_id \gset
SELECT api.register_meter(
    serial => 'EML1000000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-000000000001',
    registers => '[{"element": "SINGLE", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS single_id \gset
SELECT register_id AS reg_a FROM flows.meter_registers WHERE meter_id = :'meter_id' AND element = 'A' \gset
SELECT register_id AS reg_b FROM flows.meter_registers WHERE meter_id = :'meter_id' AND element = 'B' \gset

\set state '[{"meter_id": ":meter_id", "observed_at": "2026-11-01T10:00:00Z", "balance": "12.34567", "csq": 20, "voltage": 240.1, "import_a": 100.5, "export_a": 1.25, "import_b": 7, "health": "healthy", "tariffs_active": {"standing_charge": "0.6", "unit_rate_element_a": "0.25"}, "clock_time_diff_seconds": 75}]'
SELECT replace(:'state', ':meter_id', :'meter_id') AS state \gset

-- One meter state appends one row per history table (reads: A import, A export, B import->export).
SELECT is(flows.record_meter_states(:'state'), 9, 'first recording appends 9 history rows');
SELECT is(flows.record_meter_states(:'state'), 0, 'the same state again appends nothing');
SELECT is((SELECT count(*)::int FROM flows.meter_prepay_balance WHERE meter_id = :'meter_id'), 1, 'one balance row');
SELECT is((SELECT balance FROM flows.meter_shadows WHERE id = :'meter_id'), 12.34567::numeric, 'shadow has the balance');
SELECT is((SELECT last_healthy_at FROM flows.meter_shadows WHERE id = :'meter_id'), '2026-11-01T10:00:00Z'::timestamptz,
          'healthy state stamps last_healthy_at');
SELECT is((SELECT read FROM flows.register_export WHERE register_id = :'reg_b'), 7.000::numeric,
          'element B is direction_reversed: its import read is recorded as export');
SELECT is((SELECT count(*)::int FROM flows.register_import WHERE register_id = :'reg_b'), 0,
          'and not as import');
SELECT is((SELECT seconds FROM flows.meter_clock_drift WHERE meter_id = :'meter_id'), 75, 'clock drift history');

-- Late data: an older observation adds history but does not overwrite the shadow.
SELECT is(flows.record_meter_states(jsonb_build_array(jsonb_build_object(
    'meter_id', :'meter_id', 'observed_at', '2026-11-01T08:00:00Z', 'balance', 20, 'csq', 5))), 2,
    'an older observation is still kept as history');
SELECT is((SELECT balance FROM flows.meter_shadows WHERE id = :'meter_id'), 12.34567::numeric,
          'but the shadow keeps the newer balance');
SELECT is((SELECT csq FROM flows.meter_shadows WHERE id = :'meter_id'), 20::smallint, 'and the newer csq');

-- Tariff history only when the tariff changes.
SELECT is((SELECT count(*)::int FROM flows.meter_tariff_history WHERE meter_id = :'meter_id'), 1, 'one tariff row');
SELECT flows.record_meter_states(jsonb_build_array(jsonb_build_object(
    'meter_id', :'meter_id', 'observed_at', '2026-11-01T11:00:00Z',
    'tariffs_active', '{"standing_charge": "0.6", "unit_rate_element_a": "0.25"}'::jsonb)));
SELECT is((SELECT count(*)::int FROM flows.meter_tariff_history WHERE meter_id = :'meter_id'), 1,
          'the same tariff read again adds no history');

-- Nothing dropped silently.
SELECT throws_ok(
    format($$ SELECT flows.record_meter_states('[{"meter_id": "%s", "observed_at": "2026-11-01T12:00:00Z", "import_b": 3}]') $$,
           :'single_id'),
    '23503', NULL, 'a read for an element the meter has no register for is an error');
SELECT is((SELECT count(*)::int FROM flows.meter_csq WHERE meter_id = :'single_id'), 0, 'and nothing of it is kept');
SELECT throws_ok(
    $$ SELECT flows.record_meter_states('[{"meter_id": "00000000-0000-4000-8000-00000000dead", "observed_at": "2026-11-01T12:00:00Z", "csq": 3}]') $$,
    '23503', 'unknown meter: 00000000-0000-4000-8000-00000000dead', 'an unknown meter is an error');
SELECT throws_like(
    format($$ SELECT flows.record_meter_states('[{"meter_id": "%s", "observed_at": "2026-11-01T12:00:00Z", "csq": 45}]') $$,
           :'meter_id'),
    '%csq must be 0 to 31, or 99%', 'csq 45 is refused, naming the field');

-- Half hours: idempotent, rollups exact, the profile log beats reads.
SELECT is(flows.record_interval_hh(ARRAY[:'reg_a', :'reg_a']::uuid[],
                                   ARRAY['2026-11-02T10:00Z', '2026-11-02T10:30Z']::timestamptz[],
                                   ARRAY[0.5, 0.25], ARRAY[NULL, NULL]::numeric[], 'reads'), 2, 'two half hours added');
SELECT is(flows.record_interval_hh(ARRAY[:'reg_a', :'reg_a']::uuid[],
                                   ARRAY['2026-11-02T10:00Z', '2026-11-02T10:30Z']::timestamptz[],
                                   ARRAY[0.5, 0.25], ARRAY[NULL, NULL]::numeric[], 'reads'), 0, 're-sent: nothing changes');
SELECT is(flows.record_interval_hh(ARRAY[:'reg_a']::uuid[], ARRAY['2026-11-02T10:00Z']::timestamptz[],
                                   ARRAY[0.6], ARRAY[0.1], 'profile_log'), 1, 'the profile log corrects a half hour');
SELECT results_eq(
    format($$ SELECT import_kwh, export_kwh, intervals FROM flows.register_interval_daily WHERE register_id = '%s' $$, :'reg_a'),
    $$ VALUES (0.850::numeric, 0.100::numeric, 2::smallint) $$,
    'the daily rollup follows: 0.6 + 0.25 import, 0.1 export, two half hours');
SELECT results_eq(
    format($$ SELECT import_kwh, intervals FROM flows.register_interval_monthly WHERE register_id = '%s' $$, :'reg_a'),
    $$ VALUES (0.850::numeric, 2) $$, 'and so does the monthly rollup');
SELECT throws_like(
    $$ SELECT flows.record_interval_hh(ARRAY['00000000-0000-4000-8000-00000000beef']::uuid[],
                                       ARRAY['2026-11-02T10:00Z']::timestamptz[], ARRAY[1], ARRAY[0]) $$,
    'unknown register: 00000000-0000-4000-8000-00000000beef', 'an unknown register is an error naming it');
SELECT throws_ok(
    format($$ SELECT flows.record_interval_hh(ARRAY['%s']::uuid[], ARRAY['2026-11-02T10:10Z']::timestamptz[], ARRAY[1], ARRAY[0]) $$,
           :'reg_a'),
    '23514', NULL, 'half hours must start at :00 or :30');

SELECT * FROM finish();
ROLLBACK;

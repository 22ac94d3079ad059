-- One concept in one place: hardware kinds, the advisory-lock registry, the
-- shadow's "newer wins" rule, and the versioned functions workers call.
BEGIN;
SELECT plan(22);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000f1', 'TAPHEALTH', 'Health');
SELECT api.register_meter(serial => 'EMP1AX4000000001', ip_address => '127.0.0.1', emop_port => 9001,
                          esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS bare_three \gset
SELECT api.register_meter(serial => 'EML4000000002', ip_address => '127.0.0.1', emop_port => 9002,
                          esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS bare_single \gset
SELECT api.register_meter(serial => 'EML4000000003', hardware => 'P1.cx', ip_address => '127.0.0.1',
                          emop_port => 9003, esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS by_hardware \gset
SELECT api.register_meter(serial => 'EML4000000004', hardware => 'C1.w', ip_address => '127.0.0.1',
                          emop_port => 9004, esco => '00000000-0000-4000-8000-0000000000f1',
                          registers => '[{"element": "A", "start_time": "2026-01-01T00:00:00Z"},
                                         {"element": "B", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS twin \gset

-- Hardware kinds -------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM flows.hardware_kinds WHERE phases = 3 AND NOT prepay_capable), 2,
          'two three-phase models, neither with prepayment');
SELECT is((SELECT model FROM flows.hardware_kinds WHERE elements = 2), 'C1.w', 'C1.w is the twin-element model');
SELECT ok((SELECT flows.is_three_phase(m) FROM flows.meter_registry AS m WHERE m.id = :'bare_three'),
          'an EMP1AX meter is three phase before any worker has read its hardware');
SELECT ok((SELECT NOT flows.is_three_phase(m) FROM flows.meter_registry AS m WHERE m.id = :'bare_single'),
          'an EML meter of unknown hardware is not');
SELECT ok((SELECT flows.is_three_phase(m) FROM flows.meter_registry AS m WHERE m.id = :'by_hardware'),
          'a meter whose hardware is P1.cx is');
SELECT throws_like(format($$ SELECT api.send_token('%s', amount => 5) $$, :'bare_three'),
                   '%three phase: no prepayment or tariffs%', 'no tokens for it, hardware or not');

-- The claim tells the worker the same
SELECT api.read_profile_log(:'bare_three', now() - interval '1 day', now() - interval '12 hours') \gset
SELECT api.request_sync(ARRAY[:'bare_single']::uuid[], ARRAY['csq']) \gset
SELECT results_eq(
    $$ SELECT serial, three_phase FROM flows.claim_meter_commands_v1('w-health', 10) ORDER BY serial $$,
    $$ VALUES ('EML4000000002', false), ('EMP1AX4000000001', true) $$,
    'claim_meter_commands_v1 says which meters are three phase (the worker refuses a profile log on them)');
SELECT results_eq($$ SELECT pending, running FROM flows.meter_command_queue_depth_v1() $$,
                  $$ VALUES (0::bigint, 2::bigint) $$, 'the queue depth counts pending and running commands');

-- Advisory-lock registry ------------------------------------------------------
SELECT is(flows.lock_key('register_writes'), 2051, 'register writers lock 2051');
SELECT is(flows.lock_key('command_claims'), 2052, 'claims lock 2052');
SELECT is(flows.lock_key('scheduler'), 2053, 'the scheduler locks 2053');
SELECT throws_like($$ SELECT flows.lock_key('claims') $$, 'no advisory lock named ''claims''',
                   'an unregistered name is an error, never a silent lock on null');
SELECT is(flows.run_scheduler_v1() IS NOT NULL, true, 'a scheduler pass runs under its registered lock');
SELECT ok((SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND classid = 2053 AND objsubid = 2
                                         AND pid = pg_backend_pid()),
          'and holds it (key 2053, second key 0) until the transaction ends');

-- Meter states: typed once, newer wins -----------------------------------------
SELECT is((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
           WHERE attrelid = 'flows.meter_state'::regclass AND attnum > 0),
          (SELECT array_agg(name ORDER BY n) FROM unnest(ARRAY[
              'meter_id', 'observed_at', 'balance', 'emergency_credit', 'csq', 'voltage', 'voltage_l1', 'voltage_l2',
              'voltage_l3', 'import_a', 'export_a', 'import_b', 'export_b', 'health', 'health_details',
              'tariffs_active', 'tariffs_future', 'clock_time_diff_seconds', 'backlight', 'load_switch',
              'prepay_enabled']) WITH ORDINALITY AS f (name, n)),
          'a meter state has the 21 fields check_meter_state accepts');
SELECT is(flows.newer(1, '2026-11-01T10:00Z', 2, '2026-11-01T09:00Z'), 1, 'an older observation loses');
SELECT is(flows.newer(1, '2026-11-01T10:00Z', 2, '2026-11-01T10:00Z'), 2, 'an observation as new as the held one wins');
SELECT is(flows.newer('a'::text, NULL, 'b', '2026-11-01T10:00Z'), 'b', 'anything beats nothing held');
SELECT is(flows.newer('a'::text, '2026-11-01T10:00Z', 'b', NULL), 'a', 'nothing observed keeps what is held');

SELECT is(flows.record_meter_states(jsonb_build_array(
    jsonb_build_object('meter_id', :'twin', 'observed_at', '2026-11-01T10:00:00Z', 'import_a', 10, 'import_b', 4,
                       'backlight', 'on'),
    jsonb_build_object('meter_id', :'twin', 'observed_at', '2026-11-01T11:00:00Z', 'import_a', 11))), 3,
    'two observations of one meter: three reads recorded');
SELECT results_eq($$ SELECT import_a, import_b, backlight, reads_updated_at FROM flows.meter_shadows
                     WHERE id = '$$ || :'twin' || $$' $$,
                  $$ VALUES (11.000::numeric, 4.000::numeric, 'on'::text, '2026-11-01T11:00:00Z'::timestamptz) $$,
                  'the shadow takes each field from its latest observation, keeping what the latest lacks');
SELECT is(flows.last_meter_event_time_v1(:'twin'), NULL, 'no events read yet');

SELECT * FROM finish();
ROLLBACK;

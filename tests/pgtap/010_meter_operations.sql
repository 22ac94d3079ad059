-- Meter operations under real conditions: priorities and steps, batch finishing,
-- the worker registry and drains, emop sessions, three-phase gap repair.
BEGIN;
SELECT plan(48);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000f1', 'TAPOPS', 'Ops'),
                                               ('00000000-0000-4000-8000-0000000000f2', 'TAPOTHER', 'Other');
SELECT api.register_meter(serial => 'EML3100000001', hardware => 'C1.w',
                          esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3100000002', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS m2 \gset
SELECT api.register_meter(serial => 'EML3100000003', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000f2') ->> 'id' AS other \gset
SELECT api.register_meter(serial => 'EMP1AX31000004', hardware => 'P1.ax',
                          esco => '00000000-0000-4000-8000-0000000000f1') ->> 'id' AS three \gset

-- Priorities -------------------------------------------------------------------
SELECT ok(flows.command_priority('send_token') < flows.command_priority('emop_session')
          AND flows.command_priority('emop_session') < flows.command_priority('sync'),
          'top-ups first, then an operator at the console, then the rest');

-- Steps: long work gives its meter up to a top-up ---------------------------------
SELECT id AS backfill FROM api.read_profile_log(:'m1', now() - interval '30 days', now() - interval '1 day') \gset
SELECT is((SELECT id FROM flows.claim_meter_commands_v2('w1', 10)), :'backfill'::uuid, 'the backfill is claimed');
SELECT is(flows.step_meter_command_v1(:'backfill', 'w1', 1, NULL, '{"cursor": "2026-01-02T00:00:00Z"}'), 'continue',
          'with nothing waiting, a step goes on');
SELECT is((SELECT status FROM flows.meter_commands WHERE id = :'backfill'), 'running', 'still running');
SELECT id AS sync FROM api.request_sync(ARRAY[:'m1']::uuid[], ARRAY['csq']) \gset
SELECT is(flows.step_meter_command_v1(:'backfill', 'w1', 1, '{}', '{}'), 'continue', 'a sync does not go first');
SELECT id AS topup FROM api.send_token(:'m1', amount => 5) \gset
SELECT is(flows.step_meter_command_v1(:'backfill', 'w1', 1,
          format('{"intervals": {"register_ids": ["%s"], "timestamps": ["2026-01-01T00:00:00Z"], '
                 '"import_kwh": ["0.25"], "export_kwh": [null]}}',
                 (SELECT register_id FROM flows.meter_registers WHERE meter_id = :'m1' AND element = 'A'))::jsonb,
          '{"cursor": "2026-01-03T00:00:00Z"}'), 'yielded', 'a waiting top-up: the step yields');
SELECT is((SELECT status || '/' || attempts || '/' || (progress ->> 'cursor') FROM flows.meter_commands
           WHERE id = :'backfill'), 'pending/0/2026-01-03T00:00:00Z',
          'handed back with its progress, the attempt not counted');
SELECT is((SELECT import_kwh FROM flows.register_interval_hh h JOIN flows.meter_registers r USING (register_id)
           WHERE r.meter_id = :'m1' AND h."timestamp" = '2026-01-01T00:00:00Z'), 0.25::numeric,
          'what the step read is recorded');
SELECT is((SELECT id FROM flows.claim_meter_commands_v2('w1', 1)), :'topup'::uuid, 'the top-up is claimed next');
SELECT throws_ok(format($$ SELECT flows.step_meter_command_v1('%s', 'w1', 1, '{}', '{}') $$, :'backfill'),
                 'FL409', NULL, 'a step of a command handed back is fenced off');
SELECT is(flows.step_meter_command_v1(:'topup', 'w1', 1, '{}', '{}'), 'continue', 'a top-up never yields');
SELECT is(flows.step_meter_command_v1(:'topup', 'w1', 1, '{}', '{"x": 1}', true), 'released',
          'a stopping worker releases at a step');
SELECT is((SELECT status || '/' || attempts FROM flows.meter_commands WHERE id = :'topup'), 'pending/0',
          'released: pending, the attempt not counted');

-- Batch finishing ----------------------------------------------------------------
SELECT is((SELECT kind FROM flows.claim_meter_commands_v2('w2', 10)), 'send_token', 'the released top-up is claimed again');
SELECT id AS held_topup FROM flows.meter_commands WHERE lease_owner = 'w2' AND kind = 'send_token' \gset
SELECT is(flows.finish_meter_commands_v1('w2', jsonb_build_array(
              jsonb_build_object('id', :'held_topup', 'attempt', 1,
                                 'outcome', jsonb_build_object('states', jsonb_build_array(jsonb_build_object(
                                     'meter_id', :'m1', 'observed_at', now(), 'balance', '17.5')),
                                     'result', '{"credited": true}'::jsonb)),
              jsonb_build_object('id', :'backfill', 'attempt', 1, 'outcome', '{}'::jsonb))),
          ARRAY[:'backfill']::uuid[], 'a batch finishes what the worker holds and returns the rest');
SELECT is((SELECT status || ' ' || (result ->> 'credited') FROM flows.meter_commands WHERE id = :'held_topup'),
          'done true', 'done with its result');
SELECT is((SELECT balance::text || ' ' || health FROM flows.meter_shadows WHERE id = :'m1'), '17.50000 healthy',
          'its state recorded, the meter healthy');
SELECT is((SELECT status FROM flows.meter_commands WHERE id = :'backfill'), 'pending', 'the other left alone');
SELECT throws_ok(format($$ SELECT flows.finish_meter_command_v1('%s', 'w2', 1, '{}') $$, :'held_topup'),
                 'FL409', NULL, 'finish_meter_command_v1 still fences');

-- Workers: registry, ESCOs served, drain -------------------------------------------
DELETE FROM flows.meter_commands;
SELECT throws_like($$ SELECT flows.register_worker_v1('w-x', 'h', 1, '1', 10, ARRAY['NOPE'], '5 seconds') $$,
                   '%unknown ESCO code NOPE%', 'a worker serves ESCOs that exist');
SELECT isnt(flows.register_worker_v1('w-ops', 'host-a', 4242, '0.1.0', 50, ARRAY['TAPOPS'], '5 seconds'), NULL,
            'a worker registers for one ESCO');
SELECT is((SELECT state || ' ' || esco_codes::text FROM api.workers WHERE name = 'w-ops'), 'running {TAPOPS}',
          'listed as running, serving it');
SELECT is((SELECT count(*)::int FROM api.request_sync(ARRAY[:'m2', :'other']::uuid[], ARRAY['csq'])), 2,
          'two syncs, one per ESCO');
SELECT is(ARRAY(SELECT meter_id FROM flows.claim_meter_commands_v2('w-ops', 10)), ARRAY[:'m2']::uuid[],
          'it claims only its ESCO''s commands');
SELECT is((SELECT meter_id FROM flows.claim_meter_commands_v2('w-anyone', 10)), :'other'::uuid,
          'an unregistered worker serves every ESCO');
SELECT is(flows.worker_heartbeat_v1('w-ops', 1, 0), false, 'a heartbeat: not draining');
SELECT is(flows.worker_heartbeat_v1('w-unknown', 0, 0), NULL, 'an unknown worker is told to register');
SELECT is((SELECT in_flight FROM api.workers WHERE name = 'w-ops'), 1, 'the heartbeat tells its load');
SELECT is((SELECT state FROM api.drain_worker((SELECT id FROM flows.workers WHERE name = 'w-ops'))), 'draining',
          'an administrator drains it');
SELECT is(flows.worker_heartbeat_v1('w-ops', 1, 1), true, 'its next heartbeat says so');
SELECT id AS ops_sync FROM api.request_sync(ARRAY[:'three']::uuid[], ARRAY['csq']) \gset
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v2('w-ops', 10)), 0, 'a draining worker claims nothing');
SELECT lives_ok($$ SELECT flows.worker_stopped_v1('w-ops', 1) $$, 'it stops');
SELECT is((SELECT state FROM api.workers WHERE name = 'w-ops'), 'stopped', 'listed as stopped');
SELECT throws_like(format($$ SELECT api.drain_worker('%s') $$, (SELECT id FROM flows.workers WHERE name = 'w-ops')),
                   'no running worker %', 'a stopped worker cannot be drained');
UPDATE flows.workers SET heartbeat_at = now() - interval '1 minute', stopped_at = NULL WHERE name = 'w-ops';
SELECT is((SELECT state FROM api.workers WHERE name = 'w-ops'), 'lost', 'no heartbeat for three intervals: lost');

-- emop sessions --------------------------------------------------------------------
DELETE FROM flows.meter_commands;
SELECT is(flows.open_emop_session('NOSUCHSERIAL', 'emop:t', 'csq'), NULL, 'an unknown serial has no session');
SELECT id AS busy FROM api.request_sync(ARRAY[:'m1']::uuid[], ARRAY['csq']) \gset
SELECT is((SELECT id FROM flows.claim_meter_commands_v2('w3', 10)), :'busy'::uuid, 'a worker holds m1');
SELECT flows.open_emop_session('EML3100000001', 'emop:t', 'prepay_balance') AS session \gset
SELECT is((SELECT held || ' ' || waiting_for || ' ' || held_by FROM flows.hold_emop_session(:'session', 'emop:t')),
          'false sync w3', 'the operator waits, told what holds the meter');
SELECT id AS queued FROM api.request_sync(ARRAY[:'m2']::uuid[], ARRAY['csq']) \gset
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v2('w3', 10) WHERE kind = 'emop_session'), 0,
          'no worker ever runs an emop session');
SELECT is(flows.finish_meter_commands_v1('w3', jsonb_build_array(jsonb_build_object('id', :'busy', 'attempt', 1,
                                                                                    'outcome', '{}'::jsonb))),
          '{}'::uuid[], 'the worker finishes');
SELECT id AS after FROM api.request_sync(ARRAY[:'m1']::uuid[], ARRAY['voltage']) \gset
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v2('w3', 10) WHERE meter_id = :'m1'), 0,
          'the meter is kept free for the waiting operator');
SELECT ok((SELECT held FROM flows.hold_emop_session(:'session', 'emop:t')), 'the operator holds the meter');
SELECT is(flows.close_emop_session(:'session', 'emop:t'), 'done', 'and closes the session');
SELECT is((SELECT kind || ' ' || requested_by || ' ' || (result ->> 'operation') FROM api.meter_commands
           WHERE id = :'session'), 'emop_session emop:t prepay_balance', 'which /meter_commands shows');
SELECT flows.open_emop_session('EML3100000002', 'emop:gone', 'csq') AS stale \gset
ALTER TABLE flows.meter_commands DISABLE TRIGGER meter_commands_touch;
UPDATE flows.meter_commands SET updated_at = now() - interval '1 minute' WHERE id = :'stale';
ALTER TABLE flows.meter_commands ENABLE TRIGGER meter_commands_touch;
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v2('w3', 0)), 0, 'a claim (of nothing) expires what is over');
SELECT is((SELECT status FROM flows.meter_commands WHERE id = :'stale'), 'cancelled',
          'a session whose holder stopped asking is cancelled');

-- Three-phase gap repair --------------------------------------------------------------
DELETE FROM flows.meter_commands;
UPDATE flows.meter_registers SET start_time = now() - interval '10 days' WHERE meter_id = :'three';
SELECT cmp_ok(flows.schedule_profile_log_reads(), '>=', 1, 'gap repair queues reads');
SELECT is((SELECT count(*)::int FROM flows.meter_commands WHERE meter_id = :'three' AND kind = 'read_profile_log'), 1,
          'a three-phase meter''s missing half hours are read from its profile');

SELECT * FROM finish();
ROLLBACK;

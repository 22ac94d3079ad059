-- The command outbox: claiming, leases, fencing, retries, idempotency, scheduling.
BEGIN;
SELECT plan(39);

INSERT INTO flows.escos (id, code, name, max_running_commands)
VALUES ('00000000-0000-4000-8000-0000000000e1', 'TAPCMD', 'Commands', 2);
SELECT api.register_meter(serial => 'EML3000000001', hardware => 'C1.w',
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3000000002', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS m2 \gset
SELECT api.register_meter(serial => 'EML3000000003', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS m3 \gset
SELECT api.register_meter(serial => 'EML3000000004', mode => 'passive',
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS passive \gset
SELECT api.register_meter(serial => 'EMP1AX3000000005', hardware => 'P1.ax',
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS three \gset
SELECT api.register_meter(serial => 'EML3000000006', hardware => 'B1.w', prepay_enabled => false,
                          esco => '00000000-0000-4000-8000-0000000000e1') ->> 'id' AS credit \gset

-- Requests --------------------------------------------------------------
SELECT id AS t1 FROM api.send_token(:'m1', amount => 12.50, idempotency_key => 'pay-1') \gset
SELECT is((SELECT id FROM api.send_token(:'m1', amount => 12.50, idempotency_key => 'pay-1')), :'t1'::uuid,
          'the same idempotency key returns the same command');
SELECT is((SELECT count(*)::int FROM flows.meter_commands WHERE kind = 'send_token'), 1, 'and creates no other');
SELECT throws_ok(format($$ SELECT api.send_token('%s', amount => 0.001) $$, :'m1'), '22023', NULL,
                 'amounts are whole pence');
SELECT throws_like(format($$ SELECT api.send_token('%s', token => '12345') $$, :'m1'),
                   'token must be 20 digits', 'a token is 20 digits');
SELECT throws_like(format($$ SELECT api.request_sync(ARRAY['%s']::uuid[]) $$, :'passive'),
                   '%passive: a digital twin, never contacted%', 'passive meters are never contacted');
SELECT throws_like(format($$ SELECT api.request_sync(ARRAY['%s']::uuid[], ARRAY['voltage', 'mood']) $$, :'m2'),
                   'unknown metric mood', 'metrics are checked');
SELECT throws_like(format($$ SELECT api.set_future_tariff('{"standing_charge": 0.5, "activation_datetime": "2099-01-01T00:00:00Z"}', ARRAY['%s']::uuid[]) $$, :'m2'),
                   '%needs standing_charge, unit_rate_element_a%', 'a future tariff has what a meter needs');
SELECT throws_like(format($$ SELECT api.set_future_tariff('{"unit_rate_element_a": -0.1, "activation_datetime": "2099-01-01T00:00:00Z"}', ARRAY['%s']::uuid[]) $$, :'m2'),
                   '%unit_rate_element_a must be between 0 and 1%', 'tariff ranges are checked');
SELECT is((SELECT count(*)::int FROM api.set_future_tariff(
              '{"standing_charge": "0.5", "unit_rate_element_a": "0.2", "prepayment_emergency_credit": "10",
                "prepayment_ecredit_availability": "5", "prepayment_debt_recovery_rate": "0.25",
                "activation_datetime": "2099-01-01T00:00:00Z"}',
              ARRAY[:'m2', :'m3']::uuid[])), 2, 'a tariff for two meters is two commands');
SELECT is((SELECT count(DISTINCT batch_id)::int FROM flows.meter_commands WHERE kind = 'set_future_tariff'), 1,
          'in one rollout');
SELECT throws_like(format($$ SELECT api.send_token('%s', amount => 5) $$, :'three'),
                   '%three phase: no prepayment or tariffs%', 'no tokens for three-phase meters');
SELECT throws_like(format($$ SELECT api.set_future_tariff('{"standing_charge": "0.5", "unit_rate_element_a": "0.2",
                              "prepayment_emergency_credit": "10", "prepayment_ecredit_availability": "5",
                              "prepayment_debt_recovery_rate": "0.25", "activation_datetime": "2099-01-01T00:00:00Z"}',
                              ARRAY['%s']::uuid[]) $$, :'credit'),
                   '%prepayment disabled%', 'no tariffs for meters with prepayment disabled');
SELECT is((SELECT count(*)::int FROM api.request_sync(ARRAY[:'three']::uuid[], ARRAY['voltage'])), 1,
          'three-phase meters are synced');
DELETE FROM flows.meter_commands WHERE meter_id = :'three';

-- Claiming ---------------------------------------------------------------
SELECT id AS s1 FROM api.request_sync(ARRAY[:'m1']::uuid[]) \gset
-- m1 has two pending commands (token, sync), m2 and m3 one each; the ESCO may run 2 at once.
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('w1', 10)), 2, 'claims stop at the ESCO''s limit');
SELECT is((SELECT count(DISTINCT meter_id)::int FROM flows.meter_commands WHERE status = 'running'), 2,
          'one command per meter');
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('w2', 10)), 0, 'a second worker gets nothing more');
UPDATE flows.escos SET max_running_commands = 10 WHERE code = 'TAPCMD';
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('w2', 10)), 1,
          'with room, the third meter''s command is claimed, never a second one for a busy meter');

SELECT id AS running, attempts AS attempt FROM flows.meter_commands WHERE lease_owner = 'w1' LIMIT 1 \gset
SELECT throws_ok(format($$ SELECT flows.finish_meter_command_v1('%s', 'w2', %s, '{}') $$, :'running', :'attempt'),
                 'FL409', NULL, 'another worker cannot finish it (fence)');
SELECT lives_ok(format($$ SELECT flows.finish_meter_command_v1('%s', 'w1', %s, '{"result": {"ok": true}}') $$,
                       :'running', :'attempt'), 'its worker can');
SELECT is((SELECT status FROM flows.meter_commands WHERE id = :'running'), 'done', 'done');
SELECT is((SELECT health FROM flows.meter_shadows s JOIN flows.meter_commands c ON c.meter_id = s.id
           WHERE c.id = :'running'), 'healthy', 'success marks the meter healthy');
SELECT throws_ok(format($$ SELECT flows.finish_meter_command_v1('%s', 'w1', %s, '{}') $$, :'running', :'attempt'),
                 'FL409', NULL, 'and only once');

-- Failure, retry with backoff, final failure --------------------------------
SELECT id AS failing, attempts AS fattempt FROM flows.meter_commands WHERE lease_owner = 'w2' LIMIT 1 \gset
SELECT is(flows.fail_meter_command_v1(:'failing', 'w2', :'fattempt', 'connection refused', true), 'pending',
          'a retryable error goes back to pending');
SELECT ok((SELECT run_at > now() + interval '5 seconds' FROM flows.meter_commands WHERE id = :'failing'),
          'with a backoff');
SELECT alike((SELECT s.health_details FROM flows.meter_shadows s JOIN flows.meter_commands c ON c.meter_id = s.id
             WHERE c.id = :'failing'), 'connection refused (%attempt 1 of %', 'the meter is unhealthy and says why');
UPDATE flows.meter_commands SET run_at = now() - interval '1 hour' WHERE id = :'failing';  -- due first
SELECT is((SELECT attempt::int FROM flows.claim_meter_commands_v1('w3', 10) WHERE id = :'failing'), 2,
          'claimed again as attempt 2');
SELECT is(flows.fail_meter_command_v1(:'failing', 'w3', 2, 'NAK 6 (security_not_granted)', false), 'failed',
          'a refusal fails at once');

-- A dead worker's lease runs out -------------------------------------------
SELECT id AS orphan, attempts AS oattempt FROM flows.meter_commands WHERE status = 'running' LIMIT 1 \gset
UPDATE flows.meter_commands SET lease_expires_at = now() - interval '1 second' WHERE id = :'orphan';
SELECT is((SELECT attempt::int FROM flows.claim_meter_commands_v1('w4', 10) WHERE id = :'orphan'), :oattempt + 1,
          'an expired lease is claimed by another worker');
SELECT throws_ok(format($$ SELECT flows.note_meter_command_progress_v1('%s', 'w1', %s, '{"x": 1}') $$,
                        :'orphan', :'oattempt'), 'FL409', NULL, 'the dead worker''s attempt is fenced off');
SELECT is(flows.renew_meter_command_leases_v1('w4', ARRAY[:'orphan']::uuid[], ARRAY[:oattempt + 1]), '{}'::uuid[],
          'the new holder renews its lease');
SELECT lives_ok(format($$ SELECT flows.release_meter_command_v1('%s', 'w4', %s) $$, :'orphan', :oattempt + 1),
                'a worker shutting down releases its command');
SELECT is((SELECT status || '/' || attempts FROM flows.meter_commands WHERE id = :'orphan'), 'pending/' || :oattempt,
          'pending again, the attempt not counted');

-- Scheduling -----------------------------------------------------------------
DELETE FROM flows.meter_commands;
SELECT cmp_ok(flows.schedule_syncs(), '>=', 3, 'a sync per active meter is queued');
SELECT is(flows.schedule_syncs(), 0, 'and not again while they are due later or under way');
UPDATE flows.meter_commands SET run_at = run_at - interval '1 minute', created_at = created_at - interval '1 minute';
SELECT id AS late_token FROM api.send_token(:'m2', amount => 5) \gset
SELECT is((SELECT id FROM flows.claim_meter_commands_v1('w5', 10) WHERE meter_id = :'m2'), :'late_token'::uuid,
          'a top-up goes before the meter''s older sync');

-- The global limit (all ESCOs, all workers) ---------------------------------
DELETE FROM flows.meter_commands;
SELECT is((SELECT count(*)::int FROM api.request_sync(ARRAY[:'m1', :'m2', :'m3']::uuid[])), 3, 'three syncs');
SET LOCAL flows.max_running_commands = 2;
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('w6', 10)), 2, 'claims stop at the global limit');
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('w7', 10)), 0, 'for every worker');
SET LOCAL flows.max_running_commands = 'many';
SELECT throws_like($$ SELECT flows.claim_meter_commands_v1('w7', 10) $$,
                   'flows.max_running_commands must be a whole number, got many', 'a bad limit is named');
RESET flows.max_running_commands;

SELECT * FROM finish();
ROLLBACK;

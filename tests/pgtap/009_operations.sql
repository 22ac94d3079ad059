-- The audit trail (what is recorded, append-only, registry options) and the
-- request check PostgREST runs before each request (expiry, audience, API keys).
-- Claims come from flows.sql_login_claims for this login (as for any SQL login).
BEGIN;
SELECT plan(25);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000a1', 'TAPAUD', 'Audit');
SELECT api.register_meter(serial => 'EML3100000001', hardware => 'C1.w',
                          esco => '00000000-0000-4000-8000-0000000000a1') ->> 'id' AS m1 \gset

-- What is recorded ----------------------------------------------------------
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE relation = 'flows.meter_registry' AND operation = 'INSERT'
           AND row_key = jsonb_build_object('id', :'m1')), 1, 'a new meter is audited with its key');
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE relation = 'flows.meter_registers'
           AND esco = '00000000-0000-4000-8000-0000000000a1'), 2, 'and its two registers, with their ESCO');
SELECT is((SELECT actor_role || ' ' || db_user FROM flows.audit_log WHERE relation = 'flows.meter_registry'
           AND row_key ->> 'id' = :'m1'), 'postgres postgres', 'a SQL login is recorded as itself');

UPDATE flows.meter_registry SET name = 'Renamed' WHERE id = :'m1';
SELECT is((SELECT before ? 'name' AND before ->> 'name' IS NULL AND before ->> 'serial' = 'EML3100000001'
           FROM flows.audit_log WHERE relation = 'flows.meter_registry' AND operation = 'UPDATE'), true,
          'an update keeps the row before');
SELECT is((SELECT after ->> 'name' FROM flows.audit_log WHERE relation = 'flows.meter_registry'
           AND operation = 'UPDATE'), 'Renamed', 'the row after the update');
UPDATE flows.meter_registry SET name = 'Renamed' WHERE id = :'m1';
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE relation = 'flows.meter_registry' AND operation = 'UPDATE'),
          1, 'an update that changes nothing but updated_at is not audited');

SAVEPOINT undone;
UPDATE flows.meter_registry SET name = 'Never' WHERE id = :'m1';
ROLLBACK TO SAVEPOINT undone;
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE after ->> 'name' = 'Never'), 0,
          'a change rolled back leaves no audit row (same transaction)');

INSERT INTO flows.sites (id, esco, code, name)
VALUES ('00000000-0000-4000-8000-0000000000a4', '00000000-0000-4000-8000-0000000000a1', 'AS', 'Audit site');
INSERT INTO flows.properties (id, esco, site, plot)
VALUES ('00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-0000000000a1',
        '00000000-0000-4000-8000-0000000000a4', 'A-1');
INSERT INTO flows.service_head_registry (id, esco, name, phase)
VALUES ('00000000-0000-4000-8000-0000000000a3', '00000000-0000-4000-8000-0000000000a1', 'AH', 1);
INSERT INTO flows.properties_service_head (property, service_head, esco)
VALUES ('00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-0000000000a3',
        '00000000-0000-4000-8000-0000000000a1');
DELETE FROM flows.properties_service_head WHERE property = '00000000-0000-4000-8000-0000000000a2';
SELECT is((SELECT row_key FROM flows.audit_log WHERE relation = 'flows.properties_service_head'
           AND operation = 'DELETE'),
          '{"esco": "00000000-0000-4000-8000-0000000000a1", "property": "00000000-0000-4000-8000-0000000000a2", "service_head": "00000000-0000-4000-8000-0000000000a3"}'::jsonb,
          'a composite key is recorded whole, and deletes keep the row before');

-- Commands: what people ask for, not the scheduler's own syncs or lease renewals.
SELECT id AS t1 FROM api.send_token(:'m1', amount => 7.5) \gset
SELECT is((SELECT after -> 'parameters' ->> 'amount' FROM flows.audit_log WHERE relation = 'flows.meter_commands'
           AND row_key ->> 'id' = :'t1'), '7.5', 'a top-up request is audited with its amount');
SELECT ok((SELECT count(*) FROM flows.schedule_syncs()) >= 0, 'the scheduler runs');
SELECT is((SELECT count(*)::int FROM flows.audit_log AS a JOIN flows.meter_commands AS c ON c.id::text = a.row_key ->> 'id'
           WHERE c.requested_by = 'scheduler'), 0, 'its syncs are not audited');
SELECT is((SELECT count(*)::int FROM flows.claim_meter_commands_v1('tap-worker', 10)), 1, 'a worker claims the top-up');
SELECT is((SELECT after ->> 'status' FROM flows.audit_log WHERE row_key ->> 'id' = :'t1' AND operation = 'UPDATE'),
          'running', 'the claim (a status change) is audited');
SELECT is(flows.renew_meter_command_leases_v1('tap-worker', ARRAY[:'t1']::uuid[], ARRAY[1]), '{}'::uuid[], 'renewed');
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE row_key ->> 'id' = :'t1'), 2,
          'a lease renewal is not audited');

-- Append-only, for the owner too --------------------------------------------
SET LOCAL ROLE flows_owner;
SELECT throws_ok($$ UPDATE flows.audit_log SET actor_role = 'nobody' $$, '42501', NULL,
                 'the owner cannot change audit rows');
SELECT throws_ok($$ DELETE FROM flows.audit_log $$, '42501', NULL, 'nor delete them');
SELECT throws_ok($$ TRUNCATE flows.audit_log $$, '42501', NULL, 'nor truncate the log');
RESET ROLE;
SELECT throws_like($$ DELETE FROM flows.audit_log $$, '%append-only%',
                   'a superuser is refused by the trigger, saying why');
SELECT throws_like($$ CALL flows.audit('flows.meter_registry') $$, '%audit_insert%already exists%',
                   'a table is audited once');

-- The request check -----------------------------------------------------------
INSERT INTO flows.sql_login_claims (login, claims) VALUES ('postgres', '{"role": "flows_operator", "esco": "TAPAUD"}');
SELECT throws_ok($$ SELECT flows.check_request() $$, 'PT401', 'the token has no expiry (exp claim) and is refused',
                 'a token without exp is refused');
UPDATE flows.sql_login_claims SET claims = claims || '{"exp": 4102444800, "aud": "other"}' WHERE login = 'postgres';
SELECT lives_ok($$ SELECT flows.check_request() $$, 'with exp and no audience configured it passes');
SELECT set_config('app.settings.jwt_aud', 'flows-api', true) AS audience \gset
SELECT throws_like($$ SELECT flows.check_request() $$, '%aud claim must be flows-api%',
                   'with an audience configured, another aud is refused');
UPDATE flows.sql_login_claims SET claims = claims - 'aud' WHERE login = 'postgres';
SELECT throws_like($$ SELECT flows.check_request() $$, '%aud claim must be flows-api%', 'and so is no aud at all');
SELECT id AS key FROM flows.create_api_key('TAPAUD', 'billing', 'flows_operator', now() + interval '1 year') \gset
UPDATE flows.sql_login_claims SET claims = claims || jsonb_build_object('aud', 'flows-api', 'api_key', :'key')
WHERE login = 'postgres';
UPDATE flows.api_keys SET revoked_at = now(), revoked_by = 'tap' WHERE id = :'key';
SELECT throws_like($$ SELECT flows.check_request() $$, '%revoked, expired or unknown%',
                   'a revoked API key is refused at once');

SELECT * FROM finish();
ROLLBACK;

-- Realtime change capture: which statements log which keys, numbering at
-- commit, folding per commit, filters, reading as a role, pruning, rights.
BEGIN;
SELECT plan(30);

INSERT INTO flows.escos (id, code, name) VALUES
    ('00000000-0000-4000-8000-0000000000a8', 'TAPRTA', 'Realtime A'),
    ('00000000-0000-4000-8000-0000000000b8', 'TAPRTB', 'Realtime B');
SELECT api.register_meter(serial => 'EML3800000001', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000a8') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3800000002', hardware => 'C1.w',
                          esco => '00000000-0000-4000-8000-0000000000b8') ->> 'id' AS m2 \gset
SELECT pg_current_xact_id() AS tx \gset

-- Capture --------------------------------------------------------------------
SELECT set_eq($$ SELECT relation, key, op::text, esco FROM flows.realtime_events $$,
              format($$ VALUES ('meter_registry', '%1$s', 'i', '00000000-0000-4000-8000-0000000000a8'::uuid),
                               ('meter_shadows', '%1$s', 'i', '00000000-0000-4000-8000-0000000000a8'::uuid),
                               ('meter_registry', '%2$s', 'i', '00000000-0000-4000-8000-0000000000b8'::uuid),
                               ('meter_shadows', '%2$s', 'i', '00000000-0000-4000-8000-0000000000b8'::uuid) $$,
                     :'m1', :'m2'),
              'a new meter logs its registry row and its shadow, with the ESCO');
UPDATE flows.meter_shadows SET balance = 5;
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE relation = 'meter_shadows' AND op = 'u'), 2,
          'one statement updating two shadows logs two keys (set-based, one trigger call)');
UPDATE flows.meter_shadows SET balance = 6;
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE relation = 'meter_shadows' AND op = 'u'), 2,
          'the same keys again in the same transaction add nothing');
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE xid <> :'tx'::xid8), 0,
          'every event carries the transaction id');
UPDATE flows.escos SET name = 'Renamed' WHERE code = 'TAPRTA';
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE relation NOT IN ('meter_registry', 'meter_shadows')),
          0, 'tables no relation follows log nothing');

-- Numbering at commit ----------------------------------------------------------
SELECT results_eq($$ SELECT count(*)::int, count(position)::int FROM flows.realtime_commits $$,
                  $$ VALUES (1, 0) $$, 'one commit row per transaction, unnumbered until it commits');
SELECT ok((SELECT tgdeferrable AND tginitdeferred FROM pg_trigger WHERE tgname = 'realtime_commits_number'),
          'numbering is deferred to commit time');
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS before_position FROM flows.realtime_position \gset
SET CONSTRAINTS flows.realtime_commits_number IMMEDIATE;  -- what COMMIT does
SELECT results_eq($$ SELECT position, committed_at IS NOT NULL FROM flows.realtime_commits $$,
                  format($$ VALUES (%s::bigint, true) $$, :before_position + 1),
                  'at commit the transaction takes the next position');
SELECT is(flows.realtime_head(), :before_position + 1::bigint, 'realtime_head is the latest visible position');
SELECT ok(EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                  AND objid = (7318050700412 & 4294967295)),
          'numbering holds the advisory lock until the transaction ends');

-- Reading the log ----------------------------------------------------------------
SELECT results_eq(
    format($$ SELECT relation, key, may_leave, inserted FROM flows.realtime_changes(%s, %s) ORDER BY 1, 2 $$,
           :before_position, :before_position + 1),
    format($$ VALUES ('meter_registry', %L, false, true), ('meter_registry', %L, false, true),
                     ('meter_shadows', %L, false, true), ('meter_shadows', %L, false, true) $$,
           least(:'m1', :'m2'), greatest(:'m1', :'m2'), least(:'m1', :'m2'), greatest(:'m1', :'m2')),
    'changes fold per commit and key: created here, nothing left a view');
SELECT is_empty(format($$ SELECT * FROM flows.realtime_changes(%s, %s) $$, :before_position + 1,
                       :before_position + 5), 'nothing after the head');

-- Who may see a shadow: junctions and deletions are scope and delete events
INSERT INTO flows.sites (id, esco, code, name) VALUES
    ('00000000-0000-4000-8000-00000000051e', '00000000-0000-4000-8000-0000000000a8', 'RT', 'Site');
INSERT INTO flows.properties (id, esco, site, plot, address) VALUES
    ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-0000000000a8',
     '00000000-0000-4000-8000-00000000051e', 'RT-1', 'Lane');
INSERT INTO flows.service_head_registry (id, esco, name, phase, fuse_rating) VALUES
    ('00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-0000000000a8', 'RT-H', 1, 100);
INSERT INTO flows.properties_service_head (property, service_head, esco) VALUES
    ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-0000000000d1',
     '00000000-0000-4000-8000-0000000000a8');
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE op = 's'), 0,
          'a property connected to a head without meters touches no meter');
INSERT INTO flows.service_head_meter (service_head, meter, esco) VALUES
    ('00000000-0000-4000-8000-0000000000d1', :'m1', '00000000-0000-4000-8000-0000000000a8');
SELECT set_eq($$ SELECT relation, key FROM flows.realtime_events WHERE op = 's' $$,
              format($$ VALUES ('meter_shadows', %1$L), ('meter_registry', %1$L) $$, :'m1'),
              'connecting a meter to a head is a scope change of its shadow and registry row');
DELETE FROM flows.properties_service_head WHERE property = '00000000-0000-4000-8000-0000000000c1';
SELECT is((SELECT count(*)::int FROM flows.realtime_events WHERE op = 's' AND key = :'m1'), 2,
          'disconnecting the property is a scope change of the meter behind it (folded with the first)');
SELECT id AS sync_id FROM api.request_sync(ARRAY[:'m1']::uuid[], ARRAY['csq']) \gset
SELECT api.register_meter(serial => 'EML3800000003', hardware => 'B1.w',
                          esco => '00000000-0000-4000-8000-0000000000a8') ->> 'id' AS m3 \gset
SELECT DISTINCT batch_id AS rollout FROM api.set_future_tariff(
    '{"standing_charge": "0.5", "unit_rate_element_a": "0.2", "prepayment_emergency_credit": "10",
      "prepayment_ecredit_availability": "5", "prepayment_debt_recovery_rate": "0.25",
      "activation_datetime": "2099-01-01T00:00:00Z"}', ARRAY[:'m1', :'m3']::uuid[]) \gset
SELECT set_eq($$ SELECT relation, op::text FROM flows.realtime_events WHERE relation IN ('meter_commands', 'tariff_rollouts') $$,
              $$ VALUES ('meter_commands', 'i'), ('tariff_rollouts', 'i') $$,
              'commands log their ids, a tariff rollout its batch');
SELECT ok(EXISTS (SELECT FROM flows.realtime_events WHERE relation = 'tariff_rollouts' AND key = :'rollout'),
          'the rollout key is the batch id');
DELETE FROM flows.meter_registry WHERE id IN (:'m1', :'m3');
SELECT set_eq($$ SELECT relation, op::text FROM flows.realtime_events WHERE op = 'd' $$,
              $$ VALUES ('meter_shadows', 'd'), ('meter_registry', 'd'), ('meter_commands', 'd'),
                        ('tariff_rollouts', 'd') $$,
              'deleting a meter logs the deletion of its shadow, registry row, commands and rollout');
SELECT ok((SELECT bool_and(esco = '00000000-0000-4000-8000-0000000000a8') FROM flows.realtime_events
           WHERE relation = 'meter_shadows' AND op = 'd'), 'a deleted shadow keeps its ESCO in the log');

-- Filters -----------------------------------------------------------------------
SELECT results_eq($$ SELECT condition, p_values FROM flows.realtime_condition('meter_shadows',
          '[{"column": "balance", "op": "lt", "value": "5"}, {"column": "health", "op": "in", "value": ["a", "b"]},
            {"column": "csq", "op": "is", "value": "null", "negate": true}]', '{x}') $$,
    $$ VALUES ('v.balance < (($2::text[])[2])::numeric(12,5) AND v.health = ANY ((($2::text[])[3])::text[])'
               ' AND NOT (v.csq IS NULL)', ARRAY['x', '5', '{a,b}']) $$,
    'a filter becomes a condition on typed parameters; its values are appended');
SELECT is((flows.realtime_condition('meter_shadows', '[]', '{}')).condition, 'true', 'no filter: every row');
SELECT throws_like($$ SELECT flows.realtime_condition('meter_shadows', '[{"column": "x; drop", "op": "eq", "value": "1"}]', '{}') $$,
                   'filter column ''x; drop'' is not a column of meter_shadows', 'columns are checked');
SELECT throws_like($$ SELECT flows.realtime_condition('meter_shadows', '[{"column": "csq", "op": "like", "value": "1"}]', '{}') $$,
                   'filter operator ''like'' on csq is not supported', 'operators are checked');
SELECT throws_like($$ SELECT flows.realtime_query('escos', '[]') $$,
                   'relation ''escos'' cannot be followed live', 'only registered relations');

-- Reading as a role -------------------------------------------------------------------
SELECT query AS rows_query, "values" AS rows_values FROM flows.realtime_query('meter_shadows',
    '[[], [{"column": "balance", "op": "gt", "value": "5"}]]', false) \gset
SELECT api.register_meter(serial => 'EML3800000004', esco => '00000000-0000-4000-8000-0000000000a8') ->> 'id' AS m4 \gset
SELECT set_config('role', 'flows_operator', true), set_config('request.jwt.claims', '{"esco": "TAPRTB"}', true);
SELECT results_eq(format('SELECT v.id::text, ARRAY[true, v.balance > 5] FROM api.meter_shadows AS v WHERE v.id = %L', :'m2'),
                  format($$ SELECT key, matches FROM (%s) AS r (key, row_data, matches) $$,
                         replace(replace(:'rows_query', '$1', quote_literal(ARRAY[:'m2', :'m4']) || '::text[]'),
                                 '$2', quote_literal(:'rows_values'::text[]) || '::text[]')),
                  'the statement, run as an ESCO''s operator, reads only its rows and says which filters pass');
SELECT set_config('role', 'none', true);

-- Pruning ---------------------------------------------------------------------------
SET CONSTRAINTS flows.realtime_commits_number DEFERRED;  -- rows made up below keep their positions
INSERT INTO flows.realtime_commits (xid, position, committed_at) VALUES
    ('1'::xid8, -2, now() - interval '2 hours'), ('2'::xid8, -1, now() - interval '10 minutes');
INSERT INTO flows.realtime_events (xid, relation, key, op) VALUES ('1'::xid8, 'meter_shadows', 'old', 'u'),
                                                                   ('2'::xid8, 'meter_shadows', 'new', 'u');
SELECT is(flows.prune_realtime_events(interval '1 hour'), 1::bigint, 'commits older than the retention go');
SELECT results_eq($$ SELECT key FROM flows.realtime_events WHERE xid IN ('1'::xid8, '2'::xid8) $$,
                  $$ VALUES ('new') $$, 'with their changes; newer ones stay');
SELECT is(flows.realtime_pruned_through(), -2::bigint, 'the highest pruned position is kept for resync decisions');
SELECT throws_ok($$ SELECT flows.prune_realtime_events(interval '-1 hour') $$, '22023', NULL,
                 'a negative retention is refused');

-- Rights ----------------------------------------------------------------------------
SELECT ok(NOT has_table_privilege('flows_operator', 'flows.realtime_events', 'SELECT')
          AND NOT has_table_privilege('flows_service', 'flows.realtime_events', 'INSERT'),
          'nobody reads or writes the log directly (capture and reading are definer functions)');

SELECT * FROM finish();
ROLLBACK;

-- Structure and security surface of the whole schema, mostly from the catalog
-- so that new objects are held to the same rules.
BEGIN;
SELECT plan(32);

-- Tables -----------------------------------------------------------------
SELECT tables_are('flows', ARRAY[
    'escos', 'sql_login_claims', 'sites', 'properties', 'feeder_registry', 'service_head_registry',
    'properties_service_head', 'service_head_meter', 'circuits', 'circuit_register',
    'meter_registry', 'meter_registers', 'meter_shadows', 'meter_metrics',
    'register_import', 'register_export', 'register_interval_hh', 'register_interval_daily', 'register_interval_monthly',
    'meter_prepay_balance', 'meter_ledger_days', 'meter_csq', 'meter_voltage', 'meter_3p_voltage', 'meter_health_history',
    'meter_clock_drift', 'meter_tariff_history', 'meter_event_log_type', 'meter_event_log',
    'meter_commands', 'meter_metric_runs', 'reads_to_estimate', 'hardware_kinds', 'audit_log', 'api_keys',
    'realtime_relations', 'realtime_sources', 'realtime_events', 'realtime_commits', 'realtime_state', 'workers',
    'notification_rules', 'notification_settings', 'notification_preferences', 'notification_outbox',
    'notification_balance_watch', 'notification_offline_meters'
] || ARRAY(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'flows'::regnamespace
                  AND c.relispartition AND c.relkind = 'r'),
   'flows holds the documented tables (and their partitions)');
SELECT is_empty($$ SELECT relname FROM pg_class WHERE relnamespace = 'api'::regnamespace AND relkind IN ('r', 'p') $$,
                'api exposes no tables');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'flows'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
$$, 'every flows table has a primary key');

-- Keys and integrity -----------------------------------------------------
SELECT col_is_pk('flows', 'register_interval_hh', ARRAY['register_id', 'timestamp'], 'one half hour per register');
SELECT col_is_pk('flows', 'register_import', ARRAY['register_id', 'timestamp'], 'one read per register and time');
SELECT col_is_pk('flows', 'meter_prepay_balance', ARRAY['meter_id', 'timestamp'], 'one balance per meter and time');
SELECT col_is_unique('flows', 'meter_registry', ARRAY['serial'], 'meter serials are unique');
SELECT col_is_unique('flows', 'meter_registry', ARRAY['ip_address', 'emop_port'], 'meter addresses are unique');
SELECT fk_ok('flows', 'properties', ARRAY['site', 'esco'], 'flows', 'sites', ARRAY['id', 'esco']);
SELECT fk_ok('flows', 'service_head_meter', ARRAY['meter', 'esco'], 'flows', 'meter_registry', ARRAY['id', 'esco']);
SELECT fk_ok('flows', 'circuit_register', ARRAY['register', 'esco'], 'flows', 'meter_registers', ARRAY['register_id', 'esco']);
SELECT fk_ok('flows', 'meter_shadows', 'id', 'flows', 'meter_registry', 'id');
SELECT has_check('flows', 'meter_shadows', 'meter_shadows has checks');
SELECT ok(EXISTS (SELECT FROM pg_constraint WHERE conname = 'circuit_register_register_time_overlap' AND contype = 'x'),
          'a register''s circuit ranges cannot overlap (exclusion constraint)');
SELECT is((SELECT count(*)::int FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
           WHERE c.relnamespace = 'flows'::regnamespace), 10, 'ten time-series tables are partitioned');
SELECT is_empty($$
    SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
    WHERE c.relnamespace = 'flows'::regnamespace
      AND NOT EXISTS (SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                      WHERE i.indrelid = c.oid AND am.amname = 'brin')
$$, 'every time-series table has a BRIN index on time');
SELECT ok((SELECT count(*) FROM pg_inherits WHERE inhparent = 'flows.register_interval_hh'::regclass) >= 5,
          'partitions exist from last month to three months ahead');

-- Ownership and functions ------------------------------------------------
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND c.relkind IN ('r', 'p', 'v', 'S')
      AND c.relowner <> 'flows_owner'::regrole
    UNION ALL
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND p.proowner <> 'flows_owner'::regrole
$$, 'flows_owner owns every table, view and function');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace)
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
$$, 'no function is executable by PUBLIC');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND p.prosecdef
      AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')
$$, 'every SECURITY DEFINER function pins its search_path');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND l.lanname = 'plpgsql'
      AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')
$$, 'every PL/pgSQL function pins its search_path');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
           WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND p.prosecdef),
          ARRAY['audit_row', 'audit_statement', 'capture_realtime_changes', 'check_request', 'create_meter_shadow',
                'ensure_partitions',
                'estimate_interval_hh', 'jwt_claims', 'meter_ledger_days_follow_balance',
                'meter_ledger_days_follow_balances', 'meter_ledger_days_follow_register', 'number_realtime_commit',
                'prune_realtime_events',
                'realtime_changes', 'realtime_head', 'realtime_pruned_through', 'record_interval_hh',
                'record_register_reads'],
          'the SECURITY DEFINER functions are the reviewed ones');
SELECT is_empty($$
    SELECT p.oid::regprocedure, c.message
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
         LEFT JOIN LATERAL (SELECT t.tgrelid, t.tgnewtable FROM pg_trigger t WHERE t.tgfoid = p.oid LIMIT 1) AS t ON true,
         LATERAL plpgsql_check_function_tb(p.oid, coalesce(t.tgrelid, 0), newtable => t.tgnewtable) c
    WHERE p.pronamespace IN ('flows'::regnamespace, 'api'::regnamespace) AND l.lanname = 'plpgsql'
      AND c.level IN ('error', 'warning')
$$, 'plpgsql_check finds no errors or warnings');

-- Privileges -------------------------------------------------------------
SELECT function_privs_are('flows', 'record_meter_states', ARRAY['jsonb'], 'flows_service', ARRAY['EXECUTE']);
SELECT function_privs_are('flows', 'record_meter_states', ARRAY['jsonb'], 'flows_operator', ARRAY[]::text[]);
SELECT function_privs_are('api', 'register_meter',
    ARRAY['text', 'text', 'inet', 'text', 'integer', 'uuid', 'text', 'boolean', 'boolean', 'boolean', 'text', 'text',
          'uuid', 'jsonb'], 'flows_analyst', ARRAY[]::text[]);
SELECT table_privs_are('api', 'meter_registry', 'flows_analyst', ARRAY['SELECT']);
SELECT table_privs_are('flows', 'meter_shadows', 'flows_operator', ARRAY['SELECT']);

-- Views and policies -----------------------------------------------------
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace IN ('api'::regnamespace, 'flows'::regnamespace) AND c.relkind = 'v'
      AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
$$, 'every view is security_invoker, so row-level security applies to its caller');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'flows'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relrowsecurity
      AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid)
      AND c.relname NOT IN ('sql_login_claims', 'reads_to_estimate',  -- internal: only definer functions use them
                            'realtime_sources', 'realtime_events', 'realtime_commits', 'realtime_state')
$$, 'every table with row-level security has policies');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NULL
    UNION ALL
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'api'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
$$, 'every api view and function is described (the descriptions are the OpenAPI docs)');
SELECT policies_are('flows', 'meter_registry',
    ARRAY['meter_registry_all', 'meter_registry_own_esco', 'meter_registry_customer']);

SELECT * FROM finish();
ROLLBACK;

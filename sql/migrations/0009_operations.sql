-- 0009_operations: the audit trail, request checks (token expiry and audience, API keys, read-only
-- replicas), API keys, the monitoring views and the exporter's login (flows_monitor).

-- The exporter's login; roles are cluster-wide: created when missing, left by the rollback.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'flows_monitor') THEN
        CREATE ROLE flows_monitor LOGIN;
    END IF;
END
$roles$;
GRANT pg_monitor TO flows_monitor;
ALTER ROLE flows_monitor  SET statement_timeout = '10s';

CREATE SCHEMA monitoring AUTHORIZATION flows_owner;
COMMENT ON SCHEMA monitoring IS 'Counts for the Prometheus exporter (flows_monitor): queue, fleet, outcomes.';

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/meters.sql: the digital twin carries its meter's ESCO ----
ALTER TABLE flows.meter_shadows ADD COLUMN esco uuid;
UPDATE flows.meter_shadows AS s SET esco = m.esco FROM flows.meter_registry AS m WHERE m.id = s.id;
ALTER TABLE flows.meter_shadows ALTER COLUMN esco SET NOT NULL;
ALTER TABLE flows.meter_shadows ADD CONSTRAINT meter_shadows_meter_esco_fkey
    FOREIGN KEY (id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE;
COMMENT ON COLUMN flows.meter_shadows.esco IS
    'The meter''s ESCO, so that an operator''s read of the twins is one index scan, not a filter over every ESCO''s.';
CREATE INDEX meter_shadows_esco_idx ON flows.meter_shadows (esco);

-- SECURITY DEFINER: whoever registers a meter gets its shadow, without
-- needing write access to meter state themselves.
CREATE OR REPLACE FUNCTION flows.create_meter_shadow() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO flows.meter_shadows (id, esco, prepay_enabled) VALUES (NEW.id, NEW.esco, NEW.prepay_enabled);
    RETURN NULL;
END
$$;

-- ---- rls/policies.sql: operators and analysts see their ESCO's twins by its column ----
DROP POLICY meter_shadows_visible_meter ON flows.meter_shadows;
CREATE POLICY meter_shadows_own_esco ON flows.meter_shadows FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_shadows_customer ON flows.meter_shadows FOR SELECT TO flows_customer
    USING (id IN (SELECT m.id FROM flows.meter_registry AS m));

-- ---- schema/api_keys.sql ----
-- API keys: long-lived credentials for service integrations (a portal backend,
-- a billing system). Each is a JWT whose "api_key" claim names a row here; the
-- request check (rls/request_checks.sql) refuses it once the row is revoked or
-- expired, at once, on every API instance. Scoped to one ESCO, as an operator
-- (writes) or an analyst (reads). `flows api-key create` mints them; the secret
-- is the JWT itself and is never stored.
CREATE TABLE flows.api_keys (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco       uuid        NOT NULL REFERENCES flows.escos (id),
    name       text        NOT NULL,
    role       text        NOT NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    CONSTRAINT api_keys_role_valid CHECK (role IN ('flows_operator', 'flows_analyst')),
    CONSTRAINT api_keys_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT api_keys_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT api_keys_revoked_by_whom CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
COMMENT ON TABLE flows.api_keys IS
    'Long-lived API credentials for integrations, one ESCO each; revoked_at set = refused from then on.';
-- One live key per name and ESCO (a revoked name may be reused).
CREATE UNIQUE INDEX api_keys_live_name_key ON flows.api_keys (esco, name) WHERE revoked_at IS NULL;

-- ---- schema/audit.sql ----
-- The audit trail: who changed what, when, for configuration and money.
--
-- One row per changed row of an audited table, written by a trigger in the
-- same transaction as the change (a rolled-back change leaves no audit row).
-- Who: the JWT's subject, role and ESCO, the API key, the request id (the
-- X-Request-Id header the proxy sets), and the database login; never the
-- bearer token or other headers. What: the relation, the row's primary key,
-- the row before and after. When: the transaction's time and id.
--
-- Append-only for everyone, the owner included: nobody holds UPDATE, DELETE or
-- TRUNCATE on it, and a trigger refuses them even if someone grants them back.
-- A table is audited by one line in sql/schema/audit_registry.sql.
CREATE TABLE flows.audit_log (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    esco           uuid,
    relation       text        NOT NULL,
    operation      text        NOT NULL,
    row_key        jsonb       NOT NULL,
    before         jsonb,
    after          jsonb,
    actor_sub      text,
    actor_role     text        NOT NULL,
    actor_esco     text,
    api_key        uuid,
    request_id     text,
    db_user        text        NOT NULL,
    transaction_id bigint      NOT NULL,
    CONSTRAINT audit_log_operation_valid CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    CONSTRAINT audit_log_images CHECK ((before IS NULL) = (operation = 'INSERT') AND
                                       (after IS NULL) = (operation = 'DELETE'))
);
COMMENT ON TABLE flows.audit_log IS
    'Who changed what and when (configuration and money); append-only. esco: the changed row''s ESCO.';
COMMENT ON COLUMN flows.audit_log.row_key IS 'Primary key of the changed row, e.g. {"id": "..."}.';
COMMENT ON COLUMN flows.audit_log.actor_role IS 'The JWT''s role for API requests, else the database login.';
COMMENT ON COLUMN flows.audit_log.request_id IS 'X-Request-Id of the HTTP request (set by the proxy), if any.';
CREATE INDEX audit_log_esco_at_idx ON flows.audit_log (esco, at);
CREATE INDEX audit_log_row_idx ON flows.audit_log (relation, row_key);

CREATE FUNCTION flows.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; record a correction as a new change';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON flows.audit_log
    FOR EACH ROW EXECUTE FUNCTION flows.refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON flows.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION flows.refuse_audit_change();


-- The audit trigger. Arguments (set by flows.audit): the ESCO column ('' for
-- none), then the primary key columns. SECURITY DEFINER: writers need no
-- privilege on the audit log, so they cannot write it any other way.
CREATE FUNCTION flows.audit_row() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END;
    changed jsonb := coalesce(new_row, old_row);
    row_key jsonb := '{}'::jsonb;
    request_id text;
BEGIN
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        row_key := row_key || pg_catalog.jsonb_build_object(TG_ARGV[i], changed -> TG_ARGV[i]);
    END LOOP;
    IF session_user = 'flows_authenticator' THEN  -- only PostgREST's headers are the client's
        request_id := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb ->> 'x-request-id';
    END IF;
    INSERT INTO flows.audit_log (esco, relation, operation, row_key, before, after, actor_sub, actor_role,
                                 actor_esco, api_key, request_id, db_user, transaction_id)
    VALUES ((changed ->> nullif(TG_ARGV[0], ''))::uuid, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_key,
            old_row, new_row, claims ->> 'sub', coalesce(claims ->> 'role', session_user::text), claims ->> 'esco',
            CASE WHEN claims ->> 'api_key' ~ '^[0-9a-f-]{36}$' THEN (claims ->> 'api_key')::uuid END,
            pg_catalog.left(request_id, 200), session_user::text, pg_catalog.txid_current());
    RETURN NULL;
END
$$;


-- Attaches the audit trail to a table: the one call sql/schema/audit_registry.sql
-- makes per audited table (CALL flows.audit('flows.payments')).
--   esco_column      the column holding the row's ESCO (null: the row belongs to none)
--   ignored_columns  an UPDATE that changes only these is not audited (e.g. updated_at, leases)
--   only_rows        a condition on the row, written with {row} (e.g. '{row}.requested_by <> ''scheduler''')
CREATE PROCEDURE flows.audit(relation regclass, esco_column text DEFAULT 'esco',
                             ignored_columns text[] DEFAULT '{updated_at}', only_rows text DEFAULT NULL)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    key_columns text;
    arguments text;
    changed text;
BEGIN
    SELECT string_agg(pg_catalog.quote_literal(a.attname), ', ' ORDER BY k.n) INTO key_columns
    FROM pg_catalog.pg_index AS i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = relation AND i.indisprimary;
    IF key_columns IS NULL THEN
        RAISE EXCEPTION '% has no primary key to identify audited rows by', relation
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    arguments := pg_catalog.quote_literal(coalesce(esco_column, '')) || ', ' || key_columns;
    changed := pg_catalog.format('(pg_catalog.to_jsonb(OLD.*) OPERATOR(pg_catalog.-) %1$L::text[]) IS DISTINCT FROM '
                                 '(pg_catalog.to_jsonb(NEW.*) OPERATOR(pg_catalog.-) %1$L::text[])',
                                 coalesce(ignored_columns, '{}'));
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_insert AFTER INSERT ON %s FOR EACH ROW %s '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation,
                              'WHEN (' || pg_catalog.replace(only_rows, '{row}', 'NEW') || ')', arguments);
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_update AFTER UPDATE ON %s FOR EACH ROW WHEN (%s%s) '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation, changed,
                              ' AND (' || pg_catalog.replace(only_rows, '{row}', 'NEW') || ')', arguments);
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_delete AFTER DELETE ON %s FOR EACH ROW %s '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation,
                              'WHEN (' || pg_catalog.replace(only_rows, '{row}', 'OLD') || ')', arguments);
END
$$;
COMMENT ON PROCEDURE flows.audit(regclass, text, text[], text) IS
    'Audits a table: its inserts, updates (ignoring ignored_columns) and deletes go to flows.audit_log.';

-- ---- schema/monitoring.sql ----
-- What Prometheus scrapes about the business (deploy/prometheus/
-- postgres-exporter-queries.yaml reads these views as flows_monitor). Counts
-- per ESCO code and command kind only, never a customer's data. The views run
-- with their owner's rights (not security_invoker): the exporter sees every
-- ESCO, and nothing else but these views.

-- The command queue per kind: how deep, and how long the oldest has waited.
CREATE VIEW monitoring.command_queue AS
SELECT k.kind,
       count(c.id) FILTER (WHERE c.status = 'pending') AS pending,
       count(c.id) FILTER (WHERE c.status = 'pending' AND c.run_at <= now()) AS due,
       count(c.id) FILTER (WHERE c.status = 'running') AS running,
       coalesce(extract(epoch FROM now() - min(c.run_at) FILTER (WHERE c.status = 'pending' AND c.run_at <= now())),
                0) AS oldest_due_seconds,
       coalesce(extract(epoch FROM now() - min(c.created_at) FILTER (WHERE c.status = 'pending')), 0)
           AS oldest_pending_seconds
FROM (VALUES ('sync'), ('send_token'), ('set_future_tariff'), ('read_profile_log'), ('set_clock')) AS k (kind)
LEFT JOIN flows.meter_commands AS c ON c.kind = k.kind AND c.status IN ('pending', 'running')
GROUP BY k.kind;

-- The fleet per ESCO: active meters, unhealthy, offline (no contact for 3
-- hours), never contacted, low on credit, and the credit they hold.
CREATE VIEW monitoring.fleet AS
SELECT e.code AS esco,
       count(m.id) AS meters,
       count(m.id) FILTER (WHERE s.health = 'unhealthy') AS unhealthy,
       count(m.id) FILTER (WHERE s.last_healthy_at < now() - interval '3 hours') AS offline,
       count(m.id) FILTER (WHERE s.last_healthy_at IS NULL) AS never_contacted,
       count(m.id) FILTER (WHERE m.prepay_enabled AND s.balance < e.low_balance_threshold) AS low_balance,
       coalesce(sum(s.balance) FILTER (WHERE m.prepay_enabled), 0) AS balance_gbp
FROM flows.escos AS e
LEFT JOIN flows.meter_registry AS m ON m.esco = e.id AND m.mode = 'active'
LEFT JOIN flows.meter_shadows AS s ON s.id = m.id
GROUP BY e.code;

-- Commands that ended in the last hour per ESCO and kind: done and failed
-- (the sync success rate is done / (done + failed)), and top-up money. The
-- index keeps each scrape to the last hour's rows as the table grows.
CREATE INDEX meter_commands_finished_idx ON flows.meter_commands (finished_at) WHERE finished_at IS NOT NULL;
CREATE VIEW monitoring.command_outcomes AS
SELECT e.code AS esco, k.kind,
       count(c.id) FILTER (WHERE c.status = 'done') AS done_last_hour,
       count(c.id) FILTER (WHERE c.status = 'failed') AS failed_last_hour,
       coalesce(sum((c.parameters ->> 'amount')::numeric) FILTER (WHERE c.status = 'done'), 0)
           AS credited_gbp_last_hour
FROM flows.escos AS e
CROSS JOIN (VALUES ('sync'), ('send_token'), ('set_future_tariff'), ('read_profile_log'), ('set_clock')) AS k (kind)
LEFT JOIN flows.meter_commands AS c
       ON c.esco = e.id AND c.kind = k.kind AND c.finished_at > now() - interval '1 hour'
GROUP BY e.code, k.kind;

-- Tariff rollouts still running or finished in the last day: how far each got.
CREATE VIEW monitoring.tariff_rollouts AS
SELECT e.code AS esco, c.batch_id::text AS rollout_id,
       count(*) AS meters,
       count(*) FILTER (WHERE c.status = 'done') AS confirmed,
       count(*) FILTER (WHERE c.status = 'failed') AS failed,
       count(*) FILTER (WHERE c.status IN ('pending', 'running')) AS in_progress
FROM flows.meter_commands AS c
JOIN flows.escos AS e ON e.id = c.esco
WHERE c.kind = 'set_future_tariff' AND c.batch_id IS NOT NULL
GROUP BY e.code, c.batch_id
HAVING count(*) FILTER (WHERE c.status IN ('pending', 'running')) > 0
    OR max(c.finished_at) > now() - interval '1 day';

-- ---- rls/request_checks.sql ----
-- The check PostgREST runs before every request (postgrest.conf db-pre-request),
-- for what PostgREST 12.0.2 does not check itself:
--   * a token without an expiry (exp) is refused: a leaked one would work forever;
--   * with an audience configured (app.settings.jwt_aud, the same value as
--     PostgREST's jwt-aud), a token without that aud is refused;
--   * an API key's token (claim "api_key") works only while its key is live:
--     not revoked, not expired, same ESCO and role as when it was minted.
-- SECURITY DEFINER to read api_keys, which callers cannot.
CREATE FUNCTION flows.check_request() RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    audience text := nullif(pg_catalog.current_setting('app.settings.jwt_aud', true), '');
BEGIN
    IF NOT claims ? 'role' OR claims ->> 'role' = 'flows_anon' THEN
        RETURN;  -- no token: the anonymous role, which may call /rpc/health only
    END IF;
    IF NOT claims ? 'exp' THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = 'the token has no expiry (exp claim) and is refused',
            HINT = 'mint tokens with an expiry (flows token --expires 12h); integrations use API keys '
                   '(flows api-key create), which can be revoked';
    END IF;
    IF audience IS NOT NULL AND NOT coalesce(claims -> 'aud' = pg_catalog.to_jsonb(audience)
            OR (pg_catalog.jsonb_typeof(claims -> 'aud') = 'array' AND claims -> 'aud' ? audience), false) THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = pg_catalog.format('the token is not for this API: its aud claim must be %s', audience),
            HINT = 'mint tokens with the configured audience (FLOWS_JWT_AUD)';
    END IF;
    IF claims ? 'api_key' AND NOT EXISTS (
        SELECT FROM flows.api_keys AS k
        JOIN flows.escos AS e ON e.id = k.esco
        WHERE k.id::text = claims ->> 'api_key' AND k.revoked_at IS NULL AND k.expires_at > pg_catalog.now()
          AND k.role = claims ->> 'role' AND e.code = claims ->> 'esco') THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = 'this API key is revoked, expired or unknown',
            HINT = 'ask an operator of your ESCO for a new key (flows api-key create)';
    END IF;
END
$$;
COMMENT ON FUNCTION flows.check_request() IS
    'PostgREST db-pre-request: refuses tokens without exp or the configured aud, and revoked API keys.';

-- ---- rpc/api_keys.sql ----
-- API keys of an ESCO: listed and revoked through the API, minted by
-- `flows api-key create` (the JWT needs the signing secret, which the database
-- never holds).

CREATE VIEW api.api_keys WITH (security_invoker = true) AS
SELECT id, esco, name, role, created_by, created_at, expires_at, revoked_at, revoked_by,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
            WHEN expires_at <= now() THEN 'expired'
            ELSE 'live' END AS status
FROM flows.api_keys;
COMMENT ON VIEW api.api_keys IS
    'Long-lived credentials of integrations, one ESCO each (the token itself is never stored). '
    'Revoke with rpc/revoke_api_key.';
COMMENT ON COLUMN api.api_keys.role IS 'flows_operator (reads and writes) or flows_analyst (reads).';

CREATE FUNCTION api.revoke_api_key(id uuid) RETURNS SETOF api.api_keys
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.api_keys AS k
    SET revoked_at = pg_catalog.now(), revoked_by = flows.requester()
    WHERE k.id = revoke_api_key.id AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE SQLSTATE 'PT404' USING  -- HTTP 404 through PostgREST
            MESSAGE = pg_catalog.format('no live API key %s', revoke_api_key.id),
            HINT = 'list keys with GET /api_keys; a revoked key stays revoked';
    END IF;
    RETURN QUERY SELECT * FROM api.api_keys AS k WHERE k.id = revoke_api_key.id;
END
$$;
COMMENT ON FUNCTION api.revoke_api_key(uuid) IS 'Revokes an API key: requests with it are refused from now on.';

-- Records a new key (the CLI then signs its token). Invoker's rights: the
-- caller must be allowed to write the ESCO's keys.
CREATE FUNCTION flows.create_api_key(p_esco_code text, p_name text, p_role text, p_expires_at timestamptz)
RETURNS flows.api_keys
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid;
    created flows.api_keys;
BEGIN
    SELECT e.id INTO esco_id FROM flows.escos AS e WHERE e.code = p_esco_code;
    IF esco_id IS NULL THEN
        RAISE EXCEPTION 'no ESCO with code %', p_esco_code USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_role NOT IN ('flows_operator', 'flows_analyst') THEN
        RAISE EXCEPTION 'an API key is for role operator or analyst, got %', p_role
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'keys are scoped to one ESCO; admin and service roles see every ESCO';
    END IF;
    IF p_expires_at IS NULL OR p_expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'an API key needs an expiry in the future' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO flows.api_keys (esco, name, role, created_by, expires_at)
    VALUES (esco_id, p_name, p_role, flows.requester(), p_expires_at)
    RETURNING * INTO created;
    RETURN created;
END
$$;

-- ---- rpc/audit_log.sql ----
CREATE VIEW api.audit_log WITH (security_invoker = true) AS
SELECT id, at, esco, relation, operation, row_key, before, after, actor_sub, actor_role, actor_esco, api_key,
       request_id, transaction_id
FROM flows.audit_log;
COMMENT ON VIEW api.audit_log IS
    'Who changed what and when: configuration, commands (top-ups, tariffs), logins and API keys of your ESCO. '
    'Filter e.g. ?relation=eq.flows.meter_registry&row_key->>id=eq.<meter id>&order=id.desc.';
COMMENT ON COLUMN api.audit_log.row_key IS 'Primary key of the changed row, e.g. {"id": "..."}.';
COMMENT ON COLUMN api.audit_log.before IS 'The row before the change (null for an insert).';
COMMENT ON COLUMN api.audit_log.after IS 'The row after the change (null for a delete).';
COMMENT ON COLUMN api.audit_log.actor_sub IS 'The token''s subject (sub claim): who made the change.';
COMMENT ON COLUMN api.audit_log.request_id IS 'X-Request-Id of the HTTP request, to find it in the proxy''s logs.';

-- ---- schema/audit_registry.sql ----
-- Which tables are audited: one line per table (flows.audit, schema/audit.sql).
-- Loaded after every table; a new table of configuration or money adds its
-- line here (and the same line in its migration).

-- Tenants, configuration and topology.
CALL flows.audit('flows.escos', esco_column => 'id');
CALL flows.audit('flows.sites');
CALL flows.audit('flows.properties');
CALL flows.audit('flows.feeder_registry');
CALL flows.audit('flows.service_head_registry');
CALL flows.audit('flows.properties_service_head');
CALL flows.audit('flows.service_head_meter');
CALL flows.audit('flows.circuits');
CALL flows.audit('flows.circuit_register');
CALL flows.audit('flows.meter_registry');
CALL flows.audit('flows.meter_registers');
CALL flows.audit('flows.meter_metrics', esco_column => NULL);

-- Customers and what they pay (the invitation token is a credential: never copied).
CALL flows.audit('billing.esco_billing', ignored_columns => '{last_account_number,last_invoice_number}');
CALL flows.audit('billing.customers', ignored_columns => '{updated_at,invite_token}');
CALL flows.audit('billing.accounts');
CALL flows.audit('billing.customer_accounts');
CALL flows.audit('billing.contracts');
CALL flows.audit('billing.benchmark_tariffs', esco_column => NULL);
CALL flows.audit('billing.microgrid_tariffs');
CALL flows.audit('billing.customer_tariffs');

-- Requested commands: top-ups (money), tariffs, syncs and clock settings people
-- asked for, and how each went (status changes); the scheduler's own syncs and
-- lease renewals are not audited.
CALL flows.audit('flows.meter_commands', ignored_columns => '{updated_at,lease_expires_at}',
                 only_rows => '{row}.requested_by <> ''scheduler''');

-- Logins and credentials.
CALL flows.audit('flows.sql_login_claims', esco_column => NULL);
CALL flows.audit('flows.api_keys');

-- ---- rls/privileges.sql (operations) ----
-- == Operations: request checks, audit trail, API keys, monitoring =========

-- PostgREST runs the request check (db-pre-request) as the request's role, anonymous included.
GRANT USAGE ON SCHEMA flows TO flows_anon;
GRANT EXECUTE ON FUNCTION flows.check_request()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- The audit trail: written only by its trigger (a definer function); read by
-- admins (every ESCO) and operators (their ESCO). Nobody may change or remove
-- a row, the owner included.
GRANT SELECT ON flows.audit_log, api.audit_log TO flows_admin, flows_operator;
REVOKE UPDATE, DELETE, TRUNCATE ON flows.audit_log FROM flows_owner;

-- API keys: operators list and revoke their ESCO's; `flows api-key create` records them as an admin.
GRANT SELECT ON flows.api_keys, api.api_keys TO flows_admin, flows_operator;
GRANT INSERT ON flows.api_keys TO flows_admin;
GRANT UPDATE (revoked_at, revoked_by) ON flows.api_keys TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION api.revoke_api_key(uuid) TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION flows.create_api_key(text, text, text, timestamptz) TO flows_admin;

-- The exporter's login reads the monitoring views only.
GRANT USAGE ON SCHEMA monitoring TO flows_monitor;
GRANT SELECT ON monitoring.command_queue, monitoring.fleet, monitoring.command_outcomes, monitoring.tariff_rollouts
    TO flows_monitor;

-- ---- rls/policies.sql (operations) ----
-- == Operations: audit trail, API keys =====================================

-- The audit trail: admins read every ESCO's, operators their own ESCO's.
ALTER TABLE flows.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_admin ON flows.audit_log FOR SELECT TO flows_admin
    USING (true);
CREATE POLICY audit_log_own_esco ON flows.audit_log FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_keys_admin ON flows.api_keys TO flows_admin
    USING (true);
CREATE POLICY api_keys_own_esco ON flows.api_keys FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY api_keys_revoke_own_esco ON flows.api_keys FOR UPDATE TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));

-- Rollback of 0023_sync_speed: every insert into payments, refunds and the outbox wakes their job (as 0011 and
-- 0012 made it); every inserted balance recomputes its days, as 0021_daily_ledger made it.
SET LOCAL ROLE flows_owner;

CREATE OR REPLACE FUNCTION flows.meter_ledger_days_follow_balances() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- whoever writes the rows (a worker, an operator) keeps the days, which nobody writes directly
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.refresh_meter_ledger_days_of_balances(array_agg(n.meter_id), array_agg(n."timestamp"))
    FROM new_rows AS n;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.meter_ledger_days_follow_balances() IS
    'Trigger: keeps flows.meter_ledger_days exact when balance observations are inserted.';
CREATE OR REPLACE FUNCTION flows.add_to_interval_rollups(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_estimated    boolean
) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH daily AS (
        SELECT x.register_id, flows.uk_day(x.ts) AS day, coalesce(sum(x.import_kwh), 0) AS import_kwh,
               coalesce(sum(x.export_kwh), 0) AS export_kwh, count(*) AS intervals
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS x (register_id, ts, import_kwh, export_kwh)
        GROUP BY 1, 2
    ),
    added_days AS (
        INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
        SELECT daily.*, CASE WHEN p_estimated THEN daily.intervals ELSE 0 END FROM daily ORDER BY register_id, day
        ON CONFLICT (register_id, day) DO UPDATE
            SET import_kwh = d.import_kwh + excluded.import_kwh,
                export_kwh = d.export_kwh + excluded.export_kwh,
                intervals = d.intervals + excluded.intervals,
                estimated = d.estimated + excluded.estimated
    )
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT register_id, flows.uk_month(day), sum(import_kwh), sum(export_kwh), sum(intervals)
    FROM daily GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = m.import_kwh + excluded.import_kwh,
            export_kwh = m.export_kwh + excluded.export_kwh,
            intervals = m.intervals + excluded.intervals;
    -- The ledger's days whose last observation's tail the new half hours may reach (a day of the batch's meters,
    -- from its first day to its last, with half hours from its last observation's on): recomputed. (Half hours
    -- estimated from reads end before the read, which comes with its balance: they do not.)
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM flows.meter_ledger_days AS s
    WHERE s.meter_id IN (SELECT r.meter_id FROM flows.meter_registers AS r WHERE r.register_id = ANY (p_register_ids))
      AND s.day BETWEEN (SELECT flows.uk_day(min(t)) FROM unnest(p_timestamps) AS t)
                    AND (SELECT flows.uk_day(max(t)) FROM unnest(p_timestamps) AS t)
      AND EXISTS (SELECT FROM flows.meter_registers AS r
                  JOIN flows.register_interval_hh AS h ON h.register_id = r.register_id
                  WHERE r.meter_id = s.meter_id AND h."timestamp" > s.last_at - interval '30 minutes'
                    AND h."timestamp" < flows.uk_day_start(s.day + 1));
END;
DROP FUNCTION flows.append_to_meter_ledger_days(uuid[], timestamptz[], numeric[]);
DROP TRIGGER payments_notify ON billing.payments;
DROP TRIGGER refunds_notify ON billing.refunds;
CREATE OR REPLACE FUNCTION billing.notify_processor_work() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('billing_processor_work', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER payments_notify AFTER INSERT ON billing.payments
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
CREATE TRIGGER refunds_notify AFTER INSERT ON billing.refunds
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
DROP TRIGGER notification_outbox_doorbell ON flows.notification_outbox;
CREATE OR REPLACE FUNCTION flows.ring_notification_senders() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('flows_notifications', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_outbox_doorbell AFTER INSERT ON flows.notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION flows.ring_notification_senders();
CREATE OR REPLACE FUNCTION flows.claim_meter_commands_v2(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
RETURNS TABLE (
    id uuid, kind text, parameters jsonb, attempt smallint, max_attempts smallint, progress jsonb,
    meter_id uuid, serial text, ip_address inet, emop_port integer, hardware text, three_phase boolean,
    esco_code text, registers jsonb, created_at timestamptz, lease_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    global_limit text := nullif(pg_catalog.current_setting('flows.max_running_commands', true), '');
    global_free bigint;
    me flows.workers;
BEGIN
    IF global_limit !~ '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'flows.max_running_commands must be a whole number, got %', global_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO me FROM flows.workers AS w WHERE w.name = p_worker;
    IF me.drain_requested_at IS NOT NULL OR me.stopped_at IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(flows.lock_key('command_claims'), 0);
    PERFORM flows.expire_meter_commands();
    SELECT global_limit::integer - count(*) INTO global_free
    FROM flows.meter_commands AS r WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now();
    IF least(p_limit, global_free) < 1 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT c.id, c.meter_id, c.esco, c.kind, c.run_at, c.created_at, c.status = 'running' AS orphaned,
               flows.command_priority(c.kind) AS priority
        FROM flows.meter_commands AS c
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
        FOR UPDATE OF c SKIP LOCKED
    ),
    busy AS (  -- meters with a live command
        SELECT DISTINCT r.meter_id
        FROM flows.meter_commands AS r
        WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now()
    ),
    room AS (  -- per ESCO, how many more may run
        SELECT e.id AS esco,
               e.max_running_commands - (SELECT count(*) FROM flows.meter_commands AS r
                                         WHERE r.esco = e.id AND r.status = 'running'
                                           AND r.lease_expires_at >= pg_catalog.now()) AS free
        FROM flows.escos AS e
        WHERE me.escos IS NULL OR e.id = ANY (me.escos)
    ),
    one_per_meter AS (  -- a command a dead worker left half done goes first: it may need reconciling
        SELECT DISTINCT ON (d.meter_id) d.id, d.esco, d.kind, d.priority, d.run_at, d.created_at
        FROM due AS d
        JOIN flows.meter_registry AS m ON m.id = d.meter_id
        WHERE m.mode = 'active' AND NOT EXISTS (SELECT FROM busy AS b WHERE b.meter_id = d.meter_id)
        ORDER BY d.meter_id, d.orphaned DESC, d.priority, d.run_at, d.created_at
    ),
    chosen AS (
        SELECT o.id
        FROM (SELECT o.*, row_number() OVER (PARTITION BY o.esco ORDER BY o.priority, o.run_at, o.created_at) AS n
              FROM one_per_meter AS o
              WHERE o.kind <> 'emop_session') AS o
        JOIN room AS r ON r.esco = o.esco
        WHERE o.n <= r.free
        ORDER BY o.priority, o.run_at, o.created_at
        LIMIT least(p_limit, global_free)
    )
    UPDATE flows.meter_commands AS c
    SET status = 'running',
        attempts = c.attempts + 1,
        lease_owner = p_worker,
        lease_expires_at = pg_catalog.now() + p_lease,
        started_at = coalesce(c.started_at, pg_catalog.now())
    FROM chosen AS ch, flows.meter_registry AS m, flows.escos AS e
    WHERE c.id = ch.id AND m.id = c.meter_id AND e.id = c.esco
    RETURNING c.id, c.kind, c.parameters, c.attempts, c.max_attempts, c.progress,
              m.id, m.serial, m.ip_address, m.emop_port, m.hardware, flows.is_three_phase(m), e.code,
              (SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
                          'register_id', r.register_id, 'direction_reversed', r.direction_reversed)), '{}')
               FROM flows.meter_registers AS r WHERE r.meter_id = m.id AND r.status = 'enabled'),
              c.created_at, c.lease_expires_at;
END
$$;
DROP TRIGGER audit_insert ON flows.meter_commands;
DROP TRIGGER audit_update ON flows.meter_commands;
DROP TRIGGER audit_delete ON flows.meter_commands;
DROP PROCEDURE flows.audit(regclass, text, text[], text, boolean);
DROP FUNCTION flows.audit_statement();
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
CALL flows.audit('flows.meter_commands', ignored_columns => '{updated_at,lease_expires_at}',
                 only_rows => '{row}.requested_by <> ''scheduler''');

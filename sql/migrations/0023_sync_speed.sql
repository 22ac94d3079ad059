-- 0023_sync_speed: what a worker's sync costs PostgreSQL (docs/workers.md, Speed).
-- - The payments job and the notification senders are woken only by statements that inserted rows (the
--   money pass inserted none at every pass, and the wake-up for none started the next pass at once: a pass
--   every few milliseconds, for ever, in every worker).
-- - A balance observation that is its meter's latest, with credit (what every sync records), extends its
--   UK day in flows.meter_ledger_days from the row kept and its own half hours instead of recomputing the
--   day from every observation of it; any other write still recomputes. New half hours recompute only the
--   days whose tails they fall in (every day of the batch's meters from its first day to its last was
--   probed, each a lookup of half hours). Same rows.
-- - Commands are audited per statement (flows.audit's per_statement, flows.audit_statement): one INSERT into
--   the audit log for the 2,000 commands a fleet's sync requests, claims or finishes at once, not a trigger
--   call and an INSERT per row.
-- - A claim locks only the commands it chose: it locked every due command at each claim, the whole queue
--   when it is longer than the free slots (the scheduler's hourly syncs of a large fleet).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/recording/ledger_days.sql ----
-- The common case, cheaply: a meter's one new observation in a statement,
-- later than every observation kept of it and with credit (above zero it
-- splits its half hour at its own time, and no later day looks back to it),
-- extends its UK day's row or starts the day's: the counts and extremes from
-- the row kept, the tail from its own half hours alone. Returns the meters it
-- extended; anything else is recomputed (flows.refresh_meter_ledger_days_of_balances).
CREATE FUNCTION flows.append_to_meter_ledger_days(p_meter_ids uuid[], p_timestamps timestamptz[],
                                                  p_balances numeric[])
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- called for every batch a worker records: cheaper to run than to plan
AS $$
DECLARE
    appended uuid[];
BEGIN
    WITH observed AS (
        SELECT x.meter_id, x.at, x.balance, flows.uk_day(x.at) AS day, count(*) OVER (PARTITION BY x.meter_id) AS n
        FROM unnest(p_meter_ids, p_timestamps, p_balances) AS x (meter_id, at, balance)
    ), appended AS (
        SELECT o.meter_id, o.at, o.balance, o.day, flows.uk_day_start(o.day) AS starts,
               flows.uk_day_start(o.day + 1) AS ends
        FROM observed AS o
        WHERE o.n = 1 AND o.balance > 0
          AND NOT EXISTS (SELECT FROM flows.meter_ledger_days AS s WHERE s.meter_id = o.meter_id AND s.day >= o.day
                                                                     AND s.last_at >= o.at)
    ), extended AS (
        INSERT INTO flows.meter_ledger_days AS s (
            meter_id, day, observations, first_at, first_balance, last_at, last_balance, lowest, rises,
            tail_kwh_a, tail_kwh_b, tail_overlapping, tail_after)
        SELECT a.meter_id, a.day, 1, a.at, a.balance, a.at, a.balance, a.balance, false,
               coalesce(t.kwh_a, 0), coalesce(t.kwh_b, 0), coalesce(t.overlapping, 0), coalesce(t.after, 0)
        FROM appended AS a
        LEFT JOIN LATERAL (  -- as flows.refresh_meter_ledger_days, split at the observation's own time
            SELECT sum(h.kwh * h.share) FILTER (WHERE r.element <> 'B') AS kwh_a,
                   sum(h.kwh * h.share) FILTER (WHERE r.element = 'B') AS kwh_b,
                   count(*)::integer AS overlapping, (count(*) FILTER (WHERE h.hh >= a.at))::integer AS after
            FROM flows.meter_registers AS r
            JOIN LATERAL (
                SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh,
                       extract(epoch FROM i."timestamp" + interval '30 minutes' - greatest(i."timestamp", a.at))
                       / 1800 AS share
                FROM flows.register_interval_hh AS i
                WHERE i.register_id = r.register_id AND i."timestamp" > a.at - interval '30 minutes'
                  AND i."timestamp" >= a.starts AND i."timestamp" < a.ends
                  AND i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
            ) AS h ON true
            WHERE r.meter_id = a.meter_id
        ) AS t ON true
        ORDER BY a.meter_id
        ON CONFLICT (meter_id, day) DO UPDATE
            SET observations = s.observations + 1, last_at = excluded.last_at, last_balance = excluded.last_balance,
                lowest = least(s.lowest, excluded.lowest), rises = s.rises OR excluded.last_balance > s.last_balance,
                tail_kwh_a = excluded.tail_kwh_a, tail_kwh_b = excluded.tail_kwh_b,
                tail_overlapping = excluded.tail_overlapping, tail_after = excluded.tail_after
            WHERE s.last_at < excluded.last_at  -- the row as it is now: one written meanwhile goes the long way
        RETURNING s.meter_id
    )
    SELECT array_agg(e.meter_id) INTO appended FROM extended AS e;
    RETURN appended;
END
$$;
COMMENT ON FUNCTION flows.append_to_meter_ledger_days(uuid[], timestamptz[], numeric[]) IS
    'Adds to flows.meter_ledger_days a meter''s one new balance observation that is its latest, with credit; '
    'returns the meters it did (their days stay exact without a recomputation).';

-- Balances written by anyone (flows.record_meter_states, a correction, the
-- retention's deletion): inserted, a statement trigger (the rows as a
-- transition table: a meter's latest observation with credit appended, the
-- rest recomputed); updated or deleted (rare), a row trigger.
CREATE OR REPLACE FUNCTION flows.meter_ledger_days_follow_balances() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- whoever writes the rows (a worker, an operator) keeps the days, which nobody writes directly
SET search_path = ''
AS $$
DECLARE
    appended uuid[];
BEGIN
    SELECT flows.append_to_meter_ledger_days(array_agg(n.meter_id), array_agg(n."timestamp"), array_agg(n.balance))
    INTO appended FROM new_rows AS n;
    IF EXISTS (SELECT FROM new_rows AS n WHERE appended IS NULL OR n.meter_id <> ALL (appended)) THEN
        PERFORM flows.refresh_meter_ledger_days_of_balances(array_agg(n.meter_id), array_agg(n."timestamp"))
        FROM new_rows AS n
        WHERE appended IS NULL OR n.meter_id <> ALL (appended);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.meter_ledger_days_follow_balances() IS
    'Trigger: keeps flows.meter_ledger_days exact when balance observations are inserted.';

-- ---- schema/recording/interval_rollups.sql ----
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
    -- The ledger's days whose last observation's tail the new half hours reach (a new half hour of the meter on
    -- the day, after its last observation's half hour began): recomputed. (Half hours estimated from reads end
    -- before the read, which comes with its balance: they do not.)
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM (SELECT r.meter_id, flows.uk_day(x.ts) AS day, max(x.ts) AS latest
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)
          JOIN flows.meter_registers AS r ON r.register_id = x.register_id
          GROUP BY 1, 2) AS b
    JOIN flows.meter_ledger_days AS s ON s.meter_id = b.meter_id AND s.day = b.day
    WHERE b.latest > s.last_at - interval '30 minutes';
END;

-- ---- schema/billing/payments.sql ----
CREATE OR REPLACE FUNCTION billing.notify_processor_work() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_rows) THEN
        PERFORM pg_catalog.pg_notify('billing_processor_work', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER payments_notify ON billing.payments;
DROP TRIGGER refunds_notify ON billing.refunds;
CREATE TRIGGER payments_notify AFTER INSERT ON billing.payments REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
CREATE TRIGGER refunds_notify AFTER INSERT ON billing.refunds REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();

-- ---- schema/notifications/outbox.sql ----
CREATE OR REPLACE FUNCTION flows.ring_notification_senders() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_rows) THEN
        PERFORM pg_catalog.pg_notify('flows_notifications', '');
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER notification_outbox_doorbell ON flows.notification_outbox;
CREATE TRIGGER notification_outbox_doorbell AFTER INSERT ON flows.notification_outbox REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flows.ring_notification_senders();

-- ---- schema/commands.sql ----
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
    WITH due AS MATERIALIZED (  -- read once by its indexes, whatever the statistics say of a queue just filled
        SELECT c.id, c.meter_id, c.esco, c.kind, c.run_at, c.created_at, c.status = 'running' AS orphaned,
               flows.command_priority(c.kind) AS priority
        FROM flows.meter_commands AS c
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
    ),
    busy AS (  -- meters with a live command
        SELECT DISTINCT r.meter_id
        FROM flows.meter_commands AS r
        WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now()
    ),
    room AS MATERIALIZED (  -- per ESCO, how many more may run (counted once, whatever the plan)
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
    ),
    locked AS (  -- still due once locked (a row changed meanwhile is read again as it is now)
        SELECT c.id
        FROM flows.meter_commands AS c
        JOIN chosen AS ch ON ch.id = c.id
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
        FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE flows.meter_commands AS c
    SET status = 'running',
        attempts = c.attempts + 1,
        lease_owner = p_worker,
        lease_expires_at = pg_catalog.now() + p_lease,
        started_at = coalesce(c.started_at, pg_catalog.now())
    FROM locked AS ch, flows.meter_registry AS m, flows.escos AS e
    WHERE c.id = ch.id AND m.id = c.meter_id AND e.id = c.esco
    RETURNING c.id, c.kind, c.parameters, c.attempts, c.max_attempts, c.progress,
              m.id, m.serial, m.ip_address, m.emop_port, m.hardware, flows.is_three_phase(m), e.code,
              (SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
                          'register_id', r.register_id, 'direction_reversed', r.direction_reversed)), '{}')
               FROM flows.meter_registers AS r WHERE r.meter_id = m.id AND r.status = 'enabled'),
              c.created_at, c.lease_expires_at;
END
$$;

-- ---- schema/audit.sql, schema/audit_registry.sql ----
-- The audit trigger of a table written in bulk (flows.audit's per_statement):
-- one INSERT for every row a statement changed, from its transition tables;
-- an update's old and new rows are paired by primary key, which such a table
-- never changes. Arguments (set by flows.audit): the ESCO column ('' for
-- none), the ignored columns (an array literal), the rows' condition with
-- {row} ('' for every row), then the primary key columns.
CREATE FUNCTION flows.audit_statement() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET enable_nestloop = off  -- transition tables have no statistics: old and new rows paired by a hash, not n x n
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    request_id text;
    image text := CASE TG_OP WHEN 'DELETE' THEN 'o' ELSE 'n' END;  -- the row the key, ESCO and condition read
    row_key text;
    pairing text;
BEGIN
    SELECT string_agg(pg_catalog.format('%L, %s.%I', k, image, k), ', '),
           string_agg(pg_catalog.format('n.%1$I = o.%1$I', k), ' AND ')
    INTO row_key, pairing
    FROM unnest(TG_ARGV[3:TG_NARGS - 1]) AS k;
    IF session_user = 'flows_authenticator' THEN  -- only PostgREST's headers are the client's
        request_id := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb ->> 'x-request-id';
    END IF;
    EXECUTE pg_catalog.format(
        'INSERT INTO flows.audit_log (esco, relation, operation, row_key, before, after, actor_sub, actor_role,'
        ' actor_esco, api_key, request_id, db_user, transaction_id)'
        ' SELECT %s, %L, %L, pg_catalog.jsonb_build_object(%s), %s, %s, $1 ->> ''sub'','
        ' coalesce($1 ->> ''role'', session_user::text), $1 ->> ''esco'','
        ' CASE WHEN $1 ->> ''api_key'' ~ ''^[0-9a-f-]{36}$'' THEN ($1 ->> ''api_key'')::uuid END, $2,'
        ' session_user::text, pg_catalog.txid_current()'
        ' FROM %s WHERE %s AND %s',
        CASE WHEN TG_ARGV[0] = '' THEN 'NULL::uuid' ELSE pg_catalog.format('%s.%I::uuid', image, TG_ARGV[0]) END,
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_key,
        CASE WHEN TG_OP = 'INSERT' THEN 'NULL' ELSE 'pg_catalog.to_jsonb(o)' END,
        CASE WHEN TG_OP = 'DELETE' THEN 'NULL' ELSE 'pg_catalog.to_jsonb(n)' END,
        CASE TG_OP WHEN 'INSERT' THEN 'new_rows AS n' WHEN 'DELETE' THEN 'old_rows AS o'
                   ELSE 'old_rows AS o JOIN new_rows AS n ON ' || pairing END,
        CASE WHEN TG_OP = 'UPDATE'
             THEN pg_catalog.format('(pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.-) %1$L::text[]) IS DISTINCT FROM '
                                    '(pg_catalog.to_jsonb(n) OPERATOR(pg_catalog.-) %1$L::text[])', TG_ARGV[1])
             ELSE 'true' END,
        coalesce(nullif(pg_catalog.replace(TG_ARGV[2], '{row}', image), ''), 'true'))
    USING claims, pg_catalog.left(request_id, 200);
    RETURN NULL;
END
$$;
DROP PROCEDURE flows.audit(regclass, text, text[], text);

-- Attaches the audit trail to a table: the one call sql/schema/audit_registry.sql
-- makes per audited table (CALL flows.audit('flows.payments')).
--   esco_column      the column holding the row's ESCO (null: the row belongs to none)
--   ignored_columns  an UPDATE that changes only these is not audited (e.g. updated_at, leases)
--   only_rows        a condition on the row, written with {row} (e.g. '{row}.requested_by <> ''scheduler''')
--   per_statement    one trigger call per statement (flows.audit_statement) instead of one per row: for a
--                    table written thousands of rows at a time, whose primary key is never updated
CREATE PROCEDURE flows.audit(relation regclass, esco_column text DEFAULT 'esco',
                             ignored_columns text[] DEFAULT '{updated_at}', only_rows text DEFAULT NULL,
                             per_statement boolean DEFAULT false)
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
    IF per_statement THEN
        arguments := pg_catalog.format('%L, %L, %L, %s', coalesce(esco_column, ''), coalesce(ignored_columns, '{}'),
                                       coalesce(only_rows, ''), key_columns);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_update AFTER UPDATE ON %s '
                                  'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        RETURN;
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
COMMENT ON PROCEDURE flows.audit(regclass, text, text[], text, boolean) IS
    'Audits a table: its inserts, updates (ignoring ignored_columns) and deletes go to flows.audit_log.';
DROP TRIGGER audit_insert ON flows.meter_commands;
DROP TRIGGER audit_update ON flows.meter_commands;
DROP TRIGGER audit_delete ON flows.meter_commands;
CALL flows.audit('flows.meter_commands', ignored_columns => '{updated_at,lease_expires_at}', per_statement => true,
                 only_rows => '{row}.requested_by <> ''scheduler''');

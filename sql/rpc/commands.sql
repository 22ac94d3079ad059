-- Meter operations as commands: request them here, watch them in
-- /meter_commands, follow tariff rollouts in /tariff_rollouts.

CREATE VIEW api.meter_commands WITH (security_invoker = true) AS
SELECT id, esco, meter_id, kind, parameters, status, attempts, max_attempts, run_at, progress, result,
       last_error, idempotency_key, batch_id, requested_by, lease_owner, lease_expires_at,
       created_at, started_at, finished_at, updated_at
FROM flows.meter_commands;
COMMENT ON VIEW api.meter_commands IS
    'Operations on meters and how they went: pending, running, done (result), failed (last_error), cancelled. '
    'Embed the meter: ?select=*,meter_registry(serial).';
COMMENT ON COLUMN api.meter_commands.kind IS
    'sync, send_token, set_future_tariff, read_profile_log, set_clock, or emop_session (an operator''s emop CLI).';
COMMENT ON COLUMN api.meter_commands.progress IS 'How far a running command got (e.g. token vended, balance before).';
COMMENT ON COLUMN api.meter_commands.batch_id IS 'Commands requested together (e.g. one tariff rollout).';

CREATE VIEW api.tariff_rollouts WITH (security_invoker = true) AS
SELECT c.batch_id AS rollout_id,
       c.esco,
       min(c.created_at) AS requested_at,
       (array_agg(c.parameters -> 'tariff'))[1] AS tariff,
       count(*) AS meters,
       count(*) FILTER (WHERE c.status = 'done') AS confirmed,
       count(*) FILTER (WHERE c.status = 'failed') AS failed,
       count(*) FILTER (WHERE c.status IN ('pending', 'running')) AS in_progress,
       count(*) FILTER (WHERE c.status = 'cancelled') AS cancelled,
       coalesce((SELECT jsonb_object_agg(f.reason, f.meters) FROM (
                     SELECT x.last_error AS reason, count(*) AS meters FROM flows.meter_commands AS x
                     WHERE x.batch_id = c.batch_id AND x.status = 'failed' GROUP BY x.last_error) AS f),
                '{}') AS failure_reasons,
       format('%s of %s confirmed, %s failed%s', count(*) FILTER (WHERE c.status = 'done'), count(*),
              count(*) FILTER (WHERE c.status = 'failed'),
              coalesce(': ' || (SELECT string_agg(format('%s (%s)', f.reason, f.meters), '; ' ORDER BY f.meters DESC)
                                FROM (SELECT x.last_error AS reason, count(*) AS meters FROM flows.meter_commands AS x
                                      WHERE x.batch_id = c.batch_id AND x.status = 'failed'
                                      GROUP BY x.last_error) AS f), '')) AS summary
FROM flows.meter_commands AS c
WHERE c.kind = 'set_future_tariff' AND c.batch_id IS NOT NULL
GROUP BY c.batch_id, c.esco;
COMMENT ON VIEW api.tariff_rollouts IS
    'Tariff rollouts (set_future_tariff to many meters): how many meters confirmed the tariff, failed and why.';


-- Meters a request names, checked: visible to the caller, active (passive
-- meters are digital twins and never contacted) and, for prepayment
-- operations (p_prepay: tokens, tariffs), prepay meters: prepay_enabled and
-- single phase (three-phase Emlite meters have no prepayment or tariff
-- objects). Null: every such meter the caller can see (an operator's ESCO).
CREATE FUNCTION flows.meters_to_command(p_meter_ids uuid[], p_prepay boolean DEFAULT false)
RETURNS TABLE (meter_id uuid, esco uuid)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    problem text;
BEGIN
    IF p_meter_ids IS NULL THEN
        RETURN QUERY SELECT m.id, m.esco FROM flows.meter_registry AS m
                     WHERE m.mode = 'active' AND (NOT p_prepay OR (m.prepay_enabled AND NOT flows.is_three_phase(m)));
        RETURN;
    END IF;
    SELECT string_agg(pg_catalog.format('%s (%s)', x.id, CASE
               WHEN m.id IS NULL THEN 'no such meter'
               WHEN m.mode <> 'active' THEN 'passive: a digital twin, never contacted'
               WHEN flows.is_three_phase(m) THEN 'three phase: no prepayment or tariffs'
               ELSE 'prepayment disabled' END), ', ')
    INTO problem
    FROM unnest(p_meter_ids) AS x (id)
    LEFT JOIN flows.meter_registry AS m ON m.id = x.id
    WHERE m.id IS NULL OR m.mode <> 'active' OR (p_prepay AND (NOT m.prepay_enabled OR flows.is_three_phase(m)));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'cannot command meter %', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT DISTINCT m.id, m.esco FROM flows.meter_registry AS m WHERE m.id = ANY (p_meter_ids);
END
$$;

-- Queues one command for one meter the caller may command (flows.meters_to_command;
-- p_prepay: a prepayment operation) and returns it as /meter_commands shows it.
-- With p_idempotency_key, a request made before returns the command it made.
CREATE FUNCTION flows.queue_meter_command(p_meter_id uuid, p_kind text, p_parameters jsonb DEFAULT '{}',
                                          p_prepay boolean DEFAULT false, p_idempotency_key text DEFAULT NULL)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target record;
    command_id uuid;
BEGIN
    SELECT * INTO target FROM flows.meters_to_command(ARRAY[p_meter_id], p_prepay);
    IF p_idempotency_key IS NOT NULL THEN  -- the same request again: the same command
        SELECT c.id INTO command_id FROM flows.meter_commands AS c
        WHERE c.esco = target.esco AND c.idempotency_key = p_idempotency_key;
    END IF;
    IF command_id IS NULL THEN
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, idempotency_key, requested_by)
        VALUES (target.esco, target.meter_id, p_kind, p_parameters, p_idempotency_key, flows.requester())
        RETURNING id INTO command_id;
    END IF;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = command_id;
END
$$;


CREATE FUNCTION api.request_sync(meter_ids uuid[] DEFAULT NULL, metrics text[] DEFAULT NULL)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    unknown text;
    ids uuid[];
    requester text := flows.requester();  -- once, not once a meter
BEGIN
    SELECT string_agg(x, ', ') INTO unknown FROM unnest(metrics) AS x
    WHERE NOT EXISTS (SELECT FROM flows.meter_metrics AS m WHERE m.name = x);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown metric %', unknown USING ERRCODE = 'invalid_parameter_value',
            HINT = (SELECT 'metrics: ' || string_agg(m.name, ', ' ORDER BY m.name) FROM flows.meter_metrics AS m);
    END IF;
    WITH added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
        SELECT t.esco, t.meter_id, 'sync',
               pg_catalog.jsonb_build_object('metrics', pg_catalog.to_jsonb(coalesce(metrics, ARRAY(
                   SELECT m.name FROM flows.meter_metrics AS m WHERE m.enabled ORDER BY m.name)))),
               requester
        FROM flows.meters_to_command(meter_ids) AS t
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = ANY (ids);
END
$$;
COMMENT ON FUNCTION api.request_sync(uuid[], text[]) IS
    'Reads meters now: the named metrics (default all enabled, see meter_metrics) of the named meters '
    '(default every active meter of your ESCO). Returns the commands.';


CREATE FUNCTION api.send_token(
    meter_id        uuid,
    amount          numeric DEFAULT NULL,
    token           text DEFAULT NULL,
    source          text DEFAULT 'payment',
    idempotency_key text DEFAULT NULL
) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF (amount IS NULL) = (token IS NULL) THEN
        RAISE EXCEPTION 'give either amount (GBP, the token is vended) or token (20 digits)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF amount IS NOT NULL AND (amount < 0.01 OR amount > 1000 OR pg_catalog.scale(amount) > 2) THEN
        RAISE EXCEPTION 'amount must be between 0.01 and 1000 GBP, in pence; got %', amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF token IS NOT NULL AND token !~ '^[0-9]{20}$' THEN
        RAISE EXCEPTION 'token must be 20 digits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source NOT IN ('payment', 'gift', 'solar_credit', 'adjustment') THEN
        RAISE EXCEPTION 'source must be payment, gift, solar_credit or adjustment; got %', source
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM flows.queue_meter_command(
        send_token.meter_id, 'send_token',
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'amount', amount::text, 'token', token, 'source', source)),
        p_prepay => true, p_idempotency_key => send_token.idempotency_key);
END
$$;
COMMENT ON FUNCTION api.send_token(uuid, numeric, text, text, text) IS
    'Credits a meter: with amount (GBP) a token is vended for it, or give the 20-digit token. The balance is read '
    'before and after; a token is never pushed twice. idempotency_key makes retries of this request safe.';


CREATE FUNCTION api.set_future_tariff(tariff jsonb, meter_ids uuid[] DEFAULT NULL, whole_esco boolean DEFAULT false)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    batch uuid := CASE WHEN whole_esco OR pg_catalog.cardinality(meter_ids) > 1 THEN gen_random_uuid() END;
    ids uuid[];
    requester text := flows.requester();  -- once, not once a meter
BEGIN
    IF (meter_ids IS NULL) = (NOT whole_esco) THEN
        RAISE EXCEPTION 'give meter_ids, or whole_esco true (every active prepay meter of your ESCO)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM flows.tariff_is_valid(tariff, true);
    IF EXISTS (SELECT FROM unnest(ARRAY['standing_charge', 'unit_rate_element_a', 'prepayment_emergency_credit',
                                        'prepayment_ecredit_availability', 'prepayment_debt_recovery_rate']) AS k
               WHERE NOT tariff ? k) THEN
        RAISE EXCEPTION 'a future tariff for a meter needs standing_charge, unit_rate_element_a, '
                        'prepayment_emergency_credit, prepayment_ecredit_availability, '
                        'prepayment_debt_recovery_rate and activation_datetime (unit_rate_element_b defaults to a)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (tariff ->> 'activation_datetime')::timestamptz <= pg_catalog.now() THEN
        RAISE EXCEPTION 'future tariff activation_datetime must be in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF whole_esco AND flows.current_esco_id() IS NULL THEN
        RAISE EXCEPTION 'whole_esco needs a token for one ESCO (the esco claim)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, batch_id, requested_by)
        SELECT t.esco, t.meter_id, 'set_future_tariff', pg_catalog.jsonb_build_object('tariff', tariff), batch,
               requester
        FROM flows.meters_to_command(meter_ids, p_prepay => true) AS t
        WHERE NOT whole_esco OR t.esco = flows.current_esco_id()
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = ANY (ids);
END
$$;
COMMENT ON FUNCTION api.set_future_tariff(jsonb, uuid[], boolean) IS
    'Writes a future tariff (with activation_datetime) to meters, reads it back to confirm; one command per '
    'meter, grouped as a rollout (see tariff_rollouts). Ranges: standing charge 0-2 GBP/day, unit rates 0-1 GBP/kWh.';


CREATE FUNCTION api.read_profile_log(meter_id uuid, start_time timestamptz, end_time timestamptz)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF start_time >= end_time OR end_time > pg_catalog.now() + interval '1 hour'
       OR end_time - start_time > interval '31 days' THEN
        RAISE EXCEPTION 'start_time must be before end_time, at most 31 days apart, and not in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM flows.queue_meter_command(
        read_profile_log.meter_id, 'read_profile_log', pg_catalog.jsonb_build_object('from', start_time, 'to', end_time));
END
$$;
COMMENT ON FUNCTION api.read_profile_log(uuid, timestamptz, timestamptz) IS
    'Reads the meter''s half-hourly profile log for a time range (up to 31 days) into register_interval_hh.';


CREATE FUNCTION api.set_clock(meter_id uuid) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY SELECT * FROM flows.queue_meter_command(set_clock.meter_id, 'set_clock');
END
$$;
COMMENT ON FUNCTION api.set_clock(uuid) IS 'Sets the meter''s clock to the server''s (UTC) and records the drift.';


CREATE FUNCTION api.cancel_meter_command(id uuid) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.meter_commands AS c
    SET status = 'cancelled', finished_at = pg_catalog.now(), last_error = 'cancelled by ' || flows.requester()
    WHERE c.id = cancel_meter_command.id AND c.status = 'pending';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only a pending command can be cancelled (this one is %)',
            coalesce((SELECT c.status FROM flows.meter_commands AS c WHERE c.id = cancel_meter_command.id), 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = cancel_meter_command.id;
END
$$;
COMMENT ON FUNCTION api.cancel_meter_command(uuid) IS 'Cancels a command that has not started.';

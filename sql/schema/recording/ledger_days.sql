-- What the shadow prepay ledger (billing.shadow_ledger, docs/reconciliation.md)
-- needs of each meter's UK day with balance observations, kept as the raw rows
-- arrive so that a reconciliation reads one row per meter and day instead of
-- every balance observation and the half hours at the days' ends: the day's
-- observations (how many, the first and the last, the lowest, whether one rose)
-- and the energy after its last observation to the day's end (the *tail*: the
-- half hours from where the observation splits its half hour, billing.split_at,
-- kWh prorated, per rate: of element B, and of A or SINGLE). kWh, not money:
-- tariffs may be read after the half hours they price, so the ledger prices
-- the rows when it reads them; the days' energy it takes from the daily rollups.
--
-- Exact whatever order the raw rows come in: a row is recomputed from the raw
-- rows (flows.refresh_meter_ledger_days) for every meter and day whose
-- balances (the triggers below, whoever writes them), half hours from its last
-- observation on (the rollup functions every writer of half hours calls,
-- interval_rollups.sql) or registers change; and the next day with
-- observations when its only observation's split looks back to the changed day.
CREATE TABLE flows.meter_ledger_days (
    meter_id         uuid           NOT NULL REFERENCES flows.meter_registry (id) ON DELETE CASCADE,
    day              date           NOT NULL,
    observations     integer        NOT NULL,
    first_at         timestamptz    NOT NULL,
    first_balance    numeric(12, 5) NOT NULL,
    last_at          timestamptz    NOT NULL,
    last_balance     numeric(12, 5) NOT NULL,
    lowest           numeric(12, 5) NOT NULL,
    rises            boolean        NOT NULL,
    tail_kwh_a       numeric        NOT NULL,
    tail_kwh_b       numeric        NOT NULL,
    tail_overlapping integer        NOT NULL,
    tail_after       integer        NOT NULL,
    PRIMARY KEY (meter_id, day),
    CONSTRAINT meter_ledger_days_observed CHECK (observations > 0)
);
COMMENT ON TABLE flows.meter_ledger_days IS
    'Per meter and UK day with balance observations, from the raw rows (kept exact as they arrive): the '
    'observations (count, first, last, lowest, whether one rose above the one before it in the day) and the kWh '
    'after the last one to the day''s end per rate (the tail, prorated where billing.split_at splits its half '
    'hour; half hours overlapping, and starting at or after, the observation). What billing.shadow_ledger reads.';

-- Recomputes the rows of these meters' UK days (pairs of equal arrays) from
-- the raw rows: meter_prepay_balance, and register_interval_hh for the tails.
-- A day without observations has no row. The raw rows are read between the
-- first day's start and the last day's end only (bounds as parameters, so
-- that only those partitions are opened); the observation before a day's
-- only one, where its split needs it (at zero or below), is the last of the
-- latest earlier day with observations, as kept: a second pass takes it once
-- the days of this call are kept.
CREATE FUNCTION flows.refresh_meter_ledger_days(p_meter_ids uuid[], p_days date[]) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- called for a day or two at every write: cheaper to run than to plan
AS $$
DECLARE
    low timestamptz;
    high timestamptz;
BEGIN
    SELECT flows.uk_day_start(min(d)), flows.uk_day_start(max(d) + 1) INTO low, high FROM unnest(p_days) AS d;
    IF low IS NULL THEN
        RETURN;
    END IF;
    FOR pass IN 1..2 LOOP
        WITH touched AS (
            SELECT DISTINCT x.meter_id, x.day, flows.uk_day_start(x.day) AS starts,
                   flows.uk_day_start(x.day + 1) AS ends
            FROM unnest(p_meter_ids, p_days) AS x (meter_id, day)
            WHERE x.meter_id IS NOT NULL AND x.day IS NOT NULL
        ), observed AS (  -- the day's observations; where its last splits its half hour
            SELECT t.meter_id, t.day, t.ends, o.n, o.first_at, o.first_balance, o.last_at, o.last_balance, o.lowest,
                   o.rises,
                   billing.split_at(o.last_at, o.last_balance, coalesce(o.before_at, earlier.last_at),
                                    coalesce(o.before_balance, earlier.last_balance), 'infinity') AS last_split
            FROM touched AS t
            CROSS JOIN LATERAL (
                SELECT count(*)::integer AS n, min(b."timestamp") AS first_at, max(b."timestamp") AS last_at,
                       (array_agg(b.balance ORDER BY b."timestamp"))[1] AS first_balance,
                       (array_agg(b.balance ORDER BY b."timestamp" DESC))[1] AS last_balance,
                       (array_agg(b."timestamp" ORDER BY b."timestamp" DESC))[2] AS before_at,
                       (array_agg(b.balance ORDER BY b."timestamp" DESC))[2] AS before_balance,
                       min(b.balance) AS lowest, coalesce(bool_or(b.rose), false) AS rises
                FROM (SELECT b."timestamp", b.balance, b.balance > lag(b.balance) OVER (ORDER BY b."timestamp") AS rose
                      FROM flows.meter_prepay_balance AS b
                      WHERE b.meter_id = t.meter_id AND b."timestamp" >= t.starts AND b."timestamp" < t.ends
                        AND b."timestamp" >= low AND b."timestamp" < high) AS b
            ) AS o
            LEFT JOIN LATERAL (  -- a day's only observation at zero or below: the one before it, on an earlier day
                SELECT s.last_at, s.last_balance FROM flows.meter_ledger_days AS s
                WHERE o.n = 1 AND o.last_balance <= 0 AND s.meter_id = t.meter_id AND s.day < t.day
                  AND s.observations > 0
                ORDER BY s.day DESC LIMIT 1
            ) AS earlier ON true
        ), tails AS (  -- from the last observation to the day's end, per rate: its half hours by index
            SELECT o.meter_id, o.day,
                   coalesce(sum(h.kwh * h.share) FILTER (WHERE r.element <> 'B'), 0) AS kwh_a,
                   coalesce(sum(h.kwh * h.share) FILTER (WHERE r.element = 'B'), 0) AS kwh_b,
                   count(h.hh)::integer AS overlapping, (count(h.hh) FILTER (WHERE h.hh >= o.last_at))::integer AS after
            FROM observed AS o
            JOIN flows.meter_registers AS r ON r.meter_id = o.meter_id
            LEFT JOIN LATERAL (
                SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh,
                       extract(epoch FROM i."timestamp" + interval '30 minutes'
                                          - greatest(i."timestamp", o.last_split)) / 1800 AS share
                FROM flows.register_interval_hh AS i
                WHERE i.register_id = r.register_id AND i."timestamp" > o.last_at - interval '30 minutes'
                  AND i."timestamp" < o.ends AND i."timestamp" >= low AND i."timestamp" < high
                  AND i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
            ) AS h ON true
            WHERE o.n > 0
            GROUP BY o.meter_id, o.day
        ), computed AS (
            SELECT o.meter_id, o.day, o.n, o.first_at, o.first_balance, o.last_at, o.last_balance, o.lowest, o.rises,
                   coalesce(l.kwh_a, 0) AS tail_kwh_a, coalesce(l.kwh_b, 0) AS tail_kwh_b,
                   coalesce(l.overlapping, 0) AS tail_overlapping, coalesce(l.after, 0) AS tail_after
            FROM observed AS o
            LEFT JOIN tails AS l ON l.meter_id = o.meter_id AND l.day = o.day
        ), removed AS (
            DELETE FROM flows.meter_ledger_days AS s
            USING computed AS c
            WHERE s.meter_id = c.meter_id AND s.day = c.day AND c.n = 0
        )
        INSERT INTO flows.meter_ledger_days AS s (
            meter_id, day, observations, first_at, first_balance, last_at, last_balance, lowest, rises,
            tail_kwh_a, tail_kwh_b, tail_overlapping, tail_after)
        SELECT c.* FROM computed AS c
        WHERE c.n > 0
        ORDER BY c.meter_id, c.day
        ON CONFLICT (meter_id, day) DO UPDATE
            SET observations = excluded.observations, first_at = excluded.first_at,
                first_balance = excluded.first_balance, last_at = excluded.last_at,
                last_balance = excluded.last_balance, lowest = excluded.lowest, rises = excluded.rises,
                tail_kwh_a = excluded.tail_kwh_a, tail_kwh_b = excluded.tail_kwh_b,
                tail_overlapping = excluded.tail_overlapping, tail_after = excluded.tail_after
            WHERE (s.*) IS DISTINCT FROM (excluded.*);
        -- the second pass only where a day's only observation is at zero or below (its split looks back)
        EXIT WHEN pass = 2 OR NOT EXISTS (
            SELECT FROM flows.meter_ledger_days AS s
            JOIN unnest(p_meter_ids, p_days) AS x (meter_id, day) ON s.meter_id = x.meter_id AND s.day = x.day
            WHERE s.observations = 1 AND s.last_balance <= 0);
    END LOOP;
END
$$;
COMMENT ON FUNCTION flows.refresh_meter_ledger_days(uuid[], date[]) IS
    'Recomputes flows.meter_ledger_days of these (meter, UK day) pairs from the raw rows.';

-- Recomputes the rows of the UK days balance observations at p_timestamps
-- fall on, and then each meter's next day with observations after them when
-- its only observation is at zero or below (its split looks back to the
-- observation before it, on an earlier day).
CREATE FUNCTION flows.refresh_meter_ledger_days_of_balances(p_meter_ids uuid[], p_timestamps timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- as above
AS $$
BEGIN
    PERFORM flows.refresh_meter_ledger_days(array_agg(t.meter_id), array_agg(t.day))
    FROM (SELECT DISTINCT b.meter_id, flows.uk_day(b.ts) AS day
          FROM unnest(p_meter_ids, p_timestamps) AS b (meter_id, ts)) AS t;
    PERFORM flows.refresh_meter_ledger_days(array_agg(n.meter_id), array_agg(n.day))
    FROM (SELECT DISTINCT b.meter_id, flows.uk_day(b.ts) AS day
          FROM unnest(p_meter_ids, p_timestamps) AS b (meter_id, ts)) AS t
    CROSS JOIN LATERAL (
        SELECT s.meter_id, s.day, s.observations, s.last_balance FROM flows.meter_ledger_days AS s
        WHERE s.meter_id = t.meter_id AND s.day > t.day AND s.observations > 0
        ORDER BY s.day LIMIT 1
    ) AS n
    WHERE n.observations = 1 AND n.last_balance <= 0;
END
$$;
COMMENT ON FUNCTION flows.refresh_meter_ledger_days_of_balances(uuid[], timestamptz[]) IS
    'Recomputes flows.meter_ledger_days for balance observations written (their days, and the next day with '
    'observations where its split depends on them).';

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
CREATE FUNCTION flows.meter_ledger_days_follow_balances() RETURNS trigger
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
CREATE TRIGGER meter_ledger_days_inserted AFTER INSERT ON flows.meter_prepay_balance
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flows.meter_ledger_days_follow_balances();

CREATE FUNCTION flows.meter_ledger_days_follow_balance() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- as above
SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM flows.refresh_meter_ledger_days_of_balances(ARRAY[OLD.meter_id, NEW.meter_id],
                                                            ARRAY[OLD."timestamp", NEW."timestamp"]);
    ELSE
        PERFORM flows.refresh_meter_ledger_days_of_balances(ARRAY[OLD.meter_id], ARRAY[OLD."timestamp"]);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.meter_ledger_days_follow_balance() IS
    'Trigger: keeps flows.meter_ledger_days exact when a balance observation is updated or deleted.';
CREATE TRIGGER meter_ledger_days_changed AFTER UPDATE OR DELETE ON flows.meter_prepay_balance
    FOR EACH ROW EXECUTE FUNCTION flows.meter_ledger_days_follow_balance();

-- A register changed (its meter, element, start or end) or removed: every
-- stored day of its meter.
CREATE FUNCTION flows.meter_ledger_days_follow_register() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- as above (operators edit registers)
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM flows.meter_ledger_days AS s
    WHERE s.meter_id = OLD.meter_id OR (TG_OP = 'UPDATE' AND s.meter_id = NEW.meter_id);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.meter_ledger_days_follow_register() IS
    'Trigger: recomputes flows.meter_ledger_days of the meter whose register changed or was removed.';
CREATE TRIGGER meter_ledger_days_register_changed AFTER UPDATE ON flows.meter_registers
    FOR EACH ROW
    WHEN (OLD.meter_id IS DISTINCT FROM NEW.meter_id OR OLD.element IS DISTINCT FROM NEW.element
          OR OLD.start_time IS DISTINCT FROM NEW.start_time OR OLD.end_time IS DISTINCT FROM NEW.end_time)
    EXECUTE FUNCTION flows.meter_ledger_days_follow_register();
CREATE TRIGGER meter_ledger_days_register_deleted AFTER DELETE ON flows.meter_registers
    FOR EACH ROW EXECUTE FUNCTION flows.meter_ledger_days_follow_register();

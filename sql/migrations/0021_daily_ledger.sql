-- 0021_daily_ledger: the shadow prepay ledger reads a row per meter and UK day (flows.meter_ledger_days: the
-- day's balance observations, its kWh per rate and the kWh after its first and last observation), kept exact as
-- balances, half hours and registers are written (triggers, and the rollups' writers), instead of every balance
-- observation and the half hours at the days' ends; the intervals it computes one by one only on the days that
-- need them; billing.split_at STABLE, so that it is inlined (docs/reconciliation.md, "How the ledger computes",
-- "Performance").

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/recording/ledger_days.sql ----
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

-- Balances written by anyone (flows.record_meter_states, a correction, the
-- retention's deletion): inserted, a statement trigger (the rows as a
-- transition table); updated or deleted (rare), a row trigger.
CREATE FUNCTION flows.meter_ledger_days_follow_balances() RETURNS trigger
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

CREATE OR REPLACE FUNCTION flows.refresh_interval_rollups(p_register_ids uuid[], p_timestamps timestamptz[]) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
    SELECT t.register_id, t.day, coalesce(sum(h.import_kwh), 0), coalesce(sum(h.export_kwh), 0), count(*),
           count(*) FILTER (WHERE h.source = 'reads')
    FROM (SELECT DISTINCT x.register_id, flows.uk_day(x.ts) AS day
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_hh AS h
      ON h.register_id = t.register_id
     AND h."timestamp" >= flows.uk_day_start(t.day) AND h."timestamp" < flows.uk_day_start(t.day + 1)
    GROUP BY t.register_id, t.day
    ORDER BY t.register_id, t.day
    ON CONFLICT (register_id, day) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals,
            estimated = excluded.estimated;
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT t.register_id, t.month, sum(d.import_kwh), sum(d.export_kwh), sum(d.intervals)
    FROM (SELECT DISTINCT x.register_id, flows.uk_month(flows.uk_day(x.ts)) AS month
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_daily AS d
      ON d.register_id = t.register_id AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date
    GROUP BY t.register_id, t.month
    ORDER BY t.register_id, t.month
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals;
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM (SELECT DISTINCT x.register_id, flows.uk_day(x.ts) AS day
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS x
    JOIN flows.meter_registers AS r ON r.register_id = x.register_id
    JOIN flows.meter_ledger_days AS s ON s.meter_id = r.meter_id AND s.day = x.day;
END;


-- ---- schema/billing/reconciliation.sql ----
CREATE OR REPLACE FUNCTION billing.split_at(p_at timestamptz, p_balance numeric, p_previous_at timestamptz,
                                 p_previous_balance numeric, p_next_at timestamptz)
RETURNS timestamptz
-- STABLE, as what it calls (timestamptz +/- interval): PostgreSQL inlines a function only when its body is no
-- less volatile than declared, and called once per observation it must be inlined (no SET either)
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN coalesce(p_balance > 0, true) THEN p_at
            WHEN p_previous_balance <= 0
                 THEN CASE WHEN p_previous_at <= pg_catalog.date_bin('30 minutes', p_at, 'epoch')
                           THEN pg_catalog.date_bin('30 minutes', p_at, 'epoch') ELSE p_at END
            WHEN coalesce(p_next_at, 'infinity')
                 >= pg_catalog.date_bin('30 minutes', p_at - interval '1 microsecond', 'epoch') + interval '30 minutes'
                 THEN pg_catalog.date_bin('30 minutes', p_at - interval '1 microsecond', 'epoch') + interval '30 minutes'
            ELSE p_at END;

DROP FUNCTION billing.prepay_daily_charges(uuid, date, date);
CREATE FUNCTION billing.prepay_daily_charges(p_esco uuid, p_from date, p_to date, p_meters uuid[] DEFAULT NULL)
RETURNS TABLE (meter_id uuid, day date, charged numeric)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH periods AS (
    SELECT t.* FROM billing.meter_tariff_periods AS t
    JOIN flows.meter_registry AS m ON m.id = t.meter_id
    WHERE m.esco = p_esco AND m.prepay_enabled AND (p_meters IS NULL OR m.id = ANY (p_meters))
      AND (p_meters IS NULL OR t.meter_id = ANY (p_meters))  -- (the view computes only these meters' periods)
), debts AS (  -- debt recovered at each midnight since the debt was loaded: the rate, or what is left
    SELECT x.meter_id, x.day, x.recovered - lag(x.recovered, 1, 0::numeric) OVER (
               PARTITION BY x.meter_id ORDER BY x.day) AS recovered
    FROM (SELECT d.meter_id, g.day,
                 least(d.amount, sum(p.debt_recovery_rate) OVER (PARTITION BY d.meter_id ORDER BY g.day)) AS recovered
          FROM billing.prepay_debts AS d
          CROSS JOIN LATERAL generate_series((d.as_of AT TIME ZONE 'Europe/London')::date + 1, p_to,
                                             interval '1 day') AS g (day)
          JOIN periods AS p ON p.meter_id = d.meter_id
                           AND flows.uk_day_start(g.day::date) >= p.valid_from
                           AND flows.uk_day_start(g.day::date) < p.valid_to
          WHERE d.esco = p_esco) AS x
), midnights AS MATERIALIZED (  -- each day's UK midnight, computed once (not for each tariff period)
    SELECT g.day, flows.uk_day_start(g.day::date) AS at FROM generate_series(p_from, p_to, interval '1 day') AS g (day)
)
SELECT p.meter_id, g.day::date,
       sum(p.standing_charge + coalesce(d.recovered, 0)) OVER (PARTITION BY p.meter_id ORDER BY g.day)
FROM midnights AS g
JOIN periods AS p ON g.at >= p.valid_from AND g.at < p.valid_to
LEFT JOIN debts AS d ON d.meter_id = p.meter_id AND d.day = g.day
$$;
COMMENT ON FUNCTION billing.prepay_daily_charges(uuid, date, date, uuid[]) IS
    'Running total per prepay meter of an ESCO (p_meters: of these) of the daily charges (standing charge, debt '
    'recovery) taken at each UK midnight from p_from to p_to (GBP).';

DROP FUNCTION billing.shadow_ledger_intervals(uuid, date, date, uuid[]);
CREATE FUNCTION billing.shadow_ledger_intervals(p_esco uuid, p_from date, p_to date, p_steps_of uuid[] DEFAULT NULL,
                                                p_steps_on date[] DEFAULT NULL)
RETURNS TABLE (meter_id uuid, day date, started_at timestamptz, ended_at timestamptz, opening_balance numeric,
               closing_balance numeric, energy_cost numeric, daily_charges numeric, topup_credits numeric,
               token_events integer, token_credit numeric, emergency_credit numeric, repaid numeric,
               observed_change numeric, expected_change numeric, residual numeric, complete boolean)
LANGUAGE sql STABLE
SET search_path = ''
SET jit = off
SET work_mem = '64MB'
AS $$
WITH settings AS (
    SELECT coalesce((SELECT s.tolerance FROM billing.reconciliation_settings AS s WHERE s.esco = p_esco), 0.01) AS tolerance
), bounds AS (
    SELECT flows.uk_day_start(p_from) AS t_from, flows.uk_day_start(p_to + 1) AS t_to,
           flows.uk_day_start(p_from - 1) AS t_before
), meters AS (
    SELECT m.id FROM flows.meter_registry AS m
    WHERE m.esco = p_esco AND m.prepay_enabled AND NOT flows.is_three_phase(m)
      AND (p_steps_of IS NULL OR m.id = ANY (p_steps_of))
), periods AS (  -- (with p_steps_of the view computes only those meters' periods)
    SELECT t.* FROM billing.meter_tariff_periods AS t JOIN meters AS m ON m.id = t.meter_id
    WHERE p_steps_of IS NULL OR t.meter_id = ANY (p_steps_of)
), steps_on AS (  -- p_steps_on: the days asked for and the observations their intervals need: from the second
                  -- before the day's first (the split of the one before the first depends on it) to the first
                  -- after its last (where its last splits)
    SELECT x.meter_id, x.day, coalesce(before.at, '-infinity') AS from_at, coalesce(after.at, 'infinity') AS to_at
    FROM (SELECT DISTINCT x.meter_id, x.day FROM unnest(p_steps_of, p_steps_on) AS x (meter_id, day)
          WHERE p_steps_on IS NOT NULL) AS x
    LEFT JOIN LATERAL (
        SELECT b."timestamp" AS at FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = x.meter_id AND b."timestamp" < flows.uk_day_start(x.day)
        ORDER BY b."timestamp" DESC OFFSET 1 LIMIT 1
    ) AS before ON true
    LEFT JOIN LATERAL (
        SELECT b."timestamp" AS at FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = x.meter_id AND b."timestamp" >= flows.uk_day_start(x.day + 1)
        ORDER BY b."timestamp" LIMIT 1
    ) AS after ON true
), observations AS (  -- numbered in order per meter (k), the order of the array they are also gathered in;
                      -- where each splits the half hour it falls in (billing.split_at), and the one before
    SELECT o.*, lag(o.split_at) OVER (PARTITION BY o.meter_id ORDER BY o.k) AS previous_split_at
    FROM (
        SELECT b.meter_id, b."timestamp" AS at, b.balance, row_number() OVER w AS k,
               lag(b."timestamp") OVER w AS previous_at, lag(b.balance) OVER w AS previous_balance,
               billing.split_at(b."timestamp", b.balance, lag(b."timestamp") OVER w, lag(b.balance) OVER w,
                                lead(b."timestamp") OVER w) AS split_at
        FROM (SELECT b.meter_id, b."timestamp", b.balance FROM flows.meter_prepay_balance AS b, bounds
              WHERE p_steps_on IS NULL AND b.meter_id IN (SELECT id FROM meters)
                AND b."timestamp" >= bounds.t_before AND b."timestamp" < bounds.t_to
              UNION ALL
              SELECT DISTINCT b.meter_id, b."timestamp", b.balance  -- p_steps_on: the days' windows, each once
              FROM steps_on AS x
              CROSS JOIN bounds
              JOIN flows.meter_prepay_balance AS b
                ON b.meter_id = x.meter_id AND b."timestamp" >= greatest(x.from_at, bounds.t_before)
               AND b."timestamp" <= x.to_at AND b."timestamp" < bounds.t_to
              WHERE x.meter_id IN (SELECT id FROM meters)) AS b
        WINDOW w AS (PARTITION BY b.meter_id ORDER BY b."timestamp")
    ) AS o
), credits AS (  -- completed top-ups, at the observation that read their balance_after
    SELECT t.meter_id, t.amount, coalesce(seen.at, t.used_at) AS at
    FROM billing.topups AS t
    CROSS JOIN bounds
    LEFT JOIN LATERAL (
        SELECT max(b."timestamp") AS at FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = t.meter_id AND b.balance = t.balance_after
          AND b."timestamp" BETWEEN t.used_at - interval '10 minutes' AND t.used_at
    ) AS seen ON true
    WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0
      AND t.used_at >= bounds.t_before AND t.used_at < bounds.t_to + interval '10 minutes'
), tokens AS (  -- credit events no top-up explains (a token typed on the keypad)
    SELECT e.meter_id, e."timestamp" AS at
    FROM flows.meter_event_log AS e CROSS JOIN bounds
    WHERE e.meter_id IN (SELECT id FROM meters) AND e.event_type = 48
      AND e."timestamp" >= bounds.t_before AND e."timestamp" < bounds.t_to
      AND NOT EXISTS (SELECT FROM billing.topups AS t
                      WHERE t.meter_id = e.meter_id AND t.status = 'completed' AND t.amount > 0
                        AND t.used_at BETWEEN e."timestamp" - interval '15 minutes' AND e."timestamp" + interval '15 minutes')
), placed AS (  -- each credit and unexplained token in the interval that ends at the first observation after it
    SELECT x.meter_id, ended.at AS ended_at, sum(x.amount) AS topup_credits, count(x.token)::integer AS token_events
    FROM (SELECT c.meter_id, c.at, c.amount, NULL::integer AS token FROM credits AS c
          UNION ALL
          SELECT k.meter_id, k.at, 0, 1 FROM tokens AS k) AS x
    CROSS JOIN LATERAL (
        SELECT min(b."timestamp") AS at FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = x.meter_id AND b."timestamp" >= x.at
    ) AS ended
    GROUP BY x.meter_id, ended.at
), stepped AS (  -- the intervals ending in the days, with their credits and the emergency credit on offer
    SELECT o.meter_id, o.k, o.previous_at AS started_at, o.at AS ended_at, o.previous_split_at AS split_from,
           o.split_at AS split_to, o.previous_balance AS opening_balance,
           o.balance AS closing_balance, coalesce(c.topup_credits, 0) AS topup_credits,
           coalesce(c.token_events, 0) AS token_events, p.emergency_credit AS offered, p.ecredit_availability
    FROM observations AS o
    CROSS JOIN bounds
    LEFT JOIN placed AS c ON c.meter_id = o.meter_id AND c.ended_at = o.at
    LEFT JOIN periods AS p ON p.meter_id = o.meter_id AND o.previous_at >= p.valid_from AND o.previous_at < p.valid_to
    WHERE o.previous_at IS NOT NULL AND o.at >= bounds.t_from
      AND (p_steps_of IS NULL OR c.ended_at IS NOT NULL OR o.balance > o.previous_balance
           OR (p.emergency_credit > 0 AND o.previous_balance < p.ecredit_availability))
      AND (p_steps_on IS NULL OR EXISTS (SELECT FROM steps_on AS x WHERE x.meter_id = o.meter_id
                                            AND x.day = (o.at AT TIME ZONE 'Europe/London')::date))
), moments AS MATERIALIZED (  -- each meter's observation times, sorted: half hours are placed among them by bisection
                              -- (and split at their split_at)
    SELECT o.meter_id, array_agg(o.at ORDER BY o.k) AS ats, array_agg(o.split_at ORDER BY o.k) AS splits
    FROM observations AS o
    WHERE p_steps_of IS NULL GROUP BY o.meter_id
), priced AS (  -- the registers' half hours, each at its element's rate then
    SELECT r.meter_id, r.register_id, i."timestamp" AS at,
           coalesce(i.import_kwh, 0) * CASE WHEN r.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END AS cost
    FROM flows.meter_registers AS r
    JOIN flows.register_interval_hh AS i ON i.register_id = r.register_id
    JOIN periods AS p ON p.meter_id = r.meter_id AND i."timestamp" >= p.valid_from AND i."timestamp" < p.valid_to
    WHERE i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
), energy AS (  -- each interval's half hours (pieces, one per register) and their cost, prorated at its ends
    SELECT x.meter_id, x.k, count(*) AS pieces, sum(x.cost) AS cost
    FROM (  -- every half hour of the days, split between the intervals it overlaps: interval k ends at observation
            -- k, found by bisection (width_bucket), in one pass
        SELECT h.meter_id, h.j + 1 AS k,
               h.cost * extract(epoch FROM least(h.at + interval '30 minutes', h.splits[h.j + 1])
                                           - greatest(h.at, h.splits[h.j])) / 1800 AS cost
        FROM (
            SELECT x.meter_id, x.at, x.cost, m.splits,
                   generate_series(greatest(width_bucket(x.at, m.ats), 1),
                                   least(width_bucket(x.at + interval '30 minutes' - interval '1 microsecond', m.ats),
                                         cardinality(m.ats) - 1)) AS j
            FROM priced AS x
            JOIN moments AS m ON m.meter_id = x.meter_id
            CROSS JOIN bounds
            WHERE p_steps_of IS NULL
              AND x.at >= bounds.t_before - interval '30 minutes' AND x.at < bounds.t_to
        ) AS h
        OFFSET 0  -- computed here, so that the aggregate does not carry each meter's array of observations
    ) AS x
    GROUP BY x.meter_id, x.k
    UNION ALL
    SELECT x.meter_id, x.k, count(*),  -- the steps only: their own half hours
           sum(x.kwh * CASE WHEN x.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END
               * extract(epoch FROM least(x.hh + interval '30 minutes', x.split_to) - greatest(x.hh, x.split_from))
               / 1800)
    FROM (  -- the half hours by index, register by register (OFFSET 0 twice: neither a join of every half hour
           -- nor the tariff periods looked up for each)
        SELECT s.meter_id, s.k, s.split_from, s.split_to, r.element, h.hh, h.kwh
        FROM stepped AS s
        JOIN flows.meter_registers AS r ON r.meter_id = s.meter_id
        CROSS JOIN LATERAL (
            SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh FROM flows.register_interval_hh AS i
            WHERE i.register_id = r.register_id AND i."timestamp" > s.started_at - interval '30 minutes'
              AND i."timestamp" < s.ended_at
              AND i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
            OFFSET 0
        ) AS h
        WHERE p_steps_of IS NOT NULL OFFSET 0
    ) AS x
    JOIN periods AS p ON p.meter_id = x.meter_id AND x.hh >= p.valid_from AND x.hh < p.valid_to
    GROUP BY x.meter_id, x.k
), midnights AS (
    SELECT * FROM billing.prepay_daily_charges(p_esco, p_from - 1, p_to, p_steps_of)
), intervals AS (
    SELECT s.*, (s.ended_at AT TIME ZONE 'Europe/London')::date AS day,
           coalesce(e.cost, 0) AS energy_cost, coalesce(c1.charged, 0) - coalesce(c0.charged, 0) AS daily_charges,
           -- every element's every half hour the interval overlaps
           n.n > 0 AND coalesce(e.pieces, 0)
             = n.n * (1 + extract(epoch FROM date_bin('30 minutes', s.ended_at - interval '1 microsecond', 'epoch')
                                          - date_bin('30 minutes', s.started_at, 'epoch')) / 1800) AS complete
    FROM stepped AS s
    LEFT JOIN (SELECT r.meter_id, count(DISTINCT r.element) AS n FROM flows.meter_registers AS r
               GROUP BY r.meter_id) AS n
      ON n.meter_id = s.meter_id
    LEFT JOIN energy AS e ON e.meter_id = s.meter_id AND e.k = s.k
    LEFT JOIN midnights AS c0 ON c0.meter_id = s.meter_id AND c0.day = (s.started_at AT TIME ZONE 'Europe/London')::date
    LEFT JOIN midnights AS c1 ON c1.meter_id = s.meter_id AND c1.day = (s.ended_at AT TIME ZONE 'Europe/London')::date
), explained AS (
    SELECT i.*, i.closing_balance - i.opening_balance AS observed_change,
           i.topup_credits - i.energy_cost - i.daily_charges AS before_emergency,
           i.topup_credits > 0 OR i.token_events > 0 AS credited
    FROM intervals AS i
), granted AS (  -- emergency credit: an upward step of its amount, taken below the threshold, no token
    SELECT e.*,
           CASE WHEN NOT e.credited AND e.offered > 0 AND e.opening_balance < e.ecredit_availability
                     AND abs(e.observed_change - e.before_emergency - e.offered) <= settings.tolerance
                THEN e.offered ELSE 0 END AS emergency_credit,
           count(*) FILTER (WHERE e.credited) OVER (PARTITION BY e.meter_id ORDER BY e.ended_at
                                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS credits_before
    FROM explained AS e CROSS JOIN settings
), repaid AS (  -- the next credit repays the emergency credit taken since the one before it
    SELECT g.*,
           CASE WHEN g.credited THEN sum(g.emergency_credit) OVER (PARTITION BY g.meter_id, coalesce(g.credits_before, 0))
                ELSE 0 END AS owed
    FROM granted AS g
)
SELECT r.meter_id, r.day, r.started_at, r.ended_at, r.opening_balance, r.closing_balance,
       round(r.energy_cost, 5), r.daily_charges, r.topup_credits, r.token_events,
       -- a token no top-up explains credited whatever the balance says it did
       CASE WHEN r.token_events > 0
            THEN round(r.observed_change - r.before_emergency + r.owed, 5) ELSE 0 END,
       r.emergency_credit,
       CASE WHEN r.token_events > 0 THEN r.owed ELSE least(r.owed, r.topup_credits) END,
       r.observed_change,
       round(r.before_emergency + r.emergency_credit - least(r.owed, r.topup_credits), 5),
       CASE WHEN r.token_events > 0 THEN 0
            ELSE round(r.observed_change - r.before_emergency - r.emergency_credit + least(r.owed, r.topup_credits), 5)
       END,
       r.complete
FROM repaid AS r
$$;
COMMENT ON FUNCTION billing.shadow_ledger_intervals(uuid, date, date, uuid[], date[]) IS
    'The shadow prepay ledger between consecutive balance observations of each prepay meter of an ESCO, for '
    'intervals ending in the UK days p_from..p_to: expected and observed change, residual (docs/reconciliation.md); '
    'p_steps_of: only these meters'' intervals a credit, a rise or a low balance could make special (p_steps_on: '
    'those ending on these days, pairwise).';

CREATE OR REPLACE FUNCTION billing.shadow_ledger(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (meter_id uuid, day date, observations integer, opening_balance numeric, closing_balance numeric,
               energy_cost numeric, daily_charges numeric, topup_credits numeric, token_credit numeric,
               emergency_credit numeric, repaid numeric, observed_change numeric, expected_change numeric,
               residual numeric, complete boolean, finding text, steps jsonb)
LANGUAGE sql STABLE
SET search_path = ''
SET jit = off
SET work_mem = '64MB'
AS $$
WITH settings AS (
    SELECT coalesce((SELECT s.tolerance FROM billing.reconciliation_settings AS s WHERE s.esco = p_esco), 0.01) AS tolerance
), bounds AS (
    SELECT flows.uk_day_start(p_from) AS t_from, flows.uk_day_start(p_to + 1) AS t_to,
           flows.uk_day_start(p_from - 1) AS t_before
), meters AS (
    SELECT m.id FROM flows.meter_registry AS m
    WHERE m.esco = p_esco AND m.prepay_enabled AND NOT flows.is_three_phase(m)
), periods AS (
    SELECT t.* FROM billing.meter_tariff_periods AS t JOIN meters AS m ON m.id = t.meter_id
), calendar AS MATERIALIZED (  -- the days and the day before, with their UK midnights (computed once)
    SELECT g.day::date AS day, flows.uk_day_start(g.day::date) AS starts, flows.uk_day_start(g.day::date + 1) AS ends
    FROM generate_series(p_from - 1, p_to, interval '1 day') AS g (day)
), energy AS (  -- each meter's days' half hours per rate (the daily rollups of its registers)
    SELECT r.meter_id, d.day, sum(d.import_kwh) FILTER (WHERE r.element <> 'B') AS kwh_a,
           sum(d.import_kwh) FILTER (WHERE r.element = 'B') AS kwh_b, sum(d.intervals) AS intervals
    FROM flows.meter_registers AS r
    JOIN flows.register_interval_daily AS d ON d.register_id = r.register_id
    WHERE r.meter_id IN (SELECT id FROM meters) AND d.day BETWEEN p_from - 1 AND p_to
    GROUP BY r.meter_id, d.day
), stored AS (  -- each meter's UK days (from the day before the first) with observations (kept:
                -- flows.meter_ledger_days) or half hours or both, priced at the tariff of the day (kWh of A or SINGLE
                -- at unit_rate_a, of B at unit_rate_b); a day no one tariff covers (one changes inside it) is not
                -- priced whole: its half hours and tails one by one
    SELECT coalesce(s.meter_id, e.meter_id) AS meter_id, coalesce(s.day, e.day) AS day,
           coalesce(s.observations, 0) AS observations, s.first_at, s.first_balance, s.last_at, s.last_balance,
           s.lowest, s.rises, coalesce(e.intervals, 0) AS intervals, s.tail_after, s.tail_overlapping,
           p.meter_id IS NOT NULL AS priced,
           coalesce(e.kwh_a, 0) * p.unit_rate_a + coalesce(e.kwh_b, 0) * p.unit_rate_b AS whole_cost,
           s.tail_kwh_a * p.unit_rate_a + s.tail_kwh_b * p.unit_rate_b AS tail_cost
    FROM (SELECT s.* FROM flows.meter_ledger_days AS s
          WHERE s.meter_id IN (SELECT id FROM meters) AND s.day BETWEEN p_from - 1 AND p_to) AS s
    FULL JOIN energy AS e ON e.meter_id = s.meter_id AND e.day = s.day
    JOIN calendar AS k ON k.day = coalesce(s.day, e.day)
    LEFT JOIN periods AS p ON p.meter_id = coalesce(s.meter_id, e.meter_id) AND p.valid_from <= k.starts
                          AND p.valid_to >= k.ends
), changed AS (  -- a day a tariff changes in (not priced whole): its half hours, each at its rate
    SELECT x.meter_id, x.day, sum(x.kwh * CASE WHEN x.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END) AS cost,
           count(*) AS n
    FROM (  -- the half hours by index, register by register (OFFSET 0 twice: neither a join of every half hour
           -- nor the tariff periods looked up for each)
        SELECT s.meter_id, s.day, r.element, h.hh, h.kwh
        FROM stored AS s
        JOIN flows.meter_registers AS r ON r.meter_id = s.meter_id
        CROSS JOIN LATERAL (
            SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh FROM flows.register_interval_hh AS i
            WHERE i.register_id = r.register_id AND i."timestamp" >= flows.uk_day_start(s.day)
              AND i."timestamp" < flows.uk_day_start(s.day + 1)
              AND i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
            OFFSET 0
        ) AS h
        WHERE NOT s.priced AND s.intervals > 0 AND EXISTS (SELECT FROM periods AS p WHERE p.meter_id = s.meter_id)
        OFFSET 0
    ) AS x
    JOIN periods AS p ON p.meter_id = x.meter_id AND x.hh >= p.valid_from AND x.hh < p.valid_to
    GROUP BY x.meter_id, x.day
), midnights AS (
    SELECT * FROM billing.prepay_daily_charges(p_esco, p_from - 1, p_to)
), running AS (  -- per meter in day order: running totals of the days' cost and half hours, and the day
                 -- with observations before each; the daily charges taken by its end
    SELECT s.*, coalesce(m.charged, 0) AS charged,
           sum(CASE WHEN s.priced THEN s.whole_cost ELSE coalesce(c.cost, 0) END) OVER w AS cost_upto,
           sum(CASE WHEN s.priced THEN s.intervals ELSE coalesce(c.n, 0) END) OVER w AS n_upto,
           max(s.day) FILTER (WHERE s.observations > 0)
               OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_day
    FROM stored AS s
    LEFT JOIN changed AS c ON c.meter_id = s.meter_id AND c.day = s.day
    LEFT JOIN midnights AS m ON m.meter_id = s.meter_id AND m.day = s.day
    WINDOW w AS (PARTITION BY s.meter_id ORDER BY s.day)
), ends AS MATERIALIZED (  -- the ends whose tails are not kept, split as flows.meter_ledger_days splits them: the
                           -- last observation of a day not priced whole (after the one before it), and the first
                           -- of a day that starts from its own first (after nothing: a meter's first day)
    SELECT e.meter_id, e.at, e.day, billing.split_at(e.at, e.balance, before.at, before.balance, 'infinity') AS split_at
    FROM (SELECT r.meter_id, r.last_at AS at, r.day, r.last_balance AS balance, true AS last FROM running AS r
          WHERE r.observations > 0 AND NOT r.priced
          UNION ALL
          SELECT r.meter_id, r.first_at, r.day, r.first_balance, false FROM running AS r
          WHERE r.observations > 1 AND r.previous_day IS NULL AND r.day >= p_from) AS e
    LEFT JOIN LATERAL (
        SELECT b."timestamp" AS at, b.balance FROM flows.meter_prepay_balance AS b
        WHERE e.last AND e.balance <= 0 AND b.meter_id = e.meter_id AND b."timestamp" < e.at
        ORDER BY b."timestamp" DESC LIMIT 1
    ) AS before ON true
), tails AS (  -- from each end to the end of its day: the half hours' cost after it, how many overlap it and how
               -- many start at or after it (looked up by index, register by register in key order: a few half
               -- hours each, however many other meters and days the table holds)
    SELECT x.meter_id, x.at,
           sum(h.kwh * CASE WHEN x.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END
               * extract(epoch FROM h.hh + interval '30 minutes' - greatest(h.hh, x.split_at)) / 1800) AS cost,
           count(*) AS overlapping, count(*) FILTER (WHERE h.hh >= x.at) AS after
    FROM (SELECT e.meter_id, e.at, e.split_at, e.day, r.register_id, r.element, r.start_time, r.end_time
          FROM ends AS e JOIN flows.meter_registers AS r ON r.meter_id = e.meter_id
          ORDER BY r.register_id, e.at OFFSET 0) AS x
    CROSS JOIN LATERAL (
        SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh FROM flows.register_interval_hh AS i
        WHERE i.register_id = x.register_id AND i."timestamp" > x.at - interval '30 minutes'
          AND i."timestamp" >= flows.uk_day_start(x.day) AND i."timestamp" < flows.uk_day_start(x.day + 1)
          AND i."timestamp" >= x.start_time AND (x.end_time IS NULL OR i."timestamp" < x.end_time)
        OFFSET 0
    ) AS h
    JOIN periods AS p ON p.meter_id = x.meter_id AND h.hh >= p.valid_from AND h.hh < p.valid_to
    GROUP BY x.meter_id, x.at
), ledger AS (  -- each meter's UK days: from the observation before the day's first (the last of the latest day
                -- before it that had one, q; the day's first when there is none) to its last; the energy between
                -- is the days' cost up to it, less the tail after its last, plus the tail after its start
    SELECT r.meter_id, r.day, r.observations - CASE WHEN q.day IS NULL THEN 1 ELSE 0 END AS observations,
           coalesce(q.last_at, r.first_at) AS started_at, r.last_at AS ended_at,
           coalesce(q.last_balance, r.first_balance) AS opening_balance, r.last_balance AS closing_balance,
           least(r.lowest, q.last_balance) AS lowest,
           r.rises OR coalesce(r.first_balance > q.last_balance, false) AS rises,  -- an interval of the day rose
           r.last_balance - coalesce(q.last_balance, r.first_balance) AS observed_change,
           r.cost_upto - coalesce(q.cost_upto, r.cost_upto) - t1.cost + t0.cost AS energy_cost,
           r.charged - coalesce(q.charged, r.charged) AS daily_charges,
           -- every element's every half hour the day overlaps
           n.n > 0 AND r.n_upto - coalesce(q.n_upto, r.n_upto) - t1.after + t0.overlapping
             = n.n * (1 + extract(epoch FROM date_bin('30 minutes', r.last_at - interval '1 microsecond', 'epoch')
                                          - date_bin('30 minutes', coalesce(q.last_at, r.first_at), 'epoch')) / 1800)
             AS complete
    FROM running AS r
    LEFT JOIN running AS q ON q.meter_id = r.meter_id AND q.day = r.previous_day
    LEFT JOIN tails AS r1 ON r1.meter_id = r.meter_id AND r1.at = r.last_at
    LEFT JOIN tails AS r0 ON r0.meter_id = r.meter_id AND r0.at = coalesce(q.last_at, r.first_at)
    -- the tails after the day's last observation and after its start: recorded, or from the half hours
    CROSS JOIN LATERAL (
        SELECT CASE WHEN r.priced THEN r.tail_cost ELSE coalesce(r1.cost, 0) END AS cost,
               CASE WHEN r.priced THEN r.tail_after ELSE coalesce(r1.after, 0) END AS after
    ) AS t1
    CROSS JOIN LATERAL (
        SELECT CASE WHEN q.priced THEN q.tail_cost ELSE coalesce(r0.cost, 0) END AS cost,
               CASE WHEN q.priced THEN q.tail_overlapping ELSE coalesce(r0.overlapping, 0) END AS overlapping
    ) AS t0
    LEFT JOIN (SELECT r.meter_id, count(DISTINCT r.element) AS n FROM flows.meter_registers AS r
               GROUP BY r.meter_id) AS n
      ON n.meter_id = r.meter_id
    WHERE r.observations > 0 AND r.day >= p_from AND (q.day IS NOT NULL OR r.observations > 1)
), thresholds AS (  -- below which a meter offers emergency credit (the highest of its tariffs')
    SELECT p.meter_id, max(p.ecredit_availability) AS threshold FROM periods AS p
    WHERE p.emergency_credit > 0 GROUP BY p.meter_id
), credited AS (  -- completed top-ups and credit events, and the days of the observations they may be placed at (the
                  -- first at or after them; a top-up's may be the one that read its balance_after, 10 minutes before)
    SELECT x.meter_id, (placed.at AT TIME ZONE 'Europe/London')::date AS day
    FROM (SELECT t.meter_id, t.used_at - interval '10 minutes' AS from_at, t.used_at AS to_at
          FROM billing.topups AS t, bounds
          WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0 AND t.used_at >= bounds.t_before
            AND t.used_at < bounds.t_to + interval '10 minutes'
          UNION ALL
          SELECT e.meter_id, e."timestamp", e."timestamp" FROM flows.meter_event_log AS e, bounds
          WHERE e.meter_id IN (SELECT id FROM meters) AND e.event_type = 48 AND e."timestamp" >= bounds.t_before
            AND e."timestamp" < bounds.t_to) AS x
    CROSS JOIN LATERAL (
        SELECT min(b."timestamp") AS at FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = x.meter_id AND b."timestamp" >= x.from_at
        UNION ALL
        SELECT min(b."timestamp") FROM flows.meter_prepay_balance AS b
        WHERE b.meter_id = x.meter_id AND b."timestamp" >= x.to_at
    ) AS placed
), special AS (  -- the meters an interval of which may be special: a day the charging model alone does not
                 -- explain, a balance below the emergency credit threshold, a credit or a token
    SELECT DISTINCT x.meter_id
    FROM (
        SELECT l.meter_id FROM ledger AS l CROSS JOIN settings
        LEFT JOIN thresholds AS e ON e.meter_id = l.meter_id
        WHERE abs(l.observed_change + l.energy_cost + l.daily_charges) > settings.tolerance OR l.lowest < e.threshold
        UNION ALL
        SELECT c.meter_id FROM credited AS c
    ) AS x
), special_days AS (  -- the days of those meters such an interval may end on: a rise, a balance below the
                      -- threshold, a credit or a token placed
    SELECT array_agg(x.meter_id) AS meters, array_agg(x.day) AS days
    FROM (
        SELECT l.meter_id, l.day FROM ledger AS l
        LEFT JOIN thresholds AS e ON e.meter_id = l.meter_id
        WHERE l.meter_id IN (SELECT s.meter_id FROM special AS s) AND (l.rises OR l.lowest < e.threshold)
        UNION
        SELECT c.meter_id, c.day FROM credited AS c WHERE c.day IS NOT NULL
    ) AS x
), steps AS (  -- the intervals computed one by one, per day
    SELECT s.meter_id, s.day,
           sum(s.observed_change) AS observed, sum(s.energy_cost + s.daily_charges) AS spent,
           sum(s.residual) AS residual,
           sum(s.expected_change + s.token_credit) AS expected, sum(s.topup_credits) AS topup_credits,
           sum(s.token_credit) AS token_credit, sum(s.emergency_credit) AS emergency_credit, sum(s.repaid) AS repaid,
           jsonb_agg(jsonb_build_object('started_at', s.started_at, 'ended_at', s.ended_at,
                                        'opening_balance', s.opening_balance, 'closing_balance', s.closing_balance,
                                        'energy_cost', s.energy_cost, 'daily_charges', s.daily_charges,
                                        'topup_credits', s.topup_credits, 'credit_events', s.token_events,
                                        'token_credit', s.token_credit, 'emergency_credit', s.emergency_credit,
                                        'repaid', s.repaid) ORDER BY s.ended_at)
             FILTER (WHERE s.token_events > 0 OR s.emergency_credit > 0) AS steps
    FROM special_days AS x
    CROSS JOIN LATERAL billing.shadow_ledger_intervals(p_esco, p_from, p_to, coalesce(x.meters, '{}'),
                                                       coalesce(x.days, '{}')) AS s
    GROUP BY s.meter_id, s.day
), judged AS (  -- the plain intervals explained by energy and daily charges alone, the steps by themselves
    SELECT l.*, s.topup_credits, s.token_credit, s.emergency_credit, s.repaid, s.steps,
           round(l.observed_change + l.energy_cost + l.daily_charges
                 - coalesce(s.observed + s.spent, 0) + coalesce(s.residual, 0), 5) AS residual,
           round(coalesce(s.expected + s.spent, 0) - l.energy_cost - l.daily_charges, 5) AS expected_change
    FROM ledger AS l
    LEFT JOIN steps AS s ON s.meter_id = l.meter_id AND s.day = l.day
)
SELECT j.meter_id, j.day, j.observations, j.opening_balance, j.closing_balance, round(j.energy_cost, 5),
       j.daily_charges, coalesce(j.topup_credits, 0), coalesce(j.token_credit, 0), coalesce(j.emergency_credit, 0),
       coalesce(j.repaid, 0),
       j.observed_change, j.expected_change, j.residual, j.complete,
       CASE WHEN NOT j.complete OR abs(j.residual) <= s.tolerance THEN NULL
            WHEN j.residual < 0 THEN 'unexplained_deduction' ELSE 'unexplained_credit' END,
       coalesce(j.steps, '[]')
FROM judged AS j
CROSS JOIN settings AS s
$$;
COMMENT ON FUNCTION billing.shadow_ledger(uuid, date, date) IS
    'The shadow prepay ledger per meter and UK day: expected vs observed change of the balance, residual, and a '
    'finding (unexplained_deduction | unexplained_credit) beyond the ESCO''s tolerance on a complete day, and the '
    'steps (intervals) a credit token no top-up explains or emergency credit made.';

-- ---- rls/policies.sql ----
-- The shadow ledger's days (kept by triggers and the rollups' writers, read by
-- the ledger's invoker functions): visible with the meter, to those who see
-- the reconciliation.
ALTER TABLE flows.meter_ledger_days ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_ledger_days_all ON flows.meter_ledger_days FOR SELECT TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_ledger_days_visible_meter ON flows.meter_ledger_days FOR SELECT
    TO flows_operator, flows_analyst
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

-- ---- rls/privileges.sql ----
-- The shadow ledger's days: written by their triggers and the rollups' writers only (definers).
GRANT SELECT ON flows.meter_ledger_days TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.prepay_daily_charges(uuid, date, date, uuid[]),
    billing.shadow_ledger_intervals(uuid, date, date, uuid[], date[])
TO flows_admin, flows_operator, flows_analyst, flows_service;

-- ---- schema/gdpr/personal_data.sql ----
CALL gdpr.register('flows.meter_ledger_days',
    subject => 'EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s WHERE s.meter_id = {row}.meter_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.day), flows.uk_day_start({row}.day + 1)))',
    retain_until => '{row}.day + interval ''6 years''',
    retention => 'The shadow ledger''s days (the credit on the meter each day, from its balances): 6 years.');

-- ---- the days of what is already recorded (a block: yoyo would print a SELECT's result) ----
DO $$
BEGIN
    PERFORM flows.refresh_meter_ledger_days(array_agg(x.meter_id), array_agg(x.day))
    FROM (SELECT DISTINCT b.meter_id, flows.uk_day(b."timestamp") AS day FROM flows.meter_prepay_balance AS b) AS x;
END
$$;

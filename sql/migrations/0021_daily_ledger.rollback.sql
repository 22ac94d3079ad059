-- Rollback of 0021_daily_ledger: the ledger as 0020_reconciliation_speed left it (billing.split_at as
-- 0019_ledger_supply_off made it, the rollups' functions as 0003_readings did).
SET LOCAL ROLE flows_owner;
DELETE FROM gdpr.personal_data WHERE relation = 'flows.meter_ledger_days';
DROP TRIGGER meter_ledger_days_inserted ON flows.meter_prepay_balance;
DROP TRIGGER meter_ledger_days_changed ON flows.meter_prepay_balance;
DROP TRIGGER meter_ledger_days_register_changed ON flows.meter_registers;
DROP TRIGGER meter_ledger_days_register_deleted ON flows.meter_registers;
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
END;

DROP FUNCTION flows.meter_ledger_days_follow_balances(), flows.meter_ledger_days_follow_balance(),
    flows.meter_ledger_days_follow_register(),
    flows.refresh_meter_ledger_days_of_balances(uuid[], timestamptz[]), flows.refresh_meter_ledger_days(uuid[], date[]);
DROP TABLE flows.meter_ledger_days;
CREATE OR REPLACE FUNCTION billing.split_at(p_at timestamptz, p_balance numeric, p_previous_at timestamptz,
                                 p_previous_balance numeric, p_next_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE  -- (no SET: inlined into the ledger's queries)
RETURN CASE WHEN coalesce(p_balance > 0, true) THEN p_at
            WHEN p_previous_balance <= 0
                 THEN CASE WHEN p_previous_at <= pg_catalog.date_bin('30 minutes', p_at, 'epoch')
                           THEN pg_catalog.date_bin('30 minutes', p_at, 'epoch') ELSE p_at END
            WHEN coalesce(p_next_at, 'infinity')
                 >= pg_catalog.date_bin('30 minutes', p_at - interval '1 microsecond', 'epoch') + interval '30 minutes'
                 THEN pg_catalog.date_bin('30 minutes', p_at - interval '1 microsecond', 'epoch') + interval '30 minutes'
            ELSE p_at END;

DROP FUNCTION billing.prepay_daily_charges(uuid, date, date, uuid[]);
CREATE FUNCTION billing.prepay_daily_charges(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (meter_id uuid, day date, charged numeric)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH periods AS (
    SELECT t.* FROM billing.meter_tariff_periods AS t
    JOIN flows.meter_registry AS m ON m.id = t.meter_id
    WHERE m.esco = p_esco AND m.prepay_enabled
), debts AS (  -- debt recovered by the end of each midnight since the debt was loaded
    SELECT d.meter_id, g.day,
           least(d.amount, sum(p.debt_recovery_rate) OVER (PARTITION BY d.meter_id ORDER BY g.day)) AS recovered
    FROM billing.prepay_debts AS d
    CROSS JOIN LATERAL generate_series((d.as_of AT TIME ZONE 'Europe/London')::date + 1, p_to, interval '1 day') AS g (day)
    JOIN periods AS p ON p.meter_id = d.meter_id
                     AND flows.uk_day_start(g.day::date) >= p.valid_from AND flows.uk_day_start(g.day::date) < p.valid_to
    WHERE d.esco = p_esco
), midnights AS MATERIALIZED (  -- each day's UK midnight, computed once (not for each tariff period)
    SELECT g.day, flows.uk_day_start(g.day::date) AS at FROM generate_series(p_from, p_to, interval '1 day') AS g (day)
)
SELECT c.meter_id, c.day, sum(c.charge) OVER (PARTITION BY c.meter_id ORDER BY c.day)
FROM (
    SELECT p.meter_id, g.day::date AS day,
           p.standing_charge + coalesce(d.recovered, 0) - lag(coalesce(d.recovered, 0), 1, 0::numeric) OVER (
               PARTITION BY p.meter_id ORDER BY g.day) AS charge
    FROM midnights AS g
    JOIN periods AS p ON g.at >= p.valid_from AND g.at < p.valid_to
    LEFT JOIN debts AS d ON d.meter_id = p.meter_id AND d.day = g.day
) AS c
$$;
COMMENT ON FUNCTION billing.prepay_daily_charges(uuid, date, date) IS
    'Running total per prepay meter of an ESCO of the daily charges (standing charge, debt recovery) taken at '
    'each UK midnight from p_from to p_to (GBP).';

DROP FUNCTION billing.shadow_ledger_intervals(uuid, date, date, uuid[], date[]);
CREATE FUNCTION billing.shadow_ledger_intervals(p_esco uuid, p_from date, p_to date, p_steps_of uuid[] DEFAULT NULL)
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
), periods AS (
    SELECT t.* FROM billing.meter_tariff_periods AS t JOIN meters AS m ON m.id = t.meter_id
), observations AS (  -- numbered in order per meter (k), the order of the array they are also gathered in;
                      -- where each splits the half hour it falls in (billing.split_at), and the one before
    SELECT o.*, lag(o.split_at) OVER (PARTITION BY o.meter_id ORDER BY o.k) AS previous_split_at
    FROM (
        SELECT b.meter_id, b."timestamp" AS at, b.balance, row_number() OVER w AS k,
               lag(b."timestamp") OVER w AS previous_at, lag(b.balance) OVER w AS previous_balance,
               billing.split_at(b."timestamp", b.balance, lag(b."timestamp") OVER w, lag(b.balance) OVER w,
                                lead(b."timestamp") OVER w) AS split_at
        FROM flows.meter_prepay_balance AS b, bounds
        WHERE b.meter_id IN (SELECT id FROM meters) AND b."timestamp" >= bounds.t_before AND b."timestamp" < bounds.t_to
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
    SELECT * FROM billing.prepay_daily_charges(p_esco, p_from - 1, p_to)
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
COMMENT ON FUNCTION billing.shadow_ledger_intervals(uuid, date, date, uuid[]) IS
    'The shadow prepay ledger between consecutive balance observations of each prepay meter of an ESCO, for '
    'intervals ending in the UK days p_from..p_to: expected and observed change, residual (docs/reconciliation.md); '
    'p_steps_of: only these meters'' intervals a credit, a rise or a low balance could make special.';

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
), readings AS (  -- each meter's UK days of balance observations (from the day before the first): how many, the
                  -- first and the last and the balance then, the lowest balance (by groups, no sort; each
                  -- observation's (time, balance) key built once, OFFSET 0, for both ends)
    SELECT o.meter_id, o.day, count(*)::integer AS n, min(o."timestamp") AS first_at, max(o."timestamp") AS last_at,
           (min(o.keyed))[2] AS first_balance, (max(o.keyed))[2] AS last_balance, min(o.balance) AS lowest
    FROM (SELECT o.meter_id, o."timestamp", o.balance, (o."timestamp" AT TIME ZONE 'Europe/London')::date AS day,
                 ARRAY[extract(epoch FROM o."timestamp"), o.balance] AS keyed
          FROM flows.meter_prepay_balance AS o, bounds
          WHERE o.meter_id IN (SELECT id FROM meters)
            AND o."timestamp" >= bounds.t_before AND o."timestamp" < bounds.t_to
          OFFSET 0) AS o
    GROUP BY o.meter_id, o.day
), days AS (  -- each meter's UK days: from the observation before the day's first (the last of the latest day
              -- before it that had one; the day's first when there is none) to its last
    SELECT r.meter_id, r.day, r.n - CASE WHEN r.previous_at IS NULL THEN 1 ELSE 0 END AS observations,
           coalesce(r.previous_at, r.first_at) AS started_at, r.last_at AS ended_at,
           coalesce(r.previous_balance, r.first_balance) AS opening_balance, r.last_balance AS closing_balance,
           least(r.lowest, r.previous_balance) AS lowest, r.previous_at IS NULL AS from_first
    FROM (SELECT r.*, lag(r.last_at) OVER w AS previous_at, lag(r.last_balance) OVER w AS previous_balance
          FROM readings AS r WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.day)) AS r
    WHERE r.day >= p_from AND (r.previous_at IS NOT NULL OR r.n > 1)
), ends AS MATERIALIZED (  -- where the days' ends' tails start: each day's last observation, the first one read
                           -- (a day's start is the last observation of an earlier day, or its own first); split
                           -- where billing.split_at says (the next read is on a later day; the one before is
                           -- looked up only for a balance of zero or below)
    SELECT e.meter_id, e.at, e.day, billing.split_at(e.at, e.balance, before.at, before.balance, 'infinity') AS split_at
    FROM (SELECT r.meter_id, r.last_at AS at, r.day, r.last_balance AS balance FROM readings AS r
          UNION ALL
          SELECT d.meter_id, d.started_at, d.day, d.opening_balance FROM days AS d WHERE d.from_first) AS e
    CROSS JOIN bounds
    LEFT JOIN LATERAL (
        SELECT b."timestamp" AS at, b.balance FROM flows.meter_prepay_balance AS b
        WHERE e.balance <= 0 AND b.meter_id = e.meter_id AND b."timestamp" < e.at AND b."timestamp" >= bounds.t_before
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
), wholes AS (  -- each meter's whole days: their half hours (kWh per element) priced at the day's tariff
    SELECT r.meter_id, d.day, sum(d.import_kwh * CASE WHEN r.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END)
             AS cost, sum(d.intervals) AS n
    FROM flows.meter_registers AS r
    JOIN flows.register_interval_daily AS d ON d.register_id = r.register_id
    JOIN calendar AS k ON k.day = d.day
    JOIN periods AS p ON p.meter_id = r.meter_id AND p.valid_from <= k.starts AND p.valid_to >= k.ends
    WHERE r.meter_id IN (SELECT id FROM meters) AND d.day BETWEEN p_from - 1 AND p_to
    GROUP BY r.meter_id, d.day
    UNION ALL  -- a day a tariff changes in: its half hours, each at its rate
    SELECT x.meter_id, x.day, sum(x.kwh * CASE WHEN x.element = 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END), count(*)
    FROM (  -- the half hours by index, register by register (OFFSET 0 twice: neither a join of every half hour
           -- nor the tariff periods looked up for each)
        SELECT c.meter_id, c.day, r.element, h.hh, h.kwh
        FROM (SELECT DISTINCT p.meter_id, (p.valid_from AT TIME ZONE 'Europe/London')::date AS day FROM periods AS p
              WHERE p.valid_from > flows.uk_day_start((p.valid_from AT TIME ZONE 'Europe/London')::date)) AS c
        JOIN flows.meter_registers AS r ON r.meter_id = c.meter_id
        CROSS JOIN LATERAL (
            SELECT i."timestamp" AS hh, coalesce(i.import_kwh, 0) AS kwh FROM flows.register_interval_hh AS i
            WHERE i.register_id = r.register_id AND i."timestamp" >= flows.uk_day_start(c.day)
              AND i."timestamp" < flows.uk_day_start(c.day + 1)
              AND i."timestamp" >= r.start_time AND (r.end_time IS NULL OR i."timestamp" < r.end_time)
            OFFSET 0
        ) AS h
        WHERE c.day BETWEEN p_from - 1 AND p_to OFFSET 0
    ) AS x
    JOIN periods AS p ON p.meter_id = x.meter_id AND x.hh >= p.valid_from AND x.hh < p.valid_to
    GROUP BY x.meter_id, x.day
), cumulative AS (  -- running totals per meter of the whole days' cost and half hours
    SELECT m.id AS meter_id, g.day::date AS day,
           sum(coalesce(w.cost, 0)) OVER (PARTITION BY m.id ORDER BY g.day) AS cost,
           sum(coalesce(w.n, 0)) OVER (PARTITION BY m.id ORDER BY g.day) AS n
    FROM meters AS m
    CROSS JOIN generate_series(p_from - 1, p_to, interval '1 day') AS g (day)
    LEFT JOIN wholes AS w ON w.meter_id = m.id AND w.day = g.day
), midnights AS (
    SELECT * FROM billing.prepay_daily_charges(p_esco, p_from - 1, p_to)
), ledger AS (
    SELECT d.*, d.closing_balance - d.opening_balance AS observed_change,
           w1.cost - w0.cost - coalesce(t1.cost, 0) + coalesce(t0.cost, 0) AS energy_cost,
           coalesce(c1.charged, 0) - coalesce(c0.charged, 0) AS daily_charges,
           -- every element's every half hour the day overlaps
           n.n > 0 AND w1.n - w0.n - coalesce(t1.after, 0) + coalesce(t0.overlapping, 0)
             = n.n * (1 + extract(epoch FROM date_bin('30 minutes', d.ended_at - interval '1 microsecond', 'epoch')
                                          - date_bin('30 minutes', d.started_at, 'epoch')) / 1800) AS complete
    FROM days AS d
    JOIN cumulative AS w1 ON w1.meter_id = d.meter_id AND w1.day = d.day
    JOIN cumulative AS w0 ON w0.meter_id = d.meter_id AND w0.day = (d.started_at AT TIME ZONE 'Europe/London')::date
    LEFT JOIN tails AS t1 ON t1.meter_id = d.meter_id AND t1.at = d.ended_at
    LEFT JOIN tails AS t0 ON t0.meter_id = d.meter_id AND t0.at = d.started_at
    LEFT JOIN midnights AS c1 ON c1.meter_id = d.meter_id AND c1.day = d.day
    LEFT JOIN midnights AS c0 ON c0.meter_id = d.meter_id
                             AND c0.day = (d.started_at AT TIME ZONE 'Europe/London')::date
    LEFT JOIN (SELECT r.meter_id, count(DISTINCT r.element) AS n FROM flows.meter_registers AS r
               GROUP BY r.meter_id) AS n
      ON n.meter_id = d.meter_id
), special AS (  -- the meters an interval of which may be special: a day the charging model alone does not
                 -- explain, a balance below the emergency credit threshold, a credit or a token
    SELECT array_agg(DISTINCT x.meter_id) AS meters
    FROM (
        SELECT l.meter_id FROM ledger AS l CROSS JOIN settings
        LEFT JOIN (SELECT p.meter_id, max(p.ecredit_availability) AS threshold FROM periods AS p
                   WHERE p.emergency_credit > 0 GROUP BY p.meter_id) AS e ON e.meter_id = l.meter_id
        WHERE abs(l.observed_change + l.energy_cost + l.daily_charges) > settings.tolerance OR l.lowest < e.threshold
        UNION ALL
        SELECT t.meter_id FROM billing.topups AS t, bounds
        WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0 AND t.used_at >= bounds.t_before
          AND t.used_at < bounds.t_to + interval '10 minutes'
        UNION ALL
        SELECT e.meter_id FROM flows.meter_event_log AS e, bounds
        WHERE e.meter_id IN (SELECT id FROM meters) AND e.event_type = 48 AND e."timestamp" >= bounds.t_before
          AND e."timestamp" < bounds.t_to
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
    FROM billing.shadow_ledger_intervals(p_esco, p_from, p_to, (SELECT coalesce(x.meters, '{}') FROM special AS x)) AS s
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

GRANT EXECUTE ON FUNCTION
    billing.prepay_daily_charges(uuid, date, date),
    billing.shadow_ledger_intervals(uuid, date, date, uuid[])
TO flows_admin, flows_operator, flows_analyst, flows_service;

-- Reconciliation: payments <-> top-ups <-> credit on the meter, and the shadow
-- prepay ledger that explains every movement of a prepay balance
-- (docs/reconciliation.md). Everything is computed, set-based, from what is
-- recorded (payments, top-ups, meter_prepay_balance, meter_event_log,
-- register_interval_hh, meter_tariff_history) for one ESCO and a range of UK
-- days; only the operator's decisions on exceptions, the settings and the
-- debts meters were loaded with are stored.

-- Per ESCO (no row: the defaults): how long a succeeded payment may wait for
-- its completed top-up, and the tolerance of the shadow ledger per meter and day.
CREATE TABLE billing.reconciliation_settings (
    esco        uuid          PRIMARY KEY REFERENCES flows.escos (id) ON DELETE CASCADE,
    topup_grace interval      NOT NULL DEFAULT '2 hours',
    tolerance   numeric(6, 5) NOT NULL DEFAULT 0.01,
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT reconciliation_settings_grace_range CHECK (topup_grace BETWEEN '0' AND '14 days'),
    CONSTRAINT reconciliation_settings_tolerance_range CHECK (tolerance BETWEEN 0 AND 1)
);
COMMENT ON TABLE billing.reconciliation_settings IS
    'Per ESCO: topup_grace (a succeeded payment without a completed top-up after it is an exception) and '
    'tolerance (GBP per meter and day the shadow ledger forgives). Defaults when absent: 2 hours, 0.01.';

CREATE TRIGGER reconciliation_settings_touch BEFORE UPDATE ON billing.reconciliation_settings
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- Debt a prepay meter was loaded with (e.g. from the previous supplier), from
-- as_of: the meter recovers it at its tariff's debt recovery rate each UK
-- midnight until it is paid (the shadow ledger does the same).
CREATE TABLE billing.prepay_debts (
    meter_id    uuid           PRIMARY KEY,
    esco        uuid           NOT NULL,
    amount      numeric(10, 5) NOT NULL,
    as_of       timestamptz    NOT NULL,
    notes       text,
    recorded_by text           NOT NULL DEFAULT current_user,
    created_at  timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT prepay_debts_meter_esco_fkey FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco),
    CONSTRAINT prepay_debts_amount_range CHECK (amount BETWEEN 0 AND 10000)
);
COMMENT ON TABLE billing.prepay_debts IS
    'Debt loaded on a prepay meter at as_of, recovered by the meter at the debt recovery rate each UK midnight.';

-- An operator's decision on an exception, by its key (kind:subject, stable
-- across recomputations): acknowledged (being worked) or resolved, with a note.
CREATE TABLE billing.reconciliation_decisions (
    esco          uuid        NOT NULL,
    exception_key text        NOT NULL,
    kind          text        NOT NULL,
    status        text        NOT NULL,
    note          text        NOT NULL,
    decided_by    text        NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (esco, exception_key),
    CONSTRAINT reconciliation_decisions_esco_fkey FOREIGN KEY (esco) REFERENCES flows.escos (id),
    CONSTRAINT reconciliation_decisions_kind_valid CHECK (kind IN ('payment_without_topup', 'topup_without_credit',
        'credit_without_topup', 'emergency_credit_taken', 'unexplained_deduction')),
    CONSTRAINT reconciliation_decisions_status_valid CHECK (status IN ('acknowledged', 'resolved')),
    CONSTRAINT reconciliation_decisions_note_not_blank CHECK (btrim(note) <> '')
);
COMMENT ON TABLE billing.reconciliation_decisions IS
    'Operator decisions on reconciliation exceptions (by exception_key): acknowledged or resolved, with a note.';

-- The meter logs event 48 when it applies a credit token (BILLING.md, "Reconciliation"); the protocol's enum
-- leaves it unnamed, so recording it would otherwise name it unknown_48.
INSERT INTO flows.meter_event_log_type (id, name) VALUES (48, 'credit_token_applied')
ON CONFLICT (id) DO UPDATE SET name = excluded.name;

-- The tariff active on each meter over time, from the tariffs read from it:
-- each active tariff from its activation time (the future tariff it came from,
-- read as UK wall clock when the meter corrects for daylight saving), else from
-- when it was first read; the first one known is taken as active before that.
CREATE VIEW billing.meter_tariff_periods WITH (security_invoker = true) AS
SELECT p.meter_id, p.esco, p.valid_from,
       coalesce(lead(p.valid_from) OVER (PARTITION BY p.meter_id ORDER BY p.valid_from), 'infinity') AS valid_to,
       (p.tariff ->> 'unit_rate_element_a')::numeric AS unit_rate_a,
       coalesce(p.tariff ->> 'unit_rate_element_b', p.tariff ->> 'unit_rate_element_a')::numeric AS unit_rate_b,
       (p.tariff ->> 'standing_charge')::numeric AS standing_charge,
       coalesce((p.tariff ->> 'prepayment_debt_recovery_rate')::numeric, 0) AS debt_recovery_rate,
       coalesce((p.tariff ->> 'prepayment_emergency_credit')::numeric, 0) AS emergency_credit,
       coalesce((p.tariff ->> 'prepayment_ecredit_availability')::numeric, 0) AS ecredit_availability
FROM (
    SELECT h.meter_id, m.esco, h.tariff,
           CASE WHEN h."timestamp" = min(h."timestamp") OVER (PARTITION BY h.meter_id) THEN '-infinity'
                ELSE coalesce(activated.at, h."timestamp") END AS valid_from
    FROM flows.meter_tariff_history AS h
    JOIN flows.meter_registry AS m ON m.id = h.meter_id
    LEFT JOIN LATERAL (
        SELECT CASE WHEN m.daylight_savings_correction_enabled
                    THEN ((f.tariff ->> 'activation_datetime')::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'Europe/London'
                    ELSE (f.tariff ->> 'activation_datetime')::timestamptz END AS at
        FROM flows.meter_tariff_history AS f
        WHERE f.meter_id = h.meter_id AND f.kind = 'future' AND f."timestamp" <= h."timestamp"
          AND f.tariff ->> 'unit_rate_element_a' = h.tariff ->> 'unit_rate_element_a'
          AND f.tariff ->> 'standing_charge' = h.tariff ->> 'standing_charge'
        ORDER BY f."timestamp" DESC
        LIMIT 1
    ) AS activated ON activated.at <= h."timestamp"
    WHERE h.kind = 'active'
) AS p;
COMMENT ON VIEW billing.meter_tariff_periods IS
    'The tariff active on each meter from valid_from to valid_to (rates GBP: per kWh of element A and B, per day).';

-- The daily charges of each prepay meter of an ESCO at each UK midnight from
-- p_from to p_to (of the tariff active at that midnight: standing charge, and
-- debt recovery while a debt loaded on the meter lasts), as a running total
-- per meter: what the meter has taken from p_from's midnight to that day's.
-- p_meters: these meters only.
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

-- Where a balance observation splits the energy of the half hour it falls in
-- between the intervals before and after it. The half hour's energy is used
-- evenly, so at the observation's time; but the supply is off at a balance
-- of zero or below (the charging model, rule 5): an observation that finds it
-- off after a read with credit (the credit ran out since) splits at the half
-- hour's end, all used before it; one that finds it still off, as the read
-- before it did (in an earlier half hour), at the half hour's start, all used
-- after it (once a credit or the emergency credit brings the supply back).
-- At the time itself when the next read falls in the same half hour.
CREATE FUNCTION billing.split_at(p_at timestamptz, p_balance numeric, p_previous_at timestamptz,
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
COMMENT ON FUNCTION billing.split_at(timestamptz, numeric, timestamptz, numeric, timestamptz) IS
    'Where a balance observation splits the energy of its half hour: at its time; at the half hour''s end when it '
    'finds the supply off after a read with credit, at its start when the read before (p_previous_*, in an earlier '
    'half hour) found it off too; at its time when the next read (p_next_at) is in the same half hour.';

-- The shadow prepay ledger, interval by interval: between consecutive balance
-- observations of each prepay meter of the ESCO ending in the UK days
-- [p_from, p_to], what the charging model (docs/reconciliation.md) expects
-- and what the meter showed. Energy: each half hour's kWh per element x that
-- element's unit rate then, prorated inside the half hour an observation
-- falls in (billing.split_at: none of it after an observation that finds
-- the supply off); at each UK midnight the standing charge and the debt recovery;
-- credits: the completed top-ups (placed at the observation that read their
-- balance_after) and tokens the meter logged (event 48) that no top-up
-- explains; emergency credit: an upward step of the emergency credit amount
-- taken below the availability threshold, repaid first from the next credit.
-- residual = observed - expected, after all of that. p_steps_of: only these
-- meters' intervals a credit, a token, a rise of the balance or a balance
-- below the emergency credit threshold could make special (what
-- billing.shadow_ledger needs beyond its daily totals), their half hours
-- looked up by index; with p_steps_on (the UK day of each meter of
-- p_steps_of, pairwise: a meter may come several times) only the intervals
-- ending on those days, from the observations around them alone.
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

-- The shadow ledger per meter and UK day: what the sum of its intervals
-- (billing.shadow_ledger_intervals) gives, computed from the day's ends: the
-- energy between the observation before the day's first and its last is the
-- whole days' cost between them (register_interval_daily, priced by the
-- tariff of the day; a day a tariff changes in priced by its half hours), less
-- the half hours after the last observation of its day, plus those after the
-- first one's; only the intervals a credit, a rise or a low balance could make
-- special are computed one by one. A day is judged only when its half hours
-- are complete; beyond the tolerance its residual is a finding.
CREATE FUNCTION billing.shadow_ledger(p_esco uuid, p_from date, p_to date)
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

-- The three-way reconciliation of an ESCO for the UK days [p_from, p_to] from
-- one computation of the shadow ledger: its exceptions (kind set), each with
-- its evidence and any operator decision, and per day the ledger's tally
-- (kind NULL: meter-days in it, explained, incomplete). What
-- billing.reconciliation_exceptions and billing.reconciliation_summary read.
CREATE FUNCTION billing.reconciliation_findings(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (esco uuid, day date, kind text, exception_key text, meter_id uuid, account_id uuid, amount numeric,
               reason text, evidence jsonb, status text, note text, decided_by text, decided_at timestamptz,
               meters_ledgered integer, meter_days_explained integer, meter_days_incomplete integer)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH settings AS (
    SELECT coalesce((SELECT s.topup_grace FROM billing.reconciliation_settings AS s WHERE s.esco = p_esco),
                    interval '2 hours') AS grace
), bounds AS (
    SELECT flows.uk_day_start(p_from) AS t_from, flows.uk_day_start(p_to + 1) AS t_to
), ledger AS MATERIALIZED (  -- computed once for both kinds of findings and the tallies
    SELECT * FROM billing.shadow_ledger(p_esco, p_from, p_to)
), found AS (
    -- a succeeded payment whose top-up failed or was cancelled, or is not completed after the grace period
    -- counted from when Flows learned of the payment (a bank transfer imported days after its booking date
    -- has its grace from then)
    SELECT (p.received_at AT TIME ZONE 'Europe/London')::date AS day, 'payment_without_topup' AS kind,
           p.id::text AS subject, a.meter_id, p.account_id, p.amount,
           CASE WHEN t.id IS NULL THEN 'no top-up was created for the payment'
                ELSE format('its top-up is %s%s', t.status,
                            coalesce(': ' || coalesce(t.last_error, t.waiting_reason), ' (' || t.notes || ')', ''))
           END AS reason,
           jsonb_build_object('payment', jsonb_build_object('id', p.id, 'amount', p.amount, 'provider', p.provider,
                                                            'received_at', p.received_at, 'reference', p.provider_reference),
                              'topup', CASE WHEN t.id IS NOT NULL THEN jsonb_build_object(
                                  'id', t.id, 'status', t.status, 'rounds', t.rounds, 'last_error', t.last_error,
                                  'waiting_reason', t.waiting_reason, 'notes', t.notes) END,
                              'grace', settings.grace) AS evidence
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    LEFT JOIN billing.topups AS t ON t.payment_id = p.id
    CROSS JOIN settings CROSS JOIN bounds
    WHERE p.esco = p_esco AND p.status = 'succeeded' AND p.received_at >= bounds.t_from AND p.received_at < bounds.t_to
      AND (t.status IN ('cancelled', 'failed_token_fetch', 'failed_token_push')
           OR greatest(p.received_at, p.created_at) + settings.grace < now())
      AND a.type = 'supply' AND billing.topup_problem(a, true) IS NULL
      AND (t.id IS NULL OR t.status <> 'completed')
    UNION ALL
    -- a completed top-up the meter shows no credit for: no credit event near it (once the meter's log was read
    -- past it), no transaction count, or a balance that did not rise
    SELECT (t.used_at AT TIME ZONE 'Europe/London')::date, 'topup_without_credit', t.id::text, t.meter_id,
           t.account_id, t.amount,
           concat_ws('; ',
               CASE WHEN event.at IS NULL AND log.read_past THEN 'the meter logged no credit (event 48) for it' END,
               CASE WHEN t.transaction_count IS NULL THEN 'no token transaction count was read after it' END,
               CASE WHEN t.balance_after <= t.balance_before THEN
                   format('the balance did not rise (%s -> %s)', t.balance_before, t.balance_after) END),
           jsonb_build_object('topup', jsonb_build_object('id', t.id, 'amount', t.amount, 'used_at', t.used_at,
                                                          'transaction_count', t.transaction_count,
                                                          'balance_before', t.balance_before,
                                                          'balance_after', t.balance_after, 'token', t.token),
                              'credit_event', event.at, 'event_log_read_past', log.read_past)
    FROM billing.topups AS t
    CROSS JOIN bounds
    LEFT JOIN LATERAL (
        SELECT max(e."timestamp") AS at FROM flows.meter_event_log AS e
        WHERE e.meter_id = t.meter_id AND e.event_type = 48
          AND e."timestamp" BETWEEN t.used_at - interval '15 minutes' AND t.used_at + interval '15 minutes'
    ) AS event ON true
    CROSS JOIN LATERAL (  -- an event dated after now is a meter clock running ahead: no sign the log was read past
        SELECT EXISTS (SELECT FROM flows.meter_event_log AS e
                       WHERE e.meter_id = t.meter_id AND e."timestamp" > t.used_at + interval '15 minutes'
                         AND e."timestamp" <= pg_catalog.now()) AS read_past
    ) AS log
    WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0
      AND t.used_at >= bounds.t_from AND t.used_at < bounds.t_to
      AND ((event.at IS NULL AND log.read_past) OR t.transaction_count IS NULL OR t.balance_after <= t.balance_before)
    UNION ALL
    -- from the shadow ledger: tokens no top-up explains, emergency credit taken
    SELECT l.day, CASE WHEN i.credit_events > 0 THEN 'credit_without_topup' ELSE 'emergency_credit_taken' END,
           format('%s:%s', l.meter_id, extract(epoch FROM i.ended_at)::bigint), l.meter_id, a.id,
           CASE WHEN i.credit_events > 0 THEN i.token_credit ELSE i.emergency_credit END,
           CASE WHEN i.credit_events > 0
                THEN format('the meter logged %s credit token(s) (event 48) no top-up explains: a token typed on the '
                            'keypad?', i.credit_events)
                ELSE format('the balance rose by the emergency credit (%s) below the threshold (%s)',
                            i.emergency_credit, i.opening_balance) END,
           step - 'token_credit' - 'emergency_credit'
    FROM ledger AS l
    CROSS JOIN LATERAL jsonb_array_elements(l.steps) AS step
    CROSS JOIN LATERAL jsonb_to_record(step) AS i (ended_at timestamptz, opening_balance numeric, credit_events integer,
                                                   token_credit numeric, emergency_credit numeric)
    LEFT JOIN billing.accounts AS a ON a.meter_id = l.meter_id AND a.type = 'supply' AND a.status <> 'closed'
    UNION ALL
    -- from the shadow ledger: a day whose balance moved more than the charging model explains
    SELECT l.day, CASE l.finding WHEN 'unexplained_deduction' THEN 'unexplained_deduction' ELSE 'credit_without_topup' END,
           format('%s:%s', l.meter_id, l.day), l.meter_id, a.id, abs(l.residual),
           CASE l.finding WHEN 'unexplained_deduction'
                THEN format('the balance fell %s more than consumption, standing charge and debt recovery explain',
                            -l.residual)
                ELSE format('the balance rose %s more than top-ups explain, with no credit event', l.residual) END,
           jsonb_build_object('opening_balance', l.opening_balance, 'closing_balance', l.closing_balance,
                              'observations', l.observations, 'energy_cost', l.energy_cost,
                              'daily_charges', l.daily_charges, 'topup_credits', l.topup_credits,
                              'emergency_credit', l.emergency_credit, 'repaid', l.repaid,
                              'expected_change', l.expected_change, 'observed_change', l.observed_change,
                              'residual', l.residual)
    FROM ledger AS l
    LEFT JOIN billing.accounts AS a ON a.meter_id = l.meter_id AND a.type = 'supply' AND a.status <> 'closed'
    WHERE l.finding IS NOT NULL
)
SELECT p_esco, f.day, f.kind, f.kind || ':' || f.subject, f.meter_id, f.account_id, f.amount, f.reason, f.evidence,
       coalesce(d.status, 'open'), d.note, d.decided_by, d.decided_at, NULL::integer, NULL::integer, NULL::integer
FROM found AS f
LEFT JOIN billing.reconciliation_decisions AS d ON d.esco = p_esco AND d.exception_key = f.kind || ':' || f.subject
UNION ALL
SELECT p_esco, l.day, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(*)::integer,
       (count(*) FILTER (WHERE l.complete AND l.finding IS NULL))::integer,
       (count(*) FILTER (WHERE NOT l.complete))::integer
FROM ledger AS l
GROUP BY l.day
$$;
COMMENT ON FUNCTION billing.reconciliation_findings(uuid, date, date) IS
    'The reconciliation of an ESCO for UK days p_from..p_to from one computation of the shadow ledger: the '
    'exceptions (kind set, as billing.reconciliation_exceptions) and per day the ledger''s tally (kind NULL: '
    'meters_ledgered, meter_days_explained, meter_days_incomplete).';

-- The three-way reconciliation's exceptions of an ESCO for the UK days
-- [p_from, p_to], each with its evidence and any operator decision.
CREATE FUNCTION billing.reconciliation_exceptions(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (esco uuid, day date, kind text, exception_key text, meter_id uuid, account_id uuid, amount numeric,
               reason text, evidence jsonb, status text, note text, decided_by text, decided_at timestamptz)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
SELECT f.esco, f.day, f.kind, f.exception_key, f.meter_id, f.account_id, f.amount, f.reason, f.evidence, f.status,
       f.note, f.decided_by, f.decided_at
FROM billing.reconciliation_findings(p_esco, p_from, p_to) AS f
WHERE f.kind IS NOT NULL
$$;
COMMENT ON FUNCTION billing.reconciliation_exceptions(uuid, date, date) IS
    'Typed reconciliation exceptions of an ESCO for UK days p_from..p_to (payment_without_topup, '
    'topup_without_credit, credit_without_topup, emergency_credit_taken, unexplained_deduction) with evidence '
    'and the operator''s decision (status open | acknowledged | resolved).';

-- The day's picture per ESCO: what matched, and the exceptions by kind.
CREATE FUNCTION billing.reconciliation_summary(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (esco uuid, day date, payments integer, payments_matched integer, topups integer,
               topups_matched integer, credit_events integer, meters_ledgered integer, meter_days_explained integer,
               meter_days_incomplete integer, exceptions jsonb, open_exceptions integer)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH days AS (
    SELECT g.day::date AS day FROM generate_series(p_from, p_to, interval '1 day') AS g (day)
), findings AS MATERIALIZED (  -- the exceptions and the shadow ledger's tallies, from one computation of the ledger
    SELECT * FROM billing.reconciliation_findings(p_esco, p_from, p_to)
), exceptions AS (
    SELECT * FROM findings AS f WHERE f.kind IS NOT NULL
), ledger AS (
    SELECT * FROM findings AS f WHERE f.kind IS NULL
)
SELECT p_esco, d.day,
       (SELECT count(*) FROM billing.payments AS p
        WHERE p.esco = p_esco AND p.status = 'succeeded'
          AND (p.received_at AT TIME ZONE 'Europe/London')::date = d.day)::integer,
       (SELECT count(*) FROM billing.payments AS p JOIN billing.topups AS t ON t.payment_id = p.id
        WHERE p.esco = p_esco AND p.status = 'succeeded' AND t.status = 'completed'
          AND (p.received_at AT TIME ZONE 'Europe/London')::date = d.day)::integer,
       (SELECT count(*) FROM billing.topups AS t
        WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0
          AND (t.used_at AT TIME ZONE 'Europe/London')::date = d.day)::integer,
       (SELECT count(*) FROM billing.topups AS t
        WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0
          AND (t.used_at AT TIME ZONE 'Europe/London')::date = d.day
          AND NOT EXISTS (SELECT FROM exceptions AS x
                          WHERE x.kind = 'topup_without_credit' AND x.exception_key = 'topup_without_credit:' || t.id))::integer,
       (SELECT count(*) FROM flows.meter_event_log AS e JOIN flows.meter_registry AS m ON m.id = e.meter_id
        WHERE m.esco = p_esco AND e.event_type = 48 AND e."timestamp" >= flows.uk_day_start(d.day)
          AND e."timestamp" < flows.uk_day_start(d.day + 1))::integer,
       coalesce((SELECT l.meters_ledgered FROM ledger AS l WHERE l.day = d.day), 0),
       coalesce((SELECT l.meter_days_explained FROM ledger AS l WHERE l.day = d.day), 0),
       coalesce((SELECT l.meter_days_incomplete FROM ledger AS l WHERE l.day = d.day), 0),
       coalesce((SELECT jsonb_object_agg(k.kind, k.n)
                 FROM (SELECT x.kind, count(*) AS n FROM exceptions AS x WHERE x.day = d.day GROUP BY x.kind) AS k),
                '{}'),
       (SELECT count(*) FROM exceptions AS x WHERE x.day = d.day AND x.status <> 'resolved')::integer
FROM days AS d
$$;
COMMENT ON FUNCTION billing.reconciliation_summary(uuid, date, date) IS
    'Per UK day: succeeded payments (and matched to a completed top-up), completed top-ups (and matched to '
    'credit on the meter), credit events, meters in the shadow ledger (explained, incomplete), exceptions by kind.';

-- Computing statements, set-based: every account of a run in a handful of
-- statements, never a loop per account.
--
--   billed_periods   who pays each billed account when in the month
--                    (occupier, else owner), within the account's life
--   statement_lines  those periods split where the payer's tariff changes and
--                    where a register starts or ends: energy per register
--                    (kWh from the half hours) and standing charge per day
--   compute_statements  rounds per statement (billing/money.sql) and writes the
--                    drafts: figures, balances, top-ups and lines, a row each
--                    (a draft holds its lines: billing/statements.sql)
--   statement_details   what a statement prints besides (names, address, meter,
--                    reads, tariffs, 12 months of kWh): frozen when it is issued

-- Statements look a meter's registers up by meter, whatever their status
-- (flows only indexes the enabled ones per element).
CREATE INDEX meter_registers_meter_idx ON flows.meter_registers (meter_id);

-- A run reads who pays its ESCO's accounts (billing.payer_periods by ESCO and
-- role: occupiers, then owners), not every ESCO's occupancies.
CREATE INDEX customer_accounts_esco_role_idx ON billing.customer_accounts (esco, role);

-- Statements take whole UK months from the monthly rollup (one row a month
-- instead of ~31 daily ones scattered over as many pages), which does not
-- count estimated half hours: they look those up here, in the few days that
-- have any (rows change estimated rarely: when reads-derived half hours are
-- replaced by the meter's log).
CREATE INDEX register_interval_daily_estimated_idx ON flows.register_interval_daily (register_id, day)
    WHERE estimated > 0;

-- Energy a register measured from p_from to p_to: whole UK days from the daily
-- rollup, the part-days at either edge from the half hours (index range
-- lookups both), so a month costs ~31 rows, not ~1,488, and a split at any half
-- hour is exact. Estimated = half hours derived from reads, not the meter's log.
CREATE FUNCTION billing.energy_between(p_register uuid, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (import_kwh numeric, half_hours bigint, estimated_half_hours bigint)
LANGUAGE sql STABLE
AS $$
    WITH edges AS (
        SELECT flows.uk_day_start(first_full) AS full_from, flows.uk_day_start(end_day) AS full_to,
               first_full, end_day, first_full < end_day AS has_full_days
        FROM (SELECT CASE WHEN flows.uk_day_start(flows.uk_day(p_from)) = p_from THEN flows.uk_day(p_from)
                          ELSE flows.uk_day(p_from) + 1 END AS first_full,
                     flows.uk_day(p_to) AS end_day) AS d
    )
    SELECT coalesce(sum(x.kwh), 0), coalesce(sum(x.n), 0)::bigint, coalesce(sum(x.est), 0)::bigint
    FROM (
        SELECT d.import_kwh AS kwh, d.intervals AS n, d.estimated AS est
        FROM edges AS g
        JOIN flows.register_interval_daily AS d
          ON d.register_id = p_register AND d.day >= g.first_full AND d.day < g.end_day
        WHERE g.has_full_days
        UNION ALL
        SELECT h.import_kwh, 1, (h.source = 'reads')::integer
        FROM edges AS g
        JOIN flows.register_interval_hh AS h
          ON h.register_id = p_register AND h."timestamp" >= p_from
         AND h."timestamp" < CASE WHEN g.has_full_days THEN g.full_from ELSE p_to END
        UNION ALL
        SELECT h.import_kwh, 1, (h.source = 'reads')::integer
        FROM edges AS g
        JOIN flows.register_interval_hh AS h
          ON h.register_id = p_register AND h."timestamp" >= g.full_to AND h."timestamp" < p_to
        WHERE g.has_full_days
    ) AS x
$$;
COMMENT ON FUNCTION billing.energy_between(uuid, timestamptz, timestamptz) IS
    'Import kWh of a register from p_from to p_to, the half hours present and how many were estimated.';

-- The UK calendar month as a time range (Europe/London midnights).
CREATE FUNCTION billing.month_range(p_period_start date) RETURNS tstzrange
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN tstzrange(flows.uk_day_start(p_period_start), flows.uk_day_start((p_period_start + interval '1 month')::date));

-- Who pays which billed account when in a month: supply and ev accounts that
-- are not pending, while open. (p.esco: the view then reads only this ESCO's
-- occupancies, not every ESCO's.)
CREATE FUNCTION billing.billed_periods(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (account_id uuid, meter_id uuid, customer_id uuid, period tstzrange)
LANGUAGE sql STABLE
AS $$
    SELECT a.id, a.meter_id, p.customer_id, x.period
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.esco = p_esco
    CROSS JOIN LATERAL (SELECT p.period * billing.month_range(p_period_start)
                               * tstzrange(a.opened_at, a.closed_at) AS period) AS x
    WHERE a.esco = p_esco AND a.type IN ('supply', 'ev') AND a.status <> 'pending'
      AND (p_accounts IS NULL OR a.id = ANY (p_accounts))
      AND NOT isempty(x.period)
$$;
COMMENT ON FUNCTION billing.billed_periods(uuid, date, uuid[]) IS
    'Per billed account of an ESCO and month: who pays it when (occupier, else owner), while the account is open.';

-- What billing.statement_lines calls before giving any line: raises when a
-- billed half hour has no customer tariff in force (p_missing names them),
-- else true. What create_billing_run refuses to bill, nothing written.
CREATE FUNCTION billing.refuse_periods_without_tariff(p_missing text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF p_missing IS NOT NULL THEN
        RAISE EXCEPTION 'no tariff in force for %', p_missing
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give the customers a tariff for the quarter (rpc/generate_customer_tariffs) and run again';
    END IF;
    RETURN true;
END
$$;

-- The lines of every statement of an ESCO's month (all accounts, or
-- p_accounts), unrounded. Energy is what billing.energy_between gives, written
-- out as joins so that the whole month is a few grouped passes: whole UK
-- months from the monthly rollup, the other whole UK days from the daily one,
-- the part-days at the edges of a period from the half hours (only periods
-- that start or end mid-day have edges); estimated half hours from the days
-- that have any. Only the ESCO's tariffs and registers are read (t.esco,
-- r.esco: a platform of many ESCOs hashes none of the others' rows).
-- A statement needs a customer tariff for every half hour it bills: when a
-- billed period has one without, it gives no line but raises, naming them all
-- (billing.refuse_periods_without_tariff, a one-time filter before any row).
CREATE FUNCTION billing.statement_lines(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (
    account_id uuid, customer_id uuid, kind text, register_id uuid, element text, nature text,
    customer_tariff_id uuid, period_from timestamptz, period_to timestamptz, quantity numeric, unit text,
    rate numeric, amount_exact numeric, half_hours integer, expected_half_hours integer,
    estimated_half_hours integer, meter_rate numeric
)
LANGUAGE sql STABLE
AS $$
    WITH paid AS MATERIALIZED (  -- billed periods with the payer's tariffs in force in them (none: NULLs)
        SELECT b.account_id, b.meter_id, b.customer_id, b.period AS billed, t.id AS customer_tariff_id, t.unit_rate,
               t.standing_charge, tstzrange(t.effective_from, t.effective_to) AS in_force
        FROM billing.billed_periods(p_esco, p_period_start, p_accounts) AS b
        LEFT JOIN billing.customer_tariffs AS t  -- overlapping (&& on ranges is estimated at 1 row in 200)
          ON t.customer_id = b.customer_id AND t.esco = p_esco AND t.effective_from < upper(b.period) AND t.effective_to > lower(b.period)
    ),
    refused AS (  -- true, or an error naming each billed period's first part without a tariff
        SELECT billing.refuse_periods_without_tariff(
                   string_agg(pg_catalog.format('account %s (%s) from %s to %s', a.account_number, c.fullname,
                                                lower(u.r), upper(u.r)), '; ' ORDER BY a.account_number)) AS ok
        FROM (
            SELECT p.account_id, p.customer_id,
                   tstzmultirange(p.billed) - coalesce(range_agg(p.in_force) FILTER (WHERE p.customer_tariff_id IS NOT NULL),
                                                       '{}'::tstzmultirange) AS uncovered
            FROM paid AS p
            GROUP BY p.account_id, p.customer_id, p.billed
        ) AS g
        JOIN billing.accounts AS a ON a.id = g.account_id
        JOIN billing.customers AS c ON c.id = g.customer_id
        CROSS JOIN LATERAL (SELECT x AS r FROM unnest(g.uncovered) AS x LIMIT 1) AS u
        WHERE NOT isempty(g.uncovered)
    ),
    segments AS MATERIALIZED (  -- a payer's period split where their tariff changes
        SELECT p.account_id, p.meter_id, p.customer_id, p.customer_tariff_id, p.unit_rate, p.standing_charge,
               p.billed * p.in_force AS period
        FROM paid AS p
        WHERE p.customer_tariff_id IS NOT NULL
    ),
    register_segments AS MATERIALIZED (  -- ... and where a register starts or ends
        -- (each level computes its columns once: OFFSET 0 keeps the planner from
        -- pasting the UK-day arithmetic into every expression that uses them)
        SELECT g.*,
               -- the whole UK months in [first_full, end_day) (none: both end_day)
               CASE WHEN m.m_from < m.m_to THEN m.m_from ELSE g.end_day END AS months_from,
               CASE WHEN m.m_from < m.m_to THEN m.m_to ELSE g.end_day END AS months_to
        FROM (
            SELECT p.*,
                   CASE WHEN flows.uk_day_start(p.from_day) = p.from_time THEN p.from_day ELSE p.from_day + 1 END
                       AS first_full,
                   flows.uk_day(p.to_time) AS end_day
            FROM (
                SELECT x.*, lower(x.period) AS from_time, upper(x.period) AS to_time,
                       flows.uk_day(lower(x.period)) AS from_day
                FROM (
                    SELECT s.account_id, s.meter_id, s.customer_id, s.customer_tariff_id, s.unit_rate, r.register_id,
                           r.element, r.nature, s.period * tstzrange(r.start_time, r.end_time) AS period
                    FROM segments AS s
                    JOIN flows.meter_registers AS r ON r.meter_id = s.meter_id AND r.esco = p_esco AND r.nature <> 'solar'
                    OFFSET 0
                ) AS x
                WHERE NOT isempty(x.period)
                OFFSET 0
            ) AS p
            OFFSET 0
        ) AS g
        CROSS JOIN LATERAL (
            SELECT CASE WHEN flows.uk_month(g.first_full) = g.first_full THEN g.first_full
                        ELSE (flows.uk_month(g.first_full) + interval '1 month')::date END AS m_from,
                   flows.uk_month(g.end_day) AS m_to
        ) AS m
    ),
    whole_days AS (
        SELECT x.register_id, x.from_time, sum(x.kwh) AS kwh, sum(x.half_hours) AS half_hours,
               sum(x.estimated) AS estimated
        FROM (
            SELECT g.register_id, g.from_time, m.import_kwh AS kwh, m.intervals AS half_hours, 0 AS estimated
            FROM register_segments AS g
            JOIN flows.register_interval_monthly AS m
              ON m.register_id = g.register_id AND m.month >= g.months_from AND m.month < g.months_to
            UNION ALL  -- days before the first whole month, and from the end of the last one
            SELECT g.register_id, g.from_time, d.import_kwh, d.intervals, 0
            FROM register_segments AS g
            CROSS JOIN LATERAL (VALUES (g.first_full, g.months_from), (g.months_to, g.end_day)) AS r (from_day, to_day)
            JOIN flows.register_interval_daily AS d
              ON d.register_id = g.register_id AND d.day >= r.from_day AND d.day < r.to_day
            WHERE r.from_day < r.to_day
            UNION ALL  -- estimated half hours of every whole day (register_interval_daily_estimated_idx)
            SELECT g.register_id, g.from_time, 0, 0, d.estimated
            FROM register_segments AS g
            JOIN flows.register_interval_daily AS d
              ON d.register_id = g.register_id AND d.day >= g.first_full AND d.day < g.end_day
             AND d.estimated > 0
        ) AS x
        GROUP BY x.register_id, x.from_time
    ),
    edge_half_hours AS (
        SELECT g.register_id, g.from_time, sum(h.import_kwh) AS kwh, count(*) AS half_hours,
               count(*) FILTER (WHERE h.source = 'reads') AS estimated
        FROM register_segments AS g
        CROSS JOIN LATERAL (  -- before the first whole day, and from the end of the last one
            VALUES (g.from_time, least(g.to_time, flows.uk_day_start(g.first_full))),
                   (greatest(g.from_time, flows.uk_day_start(g.end_day)), g.to_time)) AS e (from_time, to_time)
        JOIN flows.register_interval_hh AS h
          ON h.register_id = g.register_id AND h."timestamp" >= e.from_time AND h."timestamp" < e.to_time
        WHERE (g.first_full >= g.end_day AND e.from_time = g.from_time)  -- within one day: the first range only
           OR (g.first_full < g.end_day AND e.from_time < e.to_time)
        GROUP BY g.register_id, g.from_time
    ),
    meter_tariffs AS (  -- what the meter charged: its active tariff as last read before a period ended
        SELECT s.meter_id, s.period, mt.tariff
        FROM (SELECT DISTINCT meter_id, period FROM segments) AS s
        CROSS JOIN LATERAL (
            SELECT h.tariff FROM flows.meter_tariff_history AS h
            WHERE h.meter_id = s.meter_id AND h.kind = 'active' AND h."timestamp" < upper(s.period)
            ORDER BY h."timestamp" DESC LIMIT 1
        ) AS mt
    )
    SELECT g.account_id, g.customer_id, 'energy', g.register_id, g.element, g.nature, g.customer_tariff_id,
           g.from_time, g.to_time, x.kwh, 'kWh', g.unit_rate,
           billing.net_of_vat(x.kwh * g.unit_rate),
           x.half_hours::integer,
           ceil(extract(epoch FROM g.to_time - g.from_time) / 1800)::integer,
           x.estimated::integer,
           (mt.tariff ->> CASE g.element WHEN 'B' THEN 'unit_rate_element_b' ELSE 'unit_rate_element_a' END)::numeric
    FROM register_segments AS g
    LEFT JOIN whole_days AS w ON w.register_id = g.register_id AND w.from_time = g.from_time
    LEFT JOIN edge_half_hours AS e ON e.register_id = g.register_id AND e.from_time = g.from_time
    CROSS JOIN LATERAL (SELECT coalesce(w.kwh, 0) + coalesce(e.kwh, 0) AS kwh,
                               coalesce(w.half_hours, 0) + coalesce(e.half_hours, 0) AS half_hours,
                               coalesce(w.estimated, 0) + coalesce(e.estimated, 0) AS estimated) AS x
    LEFT JOIN meter_tariffs AS mt
      ON mt.meter_id = g.meter_id AND mt.period @> g.from_time
    WHERE (SELECT r.ok FROM refused AS r)
    UNION ALL
    SELECT s.account_id, s.customer_id, 'standing_charge', NULL, NULL, NULL, s.customer_tariff_id,
           lower(s.period), upper(s.period), d.days, 'day', s.standing_charge,
           billing.net_of_vat(d.days * s.standing_charge), NULL, NULL, NULL,
           (mt.tariff ->> 'standing_charge')::numeric
    FROM segments AS s
    CROSS JOIN LATERAL (  -- (a whole month, most: its days, without the time zone arithmetic)
        SELECT CASE WHEN s.period = billing.month_range(p_period_start)
                    THEN billing.round_half_up(((p_period_start + interval '1 month')::date - p_period_start)::numeric, 5)
                    ELSE billing.uk_days(lower(s.period), upper(s.period)) END AS days
    ) AS d
    LEFT JOIN meter_tariffs AS mt ON mt.meter_id = s.meter_id AND mt.period = s.period
    WHERE (SELECT r.ok FROM refused AS r)
$$;
COMMENT ON FUNCTION billing.statement_lines(uuid, date, uuid[]) IS
    'Statement lines of an ESCO''s month, unrounded: energy per register and tariff period, standing charge per day '
    '(raises, naming them, when a billed half hour has no customer tariff in force).';



-- What a statement prints besides its figures and lines, frozen into
-- billing.invoices.details when it is issued (billing.issue_invoices): names,
-- supply address, account number, the ESCO's contact, the meter, the reads at
-- either end, the tariffs and their price cap, 12 months of the meter's kWh
-- and an annual estimate. A draft holds none of it: api.invoices computes it
-- for drafts (as it would be issued now), so that a run recomputed again and
-- again does not build documents that are thrown away. Set-based: each part
-- one grouped pass over the statements asked for. Each JSON object is a row
-- (its columns are the keys) and each list an array of rows, turned into JSON
-- once, by the one to_jsonb of the whole document.
-- PL/pgSQL: never inlined into api.invoices, whose readers then need its
-- tables only when they read a draft. Many (issuing a run): planned for the
-- statements asked each time, hash joins, whatever the statistics say of
-- drafts written moments ago (analyzed while the table held none, a run's
-- 1,000 are estimated as one statement, and nested loops over them took 40 s).
-- A few (a draft read through api.invoices, once per row): index lookups, one
-- generic plan kept for the session (planning was 3.5 of the 3.7 ms a draft
-- took: listing a run's 1,000 drafts took 3.3 s). JIT off (as for the run:
-- compiling would take seconds; nested loops turned off also make every
-- plan's cost look far above jit_above_cost). (The SET clauses of enable_nestloop
-- and plan_cache_mode are there so that the set_config(..., true) inside is
-- undone when it returns, whatever the caller had.)
CREATE FUNCTION billing.statement_details(p_invoices uuid[])
RETURNS TABLE (invoice_id uuid, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = ''
SET jit = off
SET plan_cache_mode = force_custom_plan
SET enable_nestloop = on
AS $$
BEGIN
    PERFORM pg_catalog.set_config('enable_nestloop', (pg_catalog.cardinality(p_invoices) <= 20)::text, true);
    PERFORM pg_catalog.set_config('plan_cache_mode', CASE WHEN pg_catalog.cardinality(p_invoices) <= 20
                                                          THEN 'force_generic_plan' ELSE 'force_custom_plan' END, true);
    RETURN QUERY
    WITH statements AS MATERIALIZED (  -- with what they print of the account, payer, home and meter
        SELECT i.id, i.esco, i.period_start, i.period_from, i.period_to, a.meter_id, a.account_number,
               a.type AS account_type, c.fullname, c.email, concat_ws(', ', p.plot, p.address, si.name) AS supply_address,
               m.serial, m.hardware, m.prepay_enabled
        FROM billing.invoices AS i
        JOIN billing.accounts AS a ON a.id = i.account_id
        JOIN billing.customers AS c ON c.id = i.customer_id
        JOIN flows.properties AS p ON p.id = a.property
        JOIN flows.sites AS si ON si.id = p.site
        JOIN flows.meter_registry AS m ON m.id = a.meter_id
        WHERE i.id = ANY (p_invoices)
    ),
    lines AS MATERIALIZED (
        SELECT l.invoice_id, l.kind, l.register_id, l.element, l.customer_tariff_id, l.period_from, l.quantity, l.half_hours,
               l.expected_half_hours, l.estimated_half_hours
        FROM billing.all_invoice_lines AS l  -- (a draft's own: statement_details runs before issuing)
        WHERE l.invoice_id = ANY (p_invoices)
    ),
    per_register AS (
        -- kWh as the run summed them: half hours of 3 decimals (0 where there were none)
        SELECT l.invoice_id, l.register_id, l.element,
               CASE WHEN sum(l.half_hours) = 0 THEN 0 ELSE round(sum(l.quantity), 3) END AS kwh,
               sum(l.half_hours) AS half_hours, sum(l.expected_half_hours) AS expected,
               sum(l.estimated_half_hours) AS estimated, min(l.period_from) AS first_from
        FROM lines AS l
        WHERE l.kind = 'energy'
        GROUP BY l.invoice_id, l.register_id, l.element
    ),
    readings AS (  -- by element, a replaced register before its successor
        SELECT r.invoice_id, sum(r.estimated) AS estimated,
               array_agg(j ORDER BY j.element, r.first_from, j.register_id) AS readings
        FROM per_register AS r
        JOIN statements AS t ON t.id = r.invoice_id
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_from
                           ORDER BY x."timestamp" DESC LIMIT 1) AS sr ON true
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_to
                           ORDER BY x."timestamp" DESC LIMIT 1) AS er ON true
        CROSS JOIN LATERAL (SELECT r.register_id, r.element, sr.read AS start_read, sr."timestamp" AS start_read_at,
                                   er.read AS end_read, er."timestamp" AS end_read_at, r.kwh, r.half_hours,
                                   r.expected AS expected_half_hours, r.estimated AS estimated_half_hours,
                                   r.estimated > 0 OR r.half_hours < r.expected AS estimated) AS j
        GROUP BY r.invoice_id
    ),
    tariffs AS (
        SELECT u.invoice_id,
               array_agg(j ORDER BY j.effective_from) AS tariffs,
               (array_agg(ct.unit_rate ORDER BY ct.effective_from DESC))[1] AS unit_rate,
               (array_agg(ct.standing_charge ORDER BY ct.effective_from DESC))[1] AS standing_charge
        FROM (SELECT DISTINCT l.invoice_id, l.customer_tariff_id FROM lines AS l) AS u
        JOIN billing.customer_tariffs AS ct ON ct.id = u.customer_tariff_id
        JOIN billing.microgrid_tariffs AS mg ON mg.id = ct.microgrid_tariff_id
        JOIN billing.benchmark_tariffs AS bt ON bt.region = mg.region AND bt.period_start = mg.period_start
        CROSS JOIN LATERAL (SELECT ct.id AS customer_tariff_id, ct.effective_from, ct.effective_to, ct.discount,
                                   ct.unit_rate, ct.standing_charge, bt.unit_rate AS cap_unit_rate,
                                   bt.standing_charge AS cap_standing_charge, mg.region) AS j
        GROUP BY u.invoice_id
    ),
    meter_months AS (  -- the kWh of the meters in each of the 12 months to the statement's, where any
        SELECT t.meter_id, t.period_start, x.month, sum(x.import_kwh) AS kwh
        FROM (SELECT DISTINCT t.meter_id, t.period_start FROM statements AS t) AS t
        JOIN flows.meter_registers AS r ON r.meter_id = t.meter_id AND r.nature <> 'solar'
        JOIN flows.register_interval_monthly AS x
          ON x.register_id = r.register_id AND x.month > (t.period_start - interval '12 months')::date
         AND x.month <= t.period_start
        GROUP BY t.meter_id, t.period_start, x.month
    ),
    usage AS (  -- every one of the 12 months (whoever paid then), 0 where the meter measured nothing
        SELECT t.id AS invoice_id,
               array_agg(u ORDER BY u.month) AS months,
               coalesce(sum(mm.kwh), 0) AS total,
               -- a year's kWh: the last 12 months, scaled up when fewer months have data
               billing.round_half_up(coalesce(sum(mm.kwh), 0) * 12 / greatest(count(*) FILTER (WHERE mm.kwh > 0), 1),
                                     0) AS annual
        FROM statements AS t
        CROSS JOIN LATERAL generate_series(t.period_start - interval '11 months', t.period_start::timestamp,
                                           interval '1 month') AS mo
        LEFT JOIN meter_months AS mm
          ON mm.meter_id = t.meter_id AND mm.period_start = t.period_start AND mm.month = mo::date
        CROSS JOIN LATERAL (SELECT mo::date AS month, coalesce(mm.kwh, 0) AS kwh) AS u
        GROUP BY t.id
    ),
    escos AS (  -- the ESCO's contact: once per ESCO
        SELECT e.id, x AS contact
        FROM flows.escos AS e
        LEFT JOIN billing.esco_billing AS eb ON eb.esco = e.id
        CROSS JOIN LATERAL (SELECT e.code, coalesce(eb.legal_name, e.name) AS name, eb.address, eb.email, eb.phone,
                                   eb.website, eb.vat_number) AS x
        WHERE e.id IN (SELECT t.esco FROM statements AS t)
    )
    SELECT t.id, pg_catalog.to_jsonb(d)
    FROM statements AS t
    JOIN escos AS es ON es.id = t.esco
    LEFT JOIN readings AS rd ON rd.invoice_id = t.id
    LEFT JOIN tariffs AS tf ON tf.invoice_id = t.id
    LEFT JOIN usage AS us ON us.invoice_id = t.id
    CROSS JOIN LATERAL (SELECT t.fullname, t.email) AS cu
    CROSS JOIN LATERAL (SELECT t.serial, t.hardware, t.prepay_enabled AS prepay) AS me
    CROSS JOIN LATERAL (  -- the details: a key a column
        SELECT cu AS customer,
               t.account_number,
               t.account_type,
               t.supply_address,
               es.contact AS esco,
               me AS meter,
               coalesce(rd.readings, '{}') AS readings,  -- (an empty list)
               tf.tariffs,
               us.months AS usage_12_months,
               us.total AS kwh_12_months,
               us.annual AS estimated_annual_kwh,
               billing.round_half_up(us.annual * tf.unit_rate + 365 * tf.standing_charge, 2) AS estimated_annual_cost,
               coalesce(rd.estimated, 0) AS estimated_half_hours
    ) AS d;
END
$$;
COMMENT ON FUNCTION billing.statement_details(uuid[]) IS
    'What the given statements print besides their figures and lines (frozen at issue into invoices.details).';


-- Computes the draft statements of a run (of all its accounts, or
-- p_accounts), replacing its drafts: the same inputs give identical figures.
-- Accounts whose statement for the month is final already are left alone.
-- One INSERT: each draft is a row holding its lines.
-- JIT off: the run's plans are big (and, over rows this transaction wrote,
-- estimated high), so PostgreSQL would spend seconds compiling them for
-- queries that run in milliseconds.
CREATE FUNCTION billing.compute_statements(p_run uuid, p_accounts uuid[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET jit = off
AS $$
DECLARE
    run billing.billing_runs;
    made integer;
BEGIN
    SELECT * INTO run FROM billing.billing_runs AS r WHERE r.id = p_run FOR UPDATE;
    IF run.status <> 'draft' THEN
        RAISE EXCEPTION 'billing run % is final', p_run USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM billing.invoices AS i
    WHERE i.run_id = p_run AND i.status = 'draft' AND (p_accounts IS NULL OR i.account_id = ANY (p_accounts));

    WITH lines AS MATERIALIZED (
        SELECT l.*, row_number() OVER (PARTITION BY l.account_id, l.customer_id
                                       ORDER BY l.kind, l.element, l.period_from) AS position
        FROM billing.statement_lines(run.esco, run.period_start, p_accounts) AS l
        WHERE NOT EXISTS (SELECT FROM billing.invoices AS f
                          WHERE f.account_id = l.account_id AND f.customer_id = l.customer_id
                            AND f.period_start = run.period_start AND f.kind = 'statement' AND f.status = 'final')
    ),
    sums AS (  -- per statement (its id made here, for its lines)
        -- net of VAT from the exact gross sum (quantity x rate is exact; dividing once keeps it so)
        SELECT l.account_id, l.customer_id, gen_random_uuid() AS id,
               billing.round_half_up(billing.net_of_vat(sum(l.quantity * l.rate)), 2) AS net,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy'), 0) AS kwh,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'standing_charge'), 0) AS days,
               min(l.period_from) AS period_from, max(l.period_to) AS period_to,
               sum(floor(l.amount_exact * 100)) AS pennies_floor
        FROM lines AS l
        GROUP BY l.account_id, l.customer_id
    ),
    rounded AS (
        -- The rounded net shared out to the lines by largest remainder: each line
        -- within a penny of its exact amount, and the lines add up to the net.
        SELECT r.invoice_id,
               array_agg(ROW(gen_random_uuid(), run.esco, r.invoice_id, r.position, r.kind, r.description,
                             r.register_id, r.element, r.nature, r.customer_tariff_id, r.period_from, r.period_to,
                             r.quantity, r.unit, r.rate, r.amount_exact, r.amount, r.half_hours,
                             r.expected_half_hours, r.estimated_half_hours, r.meter_rate)::billing.invoice_lines
                         ORDER BY r.position) AS lines
        FROM (
            SELECT s.id AS invoice_id, l.*,
                   CASE l.kind WHEN 'energy' THEN
                       CASE l.nature WHEN 'heat' THEN 'Heat' ELSE 'Electricity' END
                       || CASE l.element WHEN 'SINGLE' THEN '' ELSE ' (element ' || l.element || ')' END
                   ELSE 'Standing charge' END AS description,
                   (floor(l.amount_exact * 100)
                    + CASE WHEN row_number() OVER (PARTITION BY l.account_id, l.customer_id
                                                   ORDER BY l.amount_exact * 100 - floor(l.amount_exact * 100) DESC,
                                                            l.position)
                                <= s.net * 100 - s.pennies_floor THEN 1 ELSE 0 END) / 100 AS amount
            FROM lines AS l
            JOIN sums AS s ON s.account_id = l.account_id AND s.customer_id = l.customer_id
        ) AS r
        GROUP BY r.invoice_id
    ),
    voided AS (  -- the voided statement of the month each new one replaces (the latest, if several)
        SELECT DISTINCT ON (v.account_id, v.customer_id) v.account_id, v.customer_id, v.id
        FROM billing.invoices AS v
        WHERE v.status = 'void' AND v.kind = 'statement' AND v.esco = run.esco AND v.period_start = run.period_start
        ORDER BY v.account_id, v.customer_id, v.issued_at DESC
    ),
    totals AS (  -- per statement: the VAT rate (by the home) and whether the meter is prepay
        SELECT s.*, billing.vat_rate(p.type, s.kwh, s.days) AS vat_rate, m.prepay_enabled, a.meter_id,
               v.id AS replaces
        FROM sums AS s
        JOIN billing.accounts AS a ON a.id = s.account_id AND a.esco = run.esco  -- (esco: this ESCO's rows only)
        JOIN flows.properties AS p ON p.id = a.property AND p.esco = run.esco
        JOIN flows.meter_registry AS m ON m.id = a.meter_id AND m.esco = run.esco
        LEFT JOIN voided AS v ON v.account_id = s.account_id AND v.customer_id = s.customer_id
    ),
    topups AS (  -- credit put on the meter in the period: its completed top-ups (billing/topups.sql)
        SELECT t.id, count(*)::integer AS n, sum(x.amount) AS value
        FROM totals AS t
        JOIN billing.topups AS x
          ON x.meter_id = t.meter_id AND x.status = 'completed'
         AND x.used_at >= t.period_from AND x.used_at < t.period_to
        GROUP BY t.id
    )
    -- (details: frozen when the statement is issued)
    INSERT INTO billing.invoices (id, esco, run_id, account_id, customer_id, period_start, period_end, period_from,
                                  period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,
                                  closing_balance, topups_count, topups_value, corrects, lines)
    SELECT t.id, run.esco, run.id, t.account_id, t.customer_id, run.period_start, run.period_end, t.period_from,
           t.period_to, t.kwh, t.days, t.net, t.vat_rate, billing.round_half_up(t.net * t.vat_rate, 2),
           t.net + billing.round_half_up(t.net * t.vat_rate, 2), t.prepay_enabled,
           CASE WHEN t.prepay_enabled THEN ob.balance END, CASE WHEN t.prepay_enabled THEN cb.balance END,
           coalesce(tu.n, 0), coalesce(tu.value, 0), t.replaces, r.lines
    FROM totals AS t
    JOIN rounded AS r ON r.invoice_id = t.id
    LEFT JOIN topups AS tu ON tu.id = t.id
    LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                       WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_from
                       ORDER BY b."timestamp" DESC LIMIT 1) AS ob ON true
    LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                       WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_to
                       ORDER BY b."timestamp" DESC LIMIT 1) AS cb ON true;

    SELECT count(*) INTO made FROM billing.invoices AS i WHERE i.run_id = p_run;
    UPDATE billing.billing_runs AS r SET statements = made, computed_at = pg_catalog.now() WHERE r.id = p_run;
    RETURN made;
END
$$;
COMMENT ON FUNCTION billing.compute_statements(uuid, uuid[]) IS
    'Computes (again) the draft statements of a billing run, set-based; refuses when a tariff is missing.';

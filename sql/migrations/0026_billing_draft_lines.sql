-- 0026_billing_draft_lines: a draft statement holds its lines (invoices.lines, rows of billing.invoice_lines'
-- type) instead of writing them as rows of billing.invoice_lines: a billing run writes one row per statement.
-- Issuing a statement (billing.issue_invoices) writes its lines into billing.invoice_lines, where the foreign
-- keys check them; a credit note is a draft holding its lines, issued at once. billing.all_invoice_lines
-- reads both (api.invoice_lines and billing.statement_details read it; PostgREST embeds lines through two
-- computed relationships). Also: billing.statement_lines refuses billed half hours without a tariff itself
-- (billing.refuse_periods_without_tariff; billing.periods_without_tariff goes), reads only the run's ESCO's
-- tariffs and registers; a run reads the month's voided statements once; statement charges are posted
-- without joining their journals back to the statements (a quadratic plan on empty statistics).
-- Statements and lines, as drafts and as issued, are the same as before (docs/billing.md, Benchmark).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/billing/statements.sql ----
-- A draft's lines are part of the draft: invoice_lines rows in its lines
-- column, written with it and replaced with it when its run is computed again
-- (no row of the table, its indexes and foreign key checks, for a document
-- that is thrown away at every re-run). Issuing a statement writes its lines
-- into billing.invoice_lines, where the foreign keys check what they refer to
-- (statement, register, customer tariff), and empties the column: the table
-- holds the lines of issued statements and credit notes, which never change.
-- (The column has the table's row type: adding a column to invoice_lines
-- adds it to the drafts' lines too.)
ALTER TABLE billing.invoices ADD COLUMN lines billing.invoice_lines[];
-- (existing drafts take their lines out of the table)
UPDATE billing.invoices AS i
SET lines = (SELECT array_agg(l ORDER BY l.position) FROM billing.invoice_lines AS l WHERE l.invoice_id = i.id)
WHERE i.status = 'draft';
DELETE FROM billing.invoice_lines AS l USING billing.invoices AS i WHERE i.id = l.invoice_id AND i.status = 'draft';
ALTER TABLE billing.invoices ADD CONSTRAINT invoices_lines_until_issued CHECK ((status = 'draft') = (lines IS NOT NULL));
COMMENT ON COLUMN billing.invoices.lines IS
    'A draft''s lines (written into billing.invoice_lines when it is issued; NULL once issued).';

-- Every statement's lines: an issued statement's rows, a draft's own.
CREATE VIEW billing.all_invoice_lines WITH (security_invoker = true) AS
SELECT l.id, l.esco, l.invoice_id, l.position, l.kind, l.description, l.register_id, l.element, l.nature,
       l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit, l.rate, l.amount_exact, l.amount,
       l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate
FROM billing.invoice_lines AS l
UNION ALL
SELECT d.id, i.esco, i.id, d.position, d.kind, d.description, d.register_id, d.element, d.nature,
       d.customer_tariff_id, d.period_from, d.period_to, d.quantity, d.unit, d.rate, d.amount_exact, d.amount,
       d.half_hours, d.expected_half_hours, d.estimated_half_hours, d.meter_rate
FROM billing.invoices AS i
CROSS JOIN LATERAL unnest(i.lines) AS d
WHERE i.status = 'draft';
COMMENT ON VIEW billing.all_invoice_lines IS
    'The lines of every statement and credit note: issued ones from billing.invoice_lines, drafts'' from '
    'billing.invoices.lines.';

-- New lines: a statement's lines are written once, all together, when it is
-- issued (billing.issue_invoices writes what the draft held): never for a
-- draft, never added to a statement that has lines. Checked once per
-- statement (a transition table), so issuing thousands of lines pays one
-- check, not one per line.
CREATE OR REPLACE FUNCTION billing.guard_final_invoice_new_lines() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_lines AS l JOIN billing.invoices AS i ON i.id = l.invoice_id WHERE i.status = 'draft')
       OR EXISTS (SELECT FROM billing.invoice_lines AS o
                  WHERE o.invoice_id IN (SELECT n.invoice_id FROM new_lines AS n)
                    AND o.id NOT IN (SELECT n.id FROM new_lines AS n)) THEN
        RAISE EXCEPTION 'a statement''s lines are written when it is issued, and never change after'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a draft holds its own lines (billing.invoices.lines); correct a final statement with a '
                         'credit note (rpc/credit_invoice)';
    END IF;
    RETURN NULL;
END
$$;

-- ---- schema/billing/billing_run.sql ----
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

CREATE OR REPLACE FUNCTION billing.statement_lines(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION billing.statement_details(p_invoices uuid[])
RETURNS TABLE (invoice_id uuid, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = ''
SET jit = off
SET plan_cache_mode = force_custom_plan
SET enable_nestloop = on
AS $$
BEGIN
    PERFORM pg_catalog.set_config('enable_nestloop', (pg_catalog.cardinality(p_invoices) <= 20)::text, true);
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

-- Computes the draft statements of a run (of all its accounts, or
-- p_accounts), replacing its drafts: the same inputs give identical figures.
-- Accounts whose statement for the month is final already are left alone.
-- One INSERT: each draft is a row holding its lines.
-- JIT off: the run's plans are big (and, over rows this transaction wrote,
-- estimated high), so PostgreSQL would spend seconds compiling them for
-- queries that run in milliseconds.
CREATE OR REPLACE FUNCTION billing.compute_statements(p_run uuid, p_accounts uuid[] DEFAULT NULL) RETURNS integer
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

-- ---- schema/billing/ledger.sql ----
CREATE OR REPLACE FUNCTION billing.post_statement_charges(p_invoices uuid[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    posted integer;
    poster text := flows.requester();  -- (once: it reads the request's claims)
BEGIN
    WITH issued AS MATERIALIZED (
        SELECT gen_random_uuid() AS journal_id, i.* FROM billing.invoices AS i
        WHERE i.id = ANY (p_invoices) AND i.status = 'final' AND i.total <> 0
          AND NOT EXISTS (SELECT FROM billing.journals AS j WHERE j.invoice_id = i.id AND j.kind = 'statement_charge')
    ),
    made AS (
        INSERT INTO billing.journals (id, esco, kind, account_id, invoice_id, memo, posted_by)
        SELECT i.journal_id, i.esco, 'statement_charge', i.account_id, i.id,
               pg_catalog.format('%s %s for %s', pg_catalog.replace(i.kind, '_', ' '), i.number,
                                 pg_catalog.to_char(i.period_start, 'YYYY-MM')),
               poster
        FROM issued AS i
    )
    INSERT INTO billing.journal_entries (esco, journal_id, ledger_account, account_id, amount)
    SELECT i.esco, i.journal_id, x.ledger_account, x.account_id, x.amount
    FROM issued AS i
    CROSS JOIN LATERAL (VALUES (CASE WHEN i.prepay THEN 'credit_on_meters' ELSE 'customer_credit' END, i.account_id,
                                i.total),
                               ('revenue', NULL::uuid, -i.net),
                               ('vat', NULL::uuid, -i.vat)) AS x (ledger_account, account_id, amount)
    WHERE x.amount <> 0;
    SELECT count(*) INTO posted FROM billing.journals AS j WHERE j.invoice_id = ANY (p_invoices);
    RETURN posted;
END
$$;

-- ---- rpc/billing/statements.sql ----
CREATE OR REPLACE VIEW api.invoice_lines WITH (security_invoker = true) AS
SELECT l.id, l.esco, l.invoice_id, l.position, l.kind, l.description, l.register_id, l.element, l.nature,
       l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit, l.rate, l.amount_exact, l.amount,
       l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate,
       billing.round_half_up(l.quantity * (l.meter_rate - l.rate), 2) AS meter_difference
FROM billing.all_invoice_lines AS l;

-- Embedding (/invoices?select=*,invoice_lines(*) and back): api.invoice_lines
-- is a union (issued lines and drafts' own), whose foreign keys PostgREST
-- cannot see through, so the relationship is given as a pair of functions
-- (PostgREST's computed relationships).
CREATE FUNCTION api.invoice_lines(api.invoices) RETURNS SETOF api.invoice_lines
LANGUAGE sql STABLE ROWS 4
AS $$
    SELECT l.* FROM api.invoice_lines AS l WHERE l.invoice_id = $1.id
$$;
CREATE FUNCTION api.invoices(api.invoice_lines) RETURNS SETOF api.invoices
LANGUAGE sql STABLE ROWS 1
AS $$
    SELECT i.* FROM api.invoices AS i WHERE i.id = $1.invoice_id
$$;
COMMENT ON FUNCTION api.invoice_lines(api.invoices) IS
    'A statement''s lines, for embedding: /invoices?select=*,invoice_lines(*).';
COMMENT ON FUNCTION api.invoices(api.invoice_lines) IS
    'A line''s statement, for embedding: /invoice_lines?select=*,invoices(*).';

CREATE OR REPLACE FUNCTION billing.issue_invoices(p_esco uuid, p_ids uuid[]) RETURNS void
LANGUAGE sql
AS $$
    -- numbers in account order, taken from the ESCO's counter in this transaction: gap-free; a run's
    -- statements get what they print frozen now (a credit note carries its statement's already), and
    -- the lines each draft holds are written into billing.invoice_lines, where foreign keys check them
    WITH numbered AS (
        SELECT i.id, row_number() OVER (ORDER BY i.kind DESC, a.account_number, i.period_from, i.id) AS n, d.details
        FROM billing.invoices AS i
        JOIN billing.accounts AS a ON a.id = i.account_id
        LEFT JOIN billing.statement_details(ARRAY(SELECT x.id FROM billing.invoices AS x
                                                  WHERE x.id = ANY (p_ids) AND x.status = 'draft'
                                                    AND x.kind = 'statement')) AS d ON d.invoice_id = i.id
        WHERE i.id = ANY (p_ids) AND i.status = 'draft'
    ),
    first AS (SELECT billing.take_numbers(p_esco, 'invoice', (SELECT count(*)::integer FROM numbered)) AS number),
    issued AS (
        UPDATE billing.invoices AS i
        SET status = 'final', number = f.number + n.n - 1, issued_at = pg_catalog.now(),
            details = coalesce(n.details, i.details), lines = NULL
        FROM numbered AS n, first AS f
        WHERE i.id = n.id
    )
    INSERT INTO billing.invoice_lines  -- (as the drafts held them: this statement sees them as drafts)
    SELECT l.* FROM billing.all_invoice_lines AS l WHERE l.invoice_id IN (SELECT n.id FROM numbered AS n)
$$;

CREATE OR REPLACE FUNCTION api.credit_invoice(invoice_id uuid, reason text) RETURNS SETOF api.invoices
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    original billing.invoices;
    note uuid;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a credit note needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO original FROM billing.invoices AS i WHERE i.id = credit_invoice.invoice_id FOR UPDATE;
    IF original.id IS NULL OR original.kind <> 'statement' OR original.status <> 'final' THEN
        RAISE EXCEPTION 'only a final statement can be credited (this is %)',
            coalesce(original.status || ' ' || original.kind, 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    note := gen_random_uuid();
    -- a draft credit note holding its lines (the statement's, negated), issued at once
    INSERT INTO billing.invoices (id, esco, account_id, customer_id, kind, period_start, period_end, period_from,
                                  period_to, kwh, days, net, vat_rate, vat, total, prepay, corrects, reason, details,
                                  lines)
    VALUES (note, original.esco, original.account_id, original.customer_id, 'credit_note', original.period_start,
            original.period_end, original.period_from, original.period_to, -original.kwh, -original.days,
            -original.net, original.vat_rate, -original.vat, -original.total, original.prepay, original.id,
            credit_invoice.reason, original.details,
            ARRAY(SELECT ROW(gen_random_uuid(), l.esco, note, l.position, l.kind, l.description, l.register_id,
                             l.element, l.nature, l.customer_tariff_id, l.period_from, l.period_to, -l.quantity,
                             l.unit, l.rate, -l.amount_exact, -l.amount, l.half_hours, l.expected_half_hours,
                             l.estimated_half_hours, l.meter_rate)::billing.invoice_lines
                  FROM billing.invoice_lines AS l WHERE l.invoice_id = original.id ORDER BY l.position));
    PERFORM billing.issue_invoices(original.esco, ARRAY[note]);
    UPDATE billing.invoices AS i SET status = 'void' WHERE i.id = original.id;
    PERFORM pg_catalog.pg_notify('billing_statements_issued', note::text);
    RETURN QUERY SELECT * FROM api.invoices AS i WHERE i.id = note;
END
$$;

DROP FUNCTION billing.periods_without_tariff(uuid, date, uuid[]);

-- ---- rls/privileges.sql ----
GRANT EXECUTE ON FUNCTION billing.refuse_periods_without_tariff(text)
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON billing.all_invoice_lines TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT EXECUTE ON FUNCTION api.invoice_lines(api.invoices), api.invoices(api.invoice_lines)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

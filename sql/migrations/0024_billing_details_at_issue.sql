-- 0024_billing_details_at_issue: a billing run writes drafts that hold their figures and lines, and what a
-- statement prints besides (names, address, meter, reads, tariffs, 12 months of kWh: billing.invoices.details)
-- is frozen when it is issued (billing.issue_invoices), built set-based by billing.statement_details, which
-- api.invoices calls for drafts (what they would print if issued now): a run computed again and again no
-- longer builds documents that are thrown away. A partial index of voided statements, so that a run's
-- lookup of the statement each one replaces probes only voids. Statements, lines and documents as issued are
-- the same as before (docs/billing.md, Benchmark).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/billing/statements.sql ----
-- The voided statements a new one replaces (a run looks for one per statement it
-- writes): only voids, so a run's lookups probe a tiny index instead of the
-- account's statements (and the dead drafts of runs computed again).
CREATE INDEX invoices_void_idx ON billing.invoices (account_id, customer_id, period_start) WHERE status = 'void';

COMMENT ON TABLE billing.invoices IS
    'Statements (and credit notes) per account and payer and month: net, VAT, total (GBP), prepayment '
    'balance figures, and details frozen when issued (names, address, meter, readings, 12-month usage; a draft '
    'holds none: api.invoices computes them for drafts).';

-- A draft holds no details (until issued).
UPDATE billing.invoices SET details = '{}' WHERE status = 'draft' AND kind = 'statement';

-- ---- schema/billing/billing_run.sql ----
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
-- tables only when they read a draft; and planned for the statements asked
-- each time. Many (issuing a run): hash joins, whatever the statistics say of
-- drafts written moments ago (analyzed while the table held none, a run's
-- 1,000 are estimated as one statement, and nested loops over them took 40 s);
-- a few (a draft read through api.invoices): index lookups. JIT off (as for
-- the run: compiling would take seconds; nested loops turned off also make
-- every plan's cost look far above jit_above_cost).
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
        FROM billing.invoice_lines AS l
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

CREATE OR REPLACE FUNCTION billing.compute_statements(p_run uuid, p_accounts uuid[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET jit = off
AS $$
DECLARE
    run billing.billing_runs;
    missing text;
    made integer;
BEGIN
    SELECT * INTO run FROM billing.billing_runs AS r WHERE r.id = p_run FOR UPDATE;
    IF run.status <> 'draft' THEN
        RAISE EXCEPTION 'billing run % is final', p_run USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT string_agg(pg_catalog.format('account %s (%s) from %s to %s', a.account_number, c.fullname,
                                        lower(u.r), upper(u.r)), '; ' ORDER BY a.account_number)
    INTO missing
    FROM billing.periods_without_tariff(run.esco, run.period_start, p_accounts) AS g
    JOIN billing.accounts AS a ON a.id = g.account_id AND a.esco = run.esco
    JOIN billing.customers AS c ON c.id = g.customer_id AND c.esco = run.esco
    CROSS JOIN LATERAL (SELECT x AS r FROM unnest(g.uncovered) AS x LIMIT 1) AS u;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'no tariff in force for %', missing
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give the customers a tariff for the quarter (rpc/generate_customer_tariffs) and run again';
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
    sums AS (
        -- net of VAT from the exact gross sum (quantity x rate is exact; dividing once keeps it so)
        SELECT l.account_id, l.customer_id,
               billing.round_half_up(billing.net_of_vat(sum(l.quantity * l.rate)), 2) AS net,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy'), 0) AS kwh,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'standing_charge'), 0) AS days,
               min(l.period_from) AS period_from, max(l.period_to) AS period_to,
               sum(floor(l.amount_exact * 100)) AS pennies_floor
        FROM lines AS l
        GROUP BY l.account_id, l.customer_id
    ),
    totals AS (  -- per statement: the VAT rate (by the home) and whether the meter is prepay
        SELECT s.*, billing.vat_rate(p.type, s.kwh, s.days) AS vat_rate, m.prepay_enabled, a.meter_id,
               (SELECT v.id FROM billing.invoices AS v
                WHERE v.account_id = s.account_id AND v.customer_id = s.customer_id
                  AND v.period_start = run.period_start AND v.kind = 'statement' AND v.status = 'void'
                ORDER BY v.issued_at DESC LIMIT 1) AS replaces
        FROM sums AS s
        JOIN billing.accounts AS a ON a.id = s.account_id
        JOIN flows.properties AS p ON p.id = a.property
        JOIN flows.meter_registry AS m ON m.id = a.meter_id
    ),
    topups AS (  -- credit put on the meter in the period: its completed top-ups (billing/topups.sql)
        SELECT t.account_id, t.customer_id, count(*)::integer AS n, sum(x.amount) AS value
        FROM totals AS t
        JOIN billing.topups AS x
          ON x.meter_id = t.meter_id AND x.status = 'completed'
         AND x.used_at >= t.period_from AND x.used_at < t.period_to
        GROUP BY t.account_id, t.customer_id
    ),
    made AS (  -- (details: frozen when the statement is issued)
        INSERT INTO billing.invoices (esco, run_id, account_id, customer_id, period_start, period_end, period_from,
                                      period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,
                                      closing_balance, topups_count, topups_value, corrects)
        SELECT run.esco, run.id, t.account_id, t.customer_id, run.period_start, run.period_end, t.period_from,
               t.period_to, t.kwh, t.days, t.net, t.vat_rate, billing.round_half_up(t.net * t.vat_rate, 2),
               t.net + billing.round_half_up(t.net * t.vat_rate, 2), t.prepay_enabled,
               CASE WHEN t.prepay_enabled THEN ob.balance END, CASE WHEN t.prepay_enabled THEN cb.balance END,
               coalesce(tu.n, 0), coalesce(tu.value, 0), t.replaces
        FROM totals AS t
        LEFT JOIN topups AS tu ON tu.account_id = t.account_id AND tu.customer_id = t.customer_id
        LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                           WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_from
                           ORDER BY b."timestamp" DESC LIMIT 1) AS ob ON true
        LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                           WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_to
                           ORDER BY b."timestamp" DESC LIMIT 1) AS cb ON true
        RETURNING id, account_id, customer_id
    )
    -- The rounded net shared out to the lines by largest remainder: each line
    -- within a penny of its exact amount, and the lines add up to the net.
    INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description, register_id, element, nature,
                                       customer_tariff_id, period_from, period_to, quantity, unit, rate, amount_exact,
                                       amount, half_hours, expected_half_hours, estimated_half_hours, meter_rate)
    SELECT run.esco, m.id, l.position, l.kind,
           CASE l.kind WHEN 'energy' THEN
               CASE l.nature WHEN 'heat' THEN 'Heat' ELSE 'Electricity' END
               || CASE l.element WHEN 'SINGLE' THEN '' ELSE ' (element ' || l.element || ')' END
           ELSE 'Standing charge' END,
           l.register_id, l.element, l.nature, l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit,
           l.rate, l.amount_exact,
           (floor(l.amount_exact * 100)
            + CASE WHEN row_number() OVER (PARTITION BY l.account_id, l.customer_id
                                           ORDER BY l.amount_exact * 100 - floor(l.amount_exact * 100) DESC,
                                                    l.position)
                        <= s.net * 100 - s.pennies_floor THEN 1 ELSE 0 END) / 100,
           l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate
    FROM lines AS l
    JOIN sums AS s ON s.account_id = l.account_id AND s.customer_id = l.customer_id
    JOIN made AS m ON m.account_id = l.account_id AND m.customer_id = l.customer_id;

    SELECT count(*) INTO made FROM billing.invoices AS i WHERE i.run_id = p_run;
    UPDATE billing.billing_runs AS r SET statements = made, computed_at = pg_catalog.now() WHERE r.id = p_run;
    RETURN made;
END
$$;

-- ---- rpc/billing/statements.sql ----
CREATE OR REPLACE VIEW api.invoices WITH (security_invoker = true) AS
SELECT i.id, i.esco, i.run_id, i.account_id, i.customer_id, i.kind, i.status, i.number,
       e.code || '-' || lpad(i.number::text, 6, '0') AS reference, i.issued_at,
       i.period_start, i.period_end, i.period_from, i.period_to, i.kwh, i.days, i.net, i.vat_rate, i.vat, i.total,
       i.prepay, i.opening_balance, i.closing_balance, i.topups_count, i.topups_value, i.corrects, i.reason,
       -- a draft's document is not frozen yet: what it would print if issued now
       CASE WHEN i.status = 'draft' THEN (SELECT d.details FROM billing.statement_details(ARRAY[i.id]) AS d)
            ELSE i.details END AS details,
       i.created_at
FROM billing.invoices AS i
JOIN flows.escos AS e ON e.id = i.esco;
COMMENT ON VIEW api.invoices IS
    'Statements and credit notes: account, payer, month (period_start; billed from period_from to period_to), '
    'number (gap-free per ESCO, given at finalisation; reference = ESCO-number), status draft/final/void, net, '
    'vat, total (GBP), prepayment balances and top-ups, details as printed (frozen when issued; a draft''s as it '
    'would be issued now). PDF: rpc/statement_pdf.';

CREATE OR REPLACE FUNCTION billing.issue_invoices(p_esco uuid, p_ids uuid[]) RETURNS void
LANGUAGE sql
AS $$
    -- numbers in account order, taken from the ESCO's counter in this transaction: gap-free; a run's
    -- statements get what they print frozen now (a credit note carries its statement's already)
    WITH numbered AS (
        SELECT i.id, row_number() OVER (ORDER BY i.kind DESC, a.account_number, i.period_from, i.id) AS n, d.details
        FROM billing.invoices AS i
        JOIN billing.accounts AS a ON a.id = i.account_id
        LEFT JOIN billing.statement_details(ARRAY(SELECT x.id FROM billing.invoices AS x
                                                  WHERE x.id = ANY (p_ids) AND x.status = 'draft'
                                                    AND x.kind = 'statement')) AS d ON d.invoice_id = i.id
        WHERE i.id = ANY (p_ids) AND i.status = 'draft'
    ),
    first AS (SELECT billing.take_numbers(p_esco, 'invoice', (SELECT count(*)::integer FROM numbered)) AS number)
    UPDATE billing.invoices AS i
    SET status = 'final', number = f.number + n.n - 1, issued_at = pg_catalog.now(),
        details = coalesce(n.details, i.details)
    FROM numbered AS n, first AS f
    WHERE i.id = n.id
$$;

COMMENT ON FUNCTION api.finalise_billing_run(uuid) IS
    'Issues a run''s draft statements: numbers them (gap-free per ESCO, in account order) and freezes them, '
    'with what they print (details). '
    'Finalising a final run changes nothing.';

-- ---- rls/privileges.sql ----
GRANT EXECUTE ON FUNCTION billing.statement_details(uuid[])
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

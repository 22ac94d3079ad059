-- Statements over HTTP: billing runs, statements and their lines, the PDF,
-- and the portal's monthly_usage and monthly_costs.

CREATE VIEW api.billing_runs WITH (security_invoker = true) AS
SELECT id, esco, period_start, period_end, status, statements, requested_by, created_at, computed_at, finalised_at
FROM billing.billing_runs;
COMMENT ON VIEW api.billing_runs IS
    'Monthly billing runs: create with rpc/create_billing_run (drafts, recomputable), finalise with '
    'rpc/finalise_billing_run (numbers the statements; they never change after).';

CREATE VIEW api.invoices WITH (security_invoker = true) AS
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
COMMENT ON COLUMN api.invoices.corrects IS
    'A credit note: the statement it cancels; a statement: the voided one it replaces.';

CREATE VIEW api.invoice_lines WITH (security_invoker = true) AS
SELECT l.id, l.esco, l.invoice_id, l.position, l.kind, l.description, l.register_id, l.element, l.nature,
       l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit, l.rate, l.amount_exact, l.amount,
       l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate,
       billing.round_half_up(l.quantity * (l.meter_rate - l.rate), 2) AS meter_difference
FROM billing.all_invoice_lines AS l;
COMMENT ON VIEW api.invoice_lines IS
    'Statement lines: quantity (kWh, or days) x rate (GBP incl. VAT) over period_from..period_to; amount_exact '
    '= that net of VAT, unrounded; amount = its share of the statement''s rounded net. half_hours present of '
    'expected, estimated ones counted. meter_rate: what the meter charged; meter_difference = quantity x '
    '(meter_rate - rate), GBP incl. VAT.';

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

CREATE VIEW api.invoice_documents WITH (security_invoker = true) AS
SELECT invoice_id, esco, media_type, octet_length(content) AS bytes, sha256, renderer, rendered_at
FROM billing.invoice_documents;
COMMENT ON VIEW api.invoice_documents IS
    'The stored PDF of each final statement (metadata; the file: rpc/statement_pdf).';


CREATE FUNCTION api.create_billing_run(esco_code text, period_start date) RETURNS SETOF api.billing_runs
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(esco_code);
    month_end timestamptz;
    run_id uuid;
BEGIN
    IF period_start IS NULL OR extract(day FROM period_start) <> 1 THEN
        RAISE EXCEPTION 'period_start must be the first day of a month, got %', period_start
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    month_end := flows.uk_day_start((period_start + interval '1 month')::date);
    IF month_end > pg_catalog.now() THEN
        RAISE EXCEPTION 'the month of % has not ended yet: it ends at % (midnight, UK time)',
            pg_catalog.to_char(period_start, 'FMMonth YYYY'), month_end
            USING ERRCODE = 'invalid_parameter_value', HINT = 'bill a month once it is over';
    END IF;
    -- one run of an ESCO's month at a time; a concurrent call waits, then recomputes
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('billing_run:' || esco_id || period_start, 0));
    SELECT r.id INTO run_id FROM billing.billing_runs AS r
    WHERE r.esco = esco_id AND r.period_start = create_billing_run.period_start AND r.status = 'draft';
    IF run_id IS NULL THEN
        INSERT INTO billing.billing_runs (esco, period_start, period_end, requested_by)
        VALUES (esco_id, create_billing_run.period_start, (create_billing_run.period_start + interval '1 month')::date,
                flows.requester())
        RETURNING id INTO run_id;
    END IF;
    PERFORM billing.compute_statements(run_id);
    RETURN QUERY SELECT * FROM api.billing_runs AS r WHERE r.id = run_id;
END
$$;
COMMENT ON FUNCTION api.create_billing_run(text, date) IS
    'Computes draft statements for every open supply/ev account of the ESCO for the calendar month starting '
    'period_start (UK time): energy per register and tariff period from the half hours, standing charge per '
    'day, VAT. Running it again recomputes the drafts (same inputs, same figures). Refused for a month not yet '
    'over, or when a payer has no tariff in force.';


CREATE FUNCTION billing.issue_invoices(p_esco uuid, p_ids uuid[]) RETURNS void
LANGUAGE sql
AS $$
    -- numbers in account order, taken from the ESCO's counter in this transaction: gap-free; a run's
    -- statements get what they print frozen now (a credit note carries its statement's already), and
    -- the lines each draft holds are written into billing.invoice_lines, where foreign keys check them
    WITH numbered AS (
        SELECT i.id, row_number() OVER (ORDER BY i.kind DESC, a.account_number, i.period_from, i.id) AS n, d.details,
               i.lines
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
    INSERT INTO billing.invoice_lines  -- (as the drafts held them: this statement sees them as drafts; through
                                       -- billing.all_invoice_lines, planned on a table whose statistics saw
                                       -- no drafts, issuing 1,000 took 2 s instead of 0.3)
    SELECT l.* FROM numbered AS n CROSS JOIN LATERAL unnest(n.lines) AS l
$$;

CREATE FUNCTION api.finalise_billing_run(run_id uuid) RETURNS SETOF api.billing_runs
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    run billing.billing_runs;
BEGIN
    SELECT * INTO run FROM billing.billing_runs AS r WHERE r.id = finalise_billing_run.run_id FOR UPDATE;
    IF run.id IS NULL THEN
        RAISE EXCEPTION 'no billing run %', finalise_billing_run.run_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF run.status = 'draft' THEN
        PERFORM billing.issue_invoices(run.esco, ARRAY(SELECT i.id FROM billing.invoices AS i
                                                       WHERE i.run_id = run.id AND i.status = 'draft'));
        UPDATE billing.billing_runs AS r SET status = 'final', finalised_at = pg_catalog.now() WHERE r.id = run.id;
        PERFORM pg_catalog.pg_notify('billing_statements_issued', run.id::text);
    END IF;
    RETURN QUERY SELECT * FROM api.billing_runs AS r WHERE r.id = run.id;
END
$$;
COMMENT ON FUNCTION api.finalise_billing_run(uuid) IS
    'Issues a run''s draft statements: numbers them (gap-free per ESCO, in account order) and freezes them, '
    'with what they print (details). '
    'Finalising a final run changes nothing.';


CREATE FUNCTION api.credit_invoice(invoice_id uuid, reason text) RETURNS SETOF api.invoices
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
COMMENT ON FUNCTION api.credit_invoice(uuid, text) IS
    'Cancels a final statement with a credit note (numbered, its lines negated) and voids it; a new billing run '
    'of that month then bills the account again, the new statement referring to the voided one.';


-- Everything a statement document shows, for the renderer (workers/flows/billing).
CREATE FUNCTION api.statement_document(invoice_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.to_jsonb(i)
           || pg_catalog.jsonb_build_object(
                  'lines', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(l) ORDER BY l.position), '[]')
                            FROM api.invoice_lines AS l WHERE l.invoice_id = i.id),
                  'corrects_reference', (SELECT c.reference FROM api.invoices AS c WHERE c.id = i.corrects))
    FROM api.invoices AS i
    WHERE i.id = statement_document.invoice_id
$$;
COMMENT ON FUNCTION api.statement_document(uuid) IS
    'A statement with its lines as one JSON document: what the PDF is rendered from.';


-- Stores a rendered document once: a second render of the same statement is
-- not stored (the first one stands). Only final statements have documents.
CREATE FUNCTION billing.store_invoice_document(p_invoice uuid, p_content bytea, p_renderer text) RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target billing.invoices;
    stored text;
BEGIN
    SELECT * INTO target FROM billing.invoices AS i WHERE i.id = p_invoice;
    IF target.id IS NULL OR target.status = 'draft' THEN
        RAISE EXCEPTION 'only an issued statement has a document' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO billing.invoice_documents (invoice_id, esco, content, sha256, renderer)
    VALUES (p_invoice, target.esco, p_content, encode(sha256(p_content), 'hex'), p_renderer)
    ON CONFLICT (invoice_id) DO NOTHING;
    SELECT d.sha256 INTO stored FROM billing.invoice_documents AS d WHERE d.invoice_id = p_invoice;
    RETURN stored;
END
$$;
COMMENT ON FUNCTION billing.store_invoice_document(uuid, bytea, text) IS
    'Stores the PDF of an issued statement unless it has one; returns the stored document''s sha256.';

-- Issued statements without a document yet: what the renderer works through.
CREATE FUNCTION billing.invoices_to_render(p_limit integer DEFAULT 100) RETURNS SETOF uuid
LANGUAGE sql STABLE
AS $$
    SELECT i.id FROM billing.invoices AS i
    WHERE i.status <> 'draft' AND NOT EXISTS (SELECT FROM billing.invoice_documents AS d WHERE d.invoice_id = i.id)
    ORDER BY i.issued_at, i.number
    LIMIT p_limit
$$;


-- PostgREST returns a function's result raw when its type is a domain named
-- as a media type: GET /rpc/statement_pdf?number=42 with Accept: application/pdf.
CREATE DOMAIN api."application/pdf" AS bytea;

CREATE FUNCTION api.statement_pdf(number integer, esco_code text DEFAULT NULL) RETURNS api."application/pdf"
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    pdf bytea;
    found_invoice uuid;
BEGIN
    SELECT i.id, d.content INTO found_invoice, pdf
    FROM billing.invoices AS i
    JOIN flows.escos AS e ON e.id = i.esco
    LEFT JOIN billing.invoice_documents AS d ON d.invoice_id = i.id
    WHERE i.number = statement_pdf.number AND (esco_code IS NULL OR e.code = esco_code)
    ORDER BY e.code LIMIT 1;
    IF found_invoice IS NULL THEN
        RAISE EXCEPTION 'no statement number %', statement_pdf.number
            USING ERRCODE = 'invalid_parameter_value', HINT = 'numbers are per ESCO: pass esco_code too';
    END IF;
    IF pdf IS NULL THEN
        RAISE EXCEPTION 'statement % is not rendered yet', statement_pdf.number
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'flows statement render renders issued statements';
    END IF;
    PERFORM pg_catalog.set_config('response.headers', pg_catalog.json_build_array(pg_catalog.json_build_object(
        'Content-Disposition', pg_catalog.format('inline; filename="statement-%s.pdf"', statement_pdf.number)))::text,
        true);
    RETURN pdf;
END
$$;
COMMENT ON FUNCTION api.statement_pdf(integer, text) IS
    'The PDF of an issued statement by its number (per ESCO; esco_code picks the ESCO for admins). '
    'Send Accept: application/pdf.';


-- The portal's figures, over issued statements (final, and credit notes
-- netting out voided ones): per customer, account and month.
CREATE VIEW api.monthly_usage WITH (security_invoker = true) AS
SELECT i.esco, i.customer_id, i.account_id, i.period_start AS month,
       coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy' AND l.nature = 'power'), 0) AS power_kwh,
       coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy' AND l.nature = 'heat'), 0) AS heat_kwh,
       coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy'), 0) AS total_kwh,
       coalesce(sum(l.estimated_half_hours * sign(l.quantity)) FILTER (WHERE l.kind = 'energy'), 0)
           AS estimated_half_hours
FROM billing.invoices AS i
JOIN billing.invoice_lines AS l ON l.invoice_id = i.id
WHERE i.status <> 'draft'
GROUP BY i.esco, i.customer_id, i.account_id, i.period_start;
COMMENT ON VIEW api.monthly_usage IS
    'kWh per customer, account and month from issued statements: power, heat, total, half hours estimated.';

CREATE VIEW api.monthly_costs WITH (security_invoker = true) AS
WITH lines AS (
    SELECT i.esco, i.customer_id, i.period_start AS month, l.kind, l.nature, l.quantity, l.amount,
           billing.discounted_rate(CASE l.kind WHEN 'energy' THEN b.unit_rate ELSE b.standing_charge END, m.discount)
               AS microgrid_rate,
           CASE l.kind WHEN 'energy' THEN b.unit_rate ELSE b.standing_charge END AS cap_rate
    FROM billing.invoices AS i
    JOIN billing.invoice_lines AS l ON l.invoice_id = i.id
    JOIN billing.customer_tariffs AS t ON t.id = l.customer_tariff_id
    JOIN billing.microgrid_tariffs AS m ON m.id = t.microgrid_tariff_id
    JOIN billing.benchmark_tariffs AS b ON b.region = m.region AND b.period_start = m.period_start
    WHERE i.status <> 'draft'
),
charges AS (
    SELECT l.esco, l.customer_id, l.month,
           sum(l.amount) FILTER (WHERE l.kind = 'energy' AND l.nature = 'power') AS power,
           sum(l.amount) FILTER (WHERE l.kind = 'energy' AND l.nature = 'heat') AS heat,
           sum(l.amount) FILTER (WHERE l.kind = 'standing_charge') AS standing_charge,
           billing.round_half_up(sum(l.quantity * l.microgrid_rate), 2) AS at_microgrid_rate,
           billing.round_half_up(sum(l.quantity * l.cap_rate), 2) AS at_price_cap
    FROM lines AS l
    GROUP BY l.esco, l.customer_id, l.month
),
totals AS (
    SELECT i.esco, i.customer_id, i.period_start AS month, sum(i.net) AS net, sum(i.vat) AS vat, sum(i.total) AS total
    FROM billing.invoices AS i
    WHERE i.status <> 'draft'
    GROUP BY i.esco, i.customer_id, i.period_start
)
SELECT c.esco, c.customer_id, c.month, coalesce(c.power, 0) AS power, coalesce(c.heat, 0) AS heat,
       coalesce(c.standing_charge, 0) AS standing_charge, t.net, t.vat, t.total,
       c.at_microgrid_rate, c.at_price_cap, c.at_price_cap - t.total AS saving
FROM charges AS c
JOIN totals AS t ON t.esco = c.esco AND t.customer_id = c.customer_id AND t.month = c.month;
COMMENT ON VIEW api.monthly_costs IS
    'GBP per customer and month from issued statements: power, heat and standing charge (net of VAT), net, '
    'VAT, total; the same consumption at the microgrid rate and at the price cap (incl. VAT), and the saving '
    'against the cap.';

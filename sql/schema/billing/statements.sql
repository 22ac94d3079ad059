-- Statements: monthly billing runs, the statements (invoices) they make and
-- their lines, and the rendered documents. A draft can be recomputed at will;
-- a final statement is numbered (gap-free per ESCO) and never changes again:
-- a correction is a credit note that voids it, and a new statement.

CREATE TABLE billing.billing_runs (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco         uuid        NOT NULL REFERENCES flows.escos (id),
    period_start date        NOT NULL,
    period_end   date        NOT NULL,
    status       text        NOT NULL DEFAULT 'draft',
    statements   integer     NOT NULL DEFAULT 0,
    requested_by text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    computed_at  timestamptz,
    finalised_at timestamptz,
    CONSTRAINT billing_runs_id_esco_key UNIQUE (id, esco),
    CONSTRAINT billing_runs_month CHECK (extract(day FROM period_start) = 1
                                         AND period_end = (period_start + interval '1 month')::date),
    CONSTRAINT billing_runs_status_valid CHECK (status IN ('draft', 'final')),
    CONSTRAINT billing_runs_finalised_when_final CHECK ((status = 'final') = (finalised_at IS NOT NULL))
);
COMMENT ON TABLE billing.billing_runs IS
    'A monthly billing run of an ESCO (UK calendar month, Europe/London midnights): draft, then final.';
-- At most one draft run per ESCO and month: running it again recomputes it.
CREATE UNIQUE INDEX billing_runs_one_draft ON billing.billing_runs (esco, period_start) WHERE status = 'draft';


CREATE TABLE billing.invoices (
    id              uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco            uuid           NOT NULL,
    run_id          uuid,
    account_id      uuid           NOT NULL,
    customer_id     uuid           NOT NULL,
    kind            text           NOT NULL DEFAULT 'statement',
    status          text           NOT NULL DEFAULT 'draft',
    number          integer,
    issued_at       timestamptz,
    period_start    date           NOT NULL,
    period_end      date           NOT NULL,
    period_from     timestamptz    NOT NULL,
    period_to       timestamptz    NOT NULL,
    kwh             numeric(14, 3) NOT NULL,
    days            numeric(10, 5) NOT NULL,
    net             numeric(12, 2) NOT NULL,
    vat_rate        numeric(4, 3)  NOT NULL,
    vat             numeric(12, 2) NOT NULL,
    total           numeric(12, 2) NOT NULL,
    prepay          boolean        NOT NULL,
    opening_balance numeric(12, 5),
    closing_balance numeric(12, 5),
    topups_count    integer        NOT NULL DEFAULT 0,
    topups_value    numeric(12, 2) NOT NULL DEFAULT 0,
    corrects        uuid,
    reason          text,
    details         jsonb          NOT NULL DEFAULT '{}',
    created_at      timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT invoices_id_esco_key UNIQUE (id, esco),
    CONSTRAINT invoices_run_esco_fkey FOREIGN KEY (run_id, esco) REFERENCES billing.billing_runs (id, esco),
    CONSTRAINT invoices_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT invoices_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT invoices_corrects_esco_fkey FOREIGN KEY (corrects, esco) REFERENCES billing.invoices (id, esco),
    CONSTRAINT invoices_kind_valid CHECK (kind IN ('statement', 'credit_note')),
    CONSTRAINT invoices_status_valid CHECK (status IN ('draft', 'final', 'void')),
    CONSTRAINT invoices_numbered_when_issued
        CHECK ((status = 'draft') = (number IS NULL) AND (number IS NULL) = (issued_at IS NULL)),
    CONSTRAINT invoices_credit_note_corrects CHECK (kind = 'statement' OR corrects IS NOT NULL),
    CONSTRAINT invoices_statement_in_a_run CHECK (kind = 'credit_note' OR run_id IS NOT NULL),
    CONSTRAINT invoices_period CHECK (period_to > period_from AND period_end > period_start),
    CONSTRAINT invoices_total_adds_up CHECK (total = net + vat),
    CONSTRAINT invoices_vat_rate_valid CHECK (vat_rate IN (0.05, 0.20))
);
COMMENT ON TABLE billing.invoices IS
    'Statements (and credit notes) per account and payer and month: net, VAT, total (GBP), prepayment '
    'balance figures, and details frozen when issued (names, address, meter, readings, 12-month usage; a draft '
    'holds none: api.invoices computes them for drafts).';
-- Numbers are unique per ESCO. Drafts have none and are not in the index: a
-- billing run writes no entry for them, and the foreign key checks of a run's
-- lines (id = $1 AND esco = $2) cannot take it for a lookup by ESCO, which,
-- planned while the table looked empty, read every statement of the ESCO for
-- each line: quadratic in the run's accounts.
CREATE UNIQUE INDEX invoices_esco_number_key ON billing.invoices (esco, number) WHERE number IS NOT NULL;
-- One live statement per account, payer and month; one credit note per statement.
CREATE UNIQUE INDEX invoices_one_statement ON billing.invoices (account_id, customer_id, period_start)
    WHERE kind = 'statement' AND status <> 'void';
CREATE UNIQUE INDEX invoices_one_credit_note ON billing.invoices (corrects) WHERE kind = 'credit_note';
CREATE INDEX invoices_run_idx ON billing.invoices (run_id);
CREATE INDEX invoices_customer_idx ON billing.invoices (customer_id, period_start);
CREATE INDEX invoices_account_idx ON billing.invoices (account_id, period_start);
CREATE INDEX invoices_corrects_idx ON billing.invoices (corrects) WHERE corrects IS NOT NULL;  -- (most are NULL)
-- The voided statements a new one replaces (a run looks for one per statement it
-- writes): only voids, so a run's lookups probe a tiny index instead of the
-- account's statements (and the dead drafts of runs computed again).
CREATE INDEX invoices_void_idx ON billing.invoices (account_id, customer_id, period_start) WHERE status = 'void';


CREATE TABLE billing.invoice_lines (
    id                   uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                 uuid           NOT NULL,
    invoice_id           uuid           NOT NULL,
    position             smallint       NOT NULL,
    kind                 text           NOT NULL,
    description          text           NOT NULL,
    register_id          uuid,
    element              text,
    nature               text,
    customer_tariff_id   uuid,
    period_from          timestamptz    NOT NULL,
    period_to            timestamptz    NOT NULL,
    quantity             numeric(14, 5) NOT NULL,
    unit                 text           NOT NULL,
    rate                 numeric(10, 5) NOT NULL,
    amount_exact         numeric        NOT NULL,
    amount               numeric(12, 2) NOT NULL,
    half_hours           integer,
    expected_half_hours  integer,
    estimated_half_hours integer,
    meter_rate           numeric(10, 5),
    CONSTRAINT invoice_lines_invoice_position_key UNIQUE (invoice_id, position),
    CONSTRAINT invoice_lines_invoice_esco_fkey
        FOREIGN KEY (invoice_id, esco) REFERENCES billing.invoices (id, esco) ON DELETE CASCADE,
    CONSTRAINT invoice_lines_register_esco_fkey
        FOREIGN KEY (register_id, esco) REFERENCES flows.meter_registers (register_id, esco),
    CONSTRAINT invoice_lines_tariff_esco_fkey
        FOREIGN KEY (customer_tariff_id, esco) REFERENCES billing.customer_tariffs (id, esco),
    CONSTRAINT invoice_lines_kind_valid CHECK (kind IN ('energy', 'standing_charge')),
    CONSTRAINT invoice_lines_unit_valid CHECK ((kind, unit) IN (('energy', 'kWh'), ('standing_charge', 'day'))),
    CONSTRAINT invoice_lines_period CHECK (period_to > period_from),
    CONSTRAINT invoice_lines_energy_has_register CHECK ((kind = 'energy') = (register_id IS NOT NULL)),
    CONSTRAINT invoice_lines_amount_near_exact CHECK (abs(amount - amount_exact) < 0.01)
);
COMMENT ON TABLE billing.invoice_lines IS
    'Lines of a statement: energy per register and tariff period (kWh x unit rate), standing charge per '
    'day (days x rate). amount_exact = quantity x rate net of VAT, unrounded; amount = its share of the '
    'statement''s rounded net, to the penny.';
-- (lines by statement: invoice_lines_invoice_position_key)
CREATE INDEX invoice_lines_tariff_idx ON billing.invoice_lines (customer_tariff_id);

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


-- Rendered statements: one document per final statement, stored once.
CREATE TABLE billing.invoice_documents (
    invoice_id  uuid        PRIMARY KEY,
    esco        uuid        NOT NULL,
    media_type  text        NOT NULL DEFAULT 'application/pdf',
    content     bytea       NOT NULL,
    sha256      text        NOT NULL,
    renderer    text        NOT NULL,
    rendered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoice_documents_invoice_esco_fkey
        FOREIGN KEY (invoice_id, esco) REFERENCES billing.invoices (id, esco),
    CONSTRAINT invoice_documents_pdf CHECK (media_type = 'application/pdf' AND substring(content FROM 1 FOR 5) = '%PDF-'),
    CONSTRAINT invoice_documents_sha256 CHECK (sha256 = encode(sha256(content), 'hex'))
);
COMMENT ON TABLE billing.invoice_documents IS 'The PDF of each final statement or credit note, rendered and stored once.';


-- Final statements never change: the only change allowed is final -> void
-- (by a credit note), and the erasure of the customer's name in what it
-- prints; their lines are frozen with them (and their documents are deleted
-- only by that erasure, to be rendered again).
CREATE FUNCTION billing.guard_final_invoice() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'final' AND NEW.status = 'void'
       AND (to_jsonb(NEW) - 'status') = (to_jsonb(OLD) - 'status') THEN
        RETURN NEW;
    END IF;
    -- erasing the customer (gdpr.erase_customer) pseudonymises what the statement prints
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - '{details,reason}'::text[]) = (to_jsonb(OLD) - '{details,reason}'::text[]) THEN
        IF gdpr.erasing(OLD.esco, OLD.customer_id) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% % is % and cannot be changed', replace(OLD.kind, '_', ' '), OLD.number, OLD.status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
END
$$;

CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON billing.invoices
    FOR EACH ROW EXECUTE FUNCTION billing.guard_final_invoice();

-- New lines: a statement's lines are written once, all together, when it is
-- issued (billing.issue_invoices writes what the draft held): never for a
-- draft, never added to a statement that has lines. Checked once per
-- statement (a transition table), so issuing thousands of lines pays one
-- check, not one per line.
CREATE FUNCTION billing.guard_final_invoice_new_lines() RETURNS trigger
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

CREATE TRIGGER invoice_lines_frozen_insert AFTER INSERT ON billing.invoice_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION billing.guard_final_invoice_new_lines();

CREATE FUNCTION billing.guard_final_invoice_line() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM billing.invoices AS i WHERE i.id = OLD.invoice_id AND i.status <> 'draft') THEN
        RAISE EXCEPTION 'the lines of a final statement cannot be changed'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER invoice_lines_frozen BEFORE UPDATE OR DELETE ON billing.invoice_lines
    FOR EACH ROW EXECUTE FUNCTION billing.guard_final_invoice_line();

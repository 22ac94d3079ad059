-- 0007_billing: the money side: customers, accounts, occupancy, contracts, customer tariffs, billing runs,
-- statements and their documents (schema billing), the api views and RPCs, grants and policies.


CREATE SCHEMA billing AUTHORIZATION flows_owner;
COMMENT ON SCHEMA billing IS 'Flows money: customers, accounts, tariffs, statements. Not exposed over HTTP.';


-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;


-- ---- schema/billing/money.sql ----
-- Money: GBP as numeric, never float, and ONE rounding rule (docs/billing.md).
--
--   Rates (GBP per kWh, GBP per day) have 5 decimals (the meters' 0.00001 GBP).
--   Amounts are pence (2 decimals).
--   Rounding is half-up: a half rounds away from zero, so a credit note is the
--   exact mirror of the statement it cancels (PostgreSQL's numeric round()).
--   A statement is rounded once, per invoice (HMRC allows per line or per
--   invoice): its net is the exact sum of quantity x rate (VAT-inclusive
--   prices), divided by 1.05 once and rounded to the penny; VAT is the rounded net x the VAT rate, rounded to the penny; the
--   lines show the net shared out to the penny so that they add up to it
--   exactly (largest remainder). Splitting a period never changes the total.
-- Every rounding in billing goes through billing.round_half_up.

CREATE FUNCTION billing.round_half_up(amount numeric, places integer) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN round(amount, places);
COMMENT ON FUNCTION billing.round_half_up(numeric, integer) IS
    'The one rounding rule of billing: half-up (a half rounds away from zero) to the given decimal places.';

-- The VAT rate prices include: the price cap and the meters' tariffs are
-- quoted with 5% VAT (domestic energy).
CREATE FUNCTION billing.included_vat_rate() RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 0.05;

-- Net of VAT, unrounded, of an amount at VAT-inclusive prices.
CREATE FUNCTION billing.net_of_vat(gross numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN gross / (1 + billing.included_vat_rate());

-- A customer rate from a benchmark (price-cap) rate and a discount in percent:
-- benchmark x (1 - discount / 100), rounded half-up to 5 decimals.
CREATE FUNCTION billing.discounted_rate(benchmark numeric, discount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN billing.round_half_up(benchmark * (1 - discount / 100), 5);
COMMENT ON FUNCTION billing.discounted_rate(numeric, numeric) IS
    'benchmark x (1 - discount/100), half-up to 5 decimals: how every customer and microgrid rate is derived.';

-- VAT rate of a statement: 5% for homes; a business (commercial property)
-- above the de-minimis 33 kWh a day pays the standard 20%.
CREATE FUNCTION billing.vat_rate(property_type text, kwh numeric, days numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN property_type = 'commercial' AND days > 0 AND kwh / days > 33 THEN 0.20 ELSE 0.05 END;

-- UK days (Europe/London) between two instants, counting part-days by the
-- share of that day's length (23, 24 or 25 hours) they cover: a standing
-- charge per day is pro rata to the time billed.
CREATE FUNCTION billing.uk_day_fraction(ts timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN extract(epoch FROM ts - flows.uk_day_start(flows.uk_day(ts)))
     / extract(epoch FROM flows.uk_day_start(flows.uk_day(ts) + 1) - flows.uk_day_start(flows.uk_day(ts)));

CREATE FUNCTION billing.uk_days(from_time timestamptz, to_time timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN billing.round_half_up((flows.uk_day(to_time) - flows.uk_day(from_time))
                             + billing.uk_day_fraction(to_time) - billing.uk_day_fraction(from_time), 5);
COMMENT ON FUNCTION billing.uk_days(timestamptz, timestamptz) IS
    'UK days between two instants, part-days pro rata to the day''s length, half-up to 5 decimals.';

-- First day of the quarter a day falls in (price caps change quarterly).
CREATE FUNCTION billing.quarter_start(day date) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN date_trunc('quarter', day::timestamp)::date;


-- ---- schema/billing/customers.sql ----
-- Who pays: customers, the accounts they pay for, who stands behind an
-- account when (customer_accounts), and their contracts. Every row carries its
-- ESCO; composite foreign keys (id, esco) keep links inside one ESCO.

-- Per ESCO: what its statements print about it (contact, VAT number) and
-- its counters (account numbers, statement numbers). The row is locked while
-- a number is taken, so numbers are gap-free and never reused.
CREATE TABLE billing.esco_billing (
    esco                uuid        PRIMARY KEY REFERENCES flows.escos (id) ON DELETE CASCADE,
    legal_name          text,
    address             text,
    email               text,
    phone               text,
    website             text,
    vat_number          text,
    last_account_number integer     NOT NULL DEFAULT 1000,
    last_invoice_number integer     NOT NULL DEFAULT 0,
    CONSTRAINT esco_billing_counters_not_negative CHECK (last_account_number >= 0 AND last_invoice_number >= 0),
    CONSTRAINT esco_billing_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    CONSTRAINT esco_billing_vat_number_format CHECK (vat_number ~ '^GB[0-9]{9}([0-9]{3})?$')
);
COMMENT ON TABLE billing.esco_billing IS
    'Per ESCO: contact details printed on statements, and the last account and statement numbers given out.';

-- The next number of a counter ('account' or 'invoice') of an ESCO, taken in
-- the caller's transaction: a rollback gives it back, so no gaps.
CREATE FUNCTION billing.take_numbers(p_esco uuid, p_counter text, p_count integer) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    first integer;
BEGIN
    INSERT INTO billing.esco_billing (esco) VALUES (p_esco) ON CONFLICT (esco) DO NOTHING;
    IF p_counter = 'account' THEN
        UPDATE billing.esco_billing AS c SET last_account_number = c.last_account_number + p_count
        WHERE c.esco = p_esco RETURNING c.last_account_number - p_count + 1 INTO first;
    ELSIF p_counter = 'invoice' THEN
        UPDATE billing.esco_billing AS c SET last_invoice_number = c.last_invoice_number + p_count
        WHERE c.esco = p_esco RETURNING c.last_invoice_number - p_count + 1 INTO first;
    ELSE
        RAISE EXCEPTION 'unknown counter %', p_counter USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN first;
END
$$;
COMMENT ON FUNCTION billing.take_numbers(uuid, text, integer) IS
    'Takes p_count consecutive numbers of an ESCO''s account or invoice counter; returns the first. Row-locked.';


CREATE TABLE billing.customers (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                 uuid        NOT NULL REFERENCES flows.escos (id),
    fullname             text        NOT NULL,
    email                text,
    phone                text,
    status               text        NOT NULL DEFAULT 'pending',
    details_confirmed_at timestamptz,
    payment_method       text,
    invite_token         text,
    invite_expires_at    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_id_esco_key UNIQUE (id, esco),
    CONSTRAINT customers_esco_email_key UNIQUE (esco, email),
    CONSTRAINT customers_invite_token_key UNIQUE (invite_token),
    CONSTRAINT customers_fullname_not_blank CHECK (btrim(fullname) <> ''),
    CONSTRAINT customers_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    CONSTRAINT customers_phone_format CHECK (phone ~ '^\+?[0-9 ]{7,20}$'),
    CONSTRAINT customers_status_valid CHECK (status IN ('pending', 'onboarding', 'live', 'exiting', 'archived')),
    CONSTRAINT customers_payment_method_valid
        CHECK (payment_method IN ('card', 'direct_debit', 'bank_transfer', 'cash')),
    CONSTRAINT customers_invite_complete CHECK ((invite_token IS NULL) = (invite_expires_at IS NULL))
);
COMMENT ON TABLE billing.customers IS
    'People who pay. status: pending (invited) -> onboarding -> live -> exiting -> archived.';
COMMENT ON COLUMN billing.customers.invite_token IS 'Invitation token; valid until invite_expires_at (7 days).';

-- The ESCO code of a customer (for minting a customer's token), null if none.
CREATE FUNCTION billing.customer_esco_code(p_customer uuid) RETURNS text
LANGUAGE sql STABLE
RETURN (SELECT e.code FROM billing.customers AS c JOIN flows.escos AS e ON e.id = c.esco WHERE c.id = p_customer);

CREATE TRIGGER customers_touch BEFORE UPDATE ON billing.customers
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- The onboarding lifecycle. A customer is live only with confirmed details, a
-- payment method and a signed contract in force.
CREATE FUNCTION billing.check_customer_status() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status <> OLD.status AND NOT (OLD.status, NEW.status) IN (
        ('pending', 'onboarding'), ('pending', 'archived'), ('onboarding', 'live'), ('onboarding', 'archived'),
        ('live', 'exiting'), ('exiting', 'archived'), ('exiting', 'live')) THEN
        RAISE EXCEPTION 'customer status cannot go from % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation',
                  HINT = 'pending -> onboarding -> live -> exiting -> archived';
    END IF;
    IF NEW.status = 'live' AND (TG_OP = 'INSERT' OR OLD.status <> 'live') THEN
        IF NEW.details_confirmed_at IS NULL OR NEW.payment_method IS NULL OR NOT EXISTS (
            SELECT FROM billing.contracts AS c
            WHERE c.customer_id = NEW.id AND c.signed_at IS NOT NULL
              AND c.effective_date <= flows.uk_day(pg_catalog.now())
              AND (c.end_date IS NULL OR c.end_date > flows.uk_day(pg_catalog.now()))) THEN
            RAISE EXCEPTION 'customer % cannot be live yet: %', NEW.fullname, concat_ws(', ',
                CASE WHEN NEW.details_confirmed_at IS NULL THEN 'details not confirmed' END,
                CASE WHEN NEW.payment_method IS NULL THEN 'no payment method' END,
                CASE WHEN NOT EXISTS (SELECT FROM billing.contracts AS c
                                      WHERE c.customer_id = NEW.id AND c.signed_at IS NOT NULL
                                        AND c.effective_date <= flows.uk_day(pg_catalog.now())
                                        AND (c.end_date IS NULL OR c.end_date > flows.uk_day(pg_catalog.now())))
                     THEN 'no signed contract in force' END)
                USING ERRCODE = 'check_violation',
                      HINT = 'confirm the details, set payment_method and sign a contract first';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER customers_status BEFORE INSERT OR UPDATE OF status ON billing.customers
    FOR EACH ROW EXECUTE FUNCTION billing.check_customer_status();


CREATE TABLE billing.accounts (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid        NOT NULL REFERENCES flows.escos (id),
    account_number text        NOT NULL,
    type           text        NOT NULL DEFAULT 'supply',
    status         text        NOT NULL DEFAULT 'open',
    property       uuid        NOT NULL,
    meter_id       uuid,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT accounts_esco_account_number_key UNIQUE (esco, account_number),
    CONSTRAINT accounts_property_esco_fkey FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT accounts_meter_esco_fkey FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco),
    CONSTRAINT accounts_account_number_format CHECK (account_number ~ '^[A-Z0-9]{3,12}$'),
    CONSTRAINT accounts_type_valid CHECK (type IN ('supply', 'solar', 'ev')),
    CONSTRAINT accounts_status_valid CHECK (status IN ('pending', 'open', 'closed')),
    CONSTRAINT accounts_closed_when_closed CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CONSTRAINT accounts_closed_after_opened CHECK (closed_at > opened_at),
    CONSTRAINT accounts_open_has_meter CHECK (status = 'pending' OR meter_id IS NOT NULL)
);
COMMENT ON TABLE billing.accounts IS
    'What is billed: a supply (consumption), solar (generation) or ev account of a property and its meter. '
    'account_number is printed on statements and is the bank-transfer reference.';

-- One supply (solar, ev) account per property at a time.
CREATE UNIQUE INDEX accounts_one_per_property_and_type ON billing.accounts (property, type) WHERE status <> 'closed';
CREATE INDEX accounts_meter_idx ON billing.accounts (meter_id);


-- Who stands behind an account, and when: an owner (a landlord, or the
-- owner-occupier) and an occupier (who lives there). Occupiers of one account
-- never overlap, nor do owners. Times are whole half hours, so a move splits
-- the half-hourly data exactly.
CREATE TABLE billing.customer_accounts (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid        NOT NULL,
    customer_id    uuid        NOT NULL,
    account_id     uuid        NOT NULL,
    role           text        NOT NULL,
    start_time     timestamptz NOT NULL,
    end_time       timestamptz,
    move_in_reads  jsonb,
    move_out_reads jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_accounts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT customer_accounts_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT customer_accounts_account_esco_fkey
        FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT customer_accounts_role_valid CHECK (role IN ('owner', 'occupier')),
    CONSTRAINT customer_accounts_end_after_start CHECK (end_time > start_time),
    CONSTRAINT customer_accounts_half_hours
        CHECK (date_bin('30 minutes', start_time, 'epoch') = start_time
               AND date_bin('30 minutes', end_time, 'epoch') = end_time),
    CONSTRAINT customer_accounts_occupier_overlap
        EXCLUDE USING gist (account_id WITH =, tstzrange(start_time, end_time) WITH &&) WHERE (role = 'occupier'),
    CONSTRAINT customer_accounts_owner_overlap
        EXCLUDE USING gist (account_id WITH =, tstzrange(start_time, end_time) WITH &&) WHERE (role = 'owner')
);
COMMENT ON TABLE billing.customer_accounts IS
    'Owner and occupier of an account over time (move in = start_time, move out = end_time, null: still). '
    'Whoever occupies pays; while nobody does, the owner pays.';
COMMENT ON COLUMN billing.customer_accounts.move_out_reads IS
    'Final reads at move-out: {"A": {"read": kWh, "timestamp": ..., "estimated": bool}, ...}.';
CREATE INDEX customer_accounts_customer_idx ON billing.customer_accounts (customer_id);
CREATE INDEX customer_accounts_account_idx ON billing.customer_accounts (account_id, role);


CREATE TABLE billing.contracts (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid        NOT NULL,
    customer_id    uuid        NOT NULL,
    account_id     uuid,
    type           text        NOT NULL DEFAULT 'supply',
    terms_version  text        NOT NULL,
    signed_at      timestamptz,
    effective_date date        NOT NULL,
    end_date       date,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contracts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT contracts_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT contracts_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT contracts_type_valid CHECK (type IN ('supply', 'solar', 'ev')),
    CONSTRAINT contracts_terms_version_not_blank CHECK (btrim(terms_version) <> ''),
    CONSTRAINT contracts_end_after_start CHECK (end_date > effective_date)
);
COMMENT ON TABLE billing.contracts IS 'Contracts a customer signed: terms version, type, signed, effective and end date.';
CREATE INDEX contracts_customer_idx ON billing.contracts (customer_id);


-- Who pays an account when: its occupiers while they occupy it, and its
-- owner for the time nobody does (a void period of a let property).
CREATE VIEW billing.payer_periods WITH (security_invoker = true) AS
SELECT ca.esco, ca.account_id, ca.customer_id, ca.role, tstzrange(ca.start_time, ca.end_time) AS period
FROM billing.customer_accounts AS ca
WHERE ca.role = 'occupier'
UNION ALL
SELECT o.esco, o.account_id, o.customer_id, o.role, r.period
FROM billing.customer_accounts AS o
LEFT JOIN (SELECT x.account_id, range_agg(tstzrange(x.start_time, x.end_time)) AS occupied
           FROM billing.customer_accounts AS x WHERE x.role = 'occupier' GROUP BY x.account_id) AS oc
  ON oc.account_id = o.account_id
CROSS JOIN LATERAL unnest(tstzmultirange(tstzrange(o.start_time, o.end_time))
                          - coalesce(oc.occupied, '{}'::tstzmultirange)) AS r (period)
WHERE o.role = 'owner';
COMMENT ON VIEW billing.payer_periods IS 'Who pays each account when: occupiers, and the owner while nobody occupies.';


-- ---- schema/billing/tariffs.sql ----
-- Tariffs for customers: the regulator's price cap per region and quarter
-- (benchmark_tariffs), each ESCO's quarter (microgrid_tariffs: its discount
-- and the meters' prepayment settings) and each customer's rates
-- (customer_tariffs). Rates are GBP including 5% VAT, 5 decimals, derived by
-- billing.discounted_rate and never typed in.

CREATE TABLE billing.benchmark_tariffs (
    region          text           NOT NULL,
    period_start    date           NOT NULL,
    unit_rate       numeric(10, 5) NOT NULL,
    standing_charge numeric(10, 5) NOT NULL,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (region, period_start),
    CONSTRAINT benchmark_tariffs_region_valid CHECK (region IN (
        'north_west', 'north_east', 'yorkshire', 'east_midlands', 'west_midlands', 'eastern', 'london',
        'south_east', 'southern', 'south_west', 'north_wales_mersey', 'south_wales', 'north_scotland',
        'south_scotland')),
    CONSTRAINT benchmark_tariffs_quarter_start CHECK (period_start = billing.quarter_start(period_start)),
    CONSTRAINT benchmark_tariffs_unit_rate_range CHECK (unit_rate > 0 AND unit_rate <= 1),
    CONSTRAINT benchmark_tariffs_standing_charge_range CHECK (standing_charge >= 0 AND standing_charge <= 2)
);
COMMENT ON TABLE billing.benchmark_tariffs IS
    'The price cap per Ofgem region and quarter: unit rate GBP/kWh and standing charge GBP/day, incl. 5% VAT.';


CREATE TABLE billing.microgrid_tariffs (
    id                   uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                 uuid           NOT NULL REFERENCES flows.escos (id),
    period_start         date           NOT NULL,
    region               text           NOT NULL,
    discount             numeric(5, 2)  NOT NULL DEFAULT 25,
    emergency_credit     numeric(8, 2)  NOT NULL DEFAULT 15,
    ecredit_availability numeric(8, 2)  NOT NULL DEFAULT 10,
    debt_recovery_rate   numeric(8, 5)  NOT NULL DEFAULT 0.25,
    created_at           timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT microgrid_tariffs_id_esco_key UNIQUE (id, esco),
    CONSTRAINT microgrid_tariffs_esco_period_key UNIQUE (esco, period_start),
    CONSTRAINT microgrid_tariffs_benchmark_fkey
        FOREIGN KEY (region, period_start) REFERENCES billing.benchmark_tariffs (region, period_start),
    CONSTRAINT microgrid_tariffs_discount_range CHECK (discount >= 0 AND discount <= 100),
    CONSTRAINT microgrid_tariffs_prepayment_range
        CHECK (emergency_credit BETWEEN 0 AND 500 AND ecredit_availability BETWEEN 0 AND 500
               AND debt_recovery_rate BETWEEN 0 AND 20)
);
COMMENT ON TABLE billing.microgrid_tariffs IS
    'An ESCO''s quarter: its region''s price cap, the default discount (percent) and the meters'' prepayment '
    'settings (emergency credit, when it is available, debt recovery per day; GBP).';
COMMENT ON COLUMN billing.microgrid_tariffs.discount IS
    'Percent off the price cap (production misnamed it basis points): 25 means 25%.';


CREATE TABLE billing.customer_tariffs (
    id                  uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid           NOT NULL,
    customer_id         uuid           NOT NULL,
    microgrid_tariff_id uuid           NOT NULL,
    period_start        date           NOT NULL,
    effective_from      timestamptz    NOT NULL,
    effective_to        timestamptz    NOT NULL,
    discount            numeric(5, 2)  NOT NULL,
    unit_rate           numeric(10, 5) NOT NULL,
    standing_charge     numeric(10, 5) NOT NULL,
    created_at          timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT customer_tariffs_id_esco_key UNIQUE (id, esco),
    CONSTRAINT customer_tariffs_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT customer_tariffs_microgrid_esco_fkey
        FOREIGN KEY (microgrid_tariff_id, esco) REFERENCES billing.microgrid_tariffs (id, esco),
    CONSTRAINT customer_tariffs_discount_range CHECK (discount >= 0 AND discount <= 100),
    CONSTRAINT customer_tariffs_in_quarter
        CHECK (effective_to > effective_from
               AND effective_from >= flows.uk_day_start(period_start)
               AND effective_to <= flows.uk_day_start((period_start + interval '3 months')::date)),
    CONSTRAINT customer_tariffs_half_hours
        CHECK (date_bin('30 minutes', effective_from, 'epoch') = effective_from
               AND date_bin('30 minutes', effective_to, 'epoch') = effective_to),
    CONSTRAINT customer_tariffs_overlap
        EXCLUDE USING gist (customer_id WITH =, tstzrange(effective_from, effective_to) WITH &&)
);
COMMENT ON TABLE billing.customer_tariffs IS
    'A customer''s rates (GBP incl. VAT) from effective_from to effective_to, within one quarter: '
    'the price cap x (1 - discount/100), half-up to 5 decimals (billing.discounted_rate).';
CREATE INDEX customer_tariffs_microgrid_idx ON billing.customer_tariffs (microgrid_tariff_id);
CREATE INDEX customer_tariffs_customer_idx ON billing.customer_tariffs (customer_id, effective_from);

-- Rates are derived, never entered: from the quarter's price cap and the discount.
CREATE FUNCTION billing.derive_customer_rates() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    cap record;
BEGIN
    SELECT b.unit_rate, b.standing_charge, m.period_start INTO cap
    FROM billing.microgrid_tariffs AS m
    JOIN billing.benchmark_tariffs AS b ON b.region = m.region AND b.period_start = m.period_start
    WHERE m.id = NEW.microgrid_tariff_id;
    NEW.period_start := cap.period_start;
    NEW.unit_rate := billing.discounted_rate(cap.unit_rate, NEW.discount);
    NEW.standing_charge := billing.discounted_rate(cap.standing_charge, NEW.discount);
    RETURN NEW;
END
$$;

CREATE TRIGGER customer_tariffs_rates BEFORE INSERT OR UPDATE ON billing.customer_tariffs
    FOR EACH ROW EXECUTE FUNCTION billing.derive_customer_rates();


-- ---- schema/billing/statements.sql ----
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
    CONSTRAINT invoices_esco_number_key UNIQUE (esco, number),
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
    'balance figures, and details frozen at computation (names, address, meter, readings, 12-month usage).';
-- One live statement per account, payer and month; one credit note per statement.
CREATE UNIQUE INDEX invoices_one_statement ON billing.invoices (account_id, customer_id, period_start)
    WHERE kind = 'statement' AND status <> 'void';
CREATE UNIQUE INDEX invoices_one_credit_note ON billing.invoices (corrects) WHERE kind = 'credit_note';
CREATE INDEX invoices_run_idx ON billing.invoices (run_id);
CREATE INDEX invoices_customer_idx ON billing.invoices (customer_id, period_start);
CREATE INDEX invoices_account_idx ON billing.invoices (account_id, period_start);
CREATE INDEX invoices_corrects_idx ON billing.invoices (corrects);


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
CREATE INDEX invoice_lines_invoice_idx ON billing.invoice_lines (invoice_id);
CREATE INDEX invoice_lines_tariff_idx ON billing.invoice_lines (customer_tariff_id);


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
-- (by a credit note); their lines and documents are frozen with them.
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
    RAISE EXCEPTION '% % is % and cannot be changed', replace(OLD.kind, '_', ' '), OLD.number, OLD.status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
END
$$;

CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON billing.invoices
    FOR EACH ROW EXECUTE FUNCTION billing.guard_final_invoice();

-- New lines: checked once per statement (a transition table), so a run
-- writing thousands of lines pays one check, not one per line.
CREATE FUNCTION billing.guard_final_invoice_new_lines() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_lines AS l JOIN billing.invoices AS i ON i.id = l.invoice_id
               WHERE i.status <> 'draft') THEN
        RAISE EXCEPTION 'the lines of a final statement cannot be changed'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
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


-- ---- schema/billing/billing_run.sql ----
-- Computing statements, set-based: every account of a run in a handful of
-- statements, never a loop per account.
--
--   billed_periods   who pays each billed account when in the month
--                    (occupier, else owner), within the account's life
--   statement_lines  those periods split where the payer's tariff changes and
--                    where a register starts or ends: energy per register
--                    (kWh from the half hours) and standing charge per day
--   compute_statements  rounds per statement (billing/money.sql) and writes the
--                    drafts with everything a statement prints, frozen

-- Statements look a meter's registers up by meter, whatever their status
-- (flows only indexes the enabled ones per element).
CREATE INDEX meter_registers_meter_idx ON flows.meter_registers (meter_id);

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
-- are not pending, while open.
CREATE FUNCTION billing.billed_periods(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (account_id uuid, meter_id uuid, customer_id uuid, period tstzrange)
LANGUAGE sql STABLE
AS $$
    SELECT a.id, a.meter_id, p.customer_id, x.period
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id
    CROSS JOIN LATERAL (SELECT p.period * billing.month_range(p_period_start)
                               * tstzrange(a.opened_at, a.closed_at) AS period) AS x
    WHERE a.esco = p_esco AND a.type IN ('supply', 'ev') AND a.status <> 'pending'
      AND (p_accounts IS NULL OR a.id = ANY (p_accounts))
      AND NOT isempty(x.period)
$$;
COMMENT ON FUNCTION billing.billed_periods(uuid, date, uuid[]) IS
    'Per billed account of an ESCO and month: who pays it when (occupier, else owner), while the account is open.';

-- The lines of every statement of an ESCO's month (all accounts, or
-- p_accounts), unrounded. Energy is what billing.energy_between gives, written
-- out as joins so that the whole month is a few grouped passes: whole UK days
-- from the daily rollup, the part-days at the edges of a period from the half
-- hours (only periods that start or end mid-day have edges).
CREATE FUNCTION billing.statement_lines(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (
    account_id uuid, customer_id uuid, kind text, register_id uuid, element text, nature text,
    customer_tariff_id uuid, period_from timestamptz, period_to timestamptz, quantity numeric, unit text,
    rate numeric, amount_exact numeric, half_hours integer, expected_half_hours integer,
    estimated_half_hours integer, meter_rate numeric
)
LANGUAGE sql STABLE
AS $$
    WITH segments AS MATERIALIZED (  -- a payer's period split where their tariff changes
        SELECT b.account_id, b.meter_id, b.customer_id, t.id AS customer_tariff_id, t.unit_rate, t.standing_charge,
               b.period * tstzrange(t.effective_from, t.effective_to) AS period
        FROM billing.billed_periods(p_esco, p_period_start, p_accounts) AS b
        JOIN billing.customer_tariffs AS t
          ON t.customer_id = b.customer_id AND tstzrange(t.effective_from, t.effective_to) && b.period
    ),
    register_segments AS MATERIALIZED (  -- ... and where a register starts or ends
        SELECT s.account_id, s.meter_id, s.customer_id, s.customer_tariff_id, s.unit_rate, r.register_id, r.element,
               r.nature, lower(x.period) AS from_time, upper(x.period) AS to_time,
               CASE WHEN flows.uk_day_start(flows.uk_day(lower(x.period))) = lower(x.period)
                    THEN flows.uk_day(lower(x.period)) ELSE flows.uk_day(lower(x.period)) + 1 END AS first_full,
               flows.uk_day(upper(x.period)) AS end_day
        FROM segments AS s
        JOIN flows.meter_registers AS r ON r.meter_id = s.meter_id AND r.nature <> 'solar'
        CROSS JOIN LATERAL (SELECT s.period * tstzrange(r.start_time, r.end_time) AS period) AS x
        WHERE NOT isempty(x.period)
    ),
    whole_days AS (
        SELECT g.register_id, g.from_time, sum(d.import_kwh) AS kwh, sum(d.intervals) AS half_hours,
               sum(d.estimated) AS estimated
        FROM register_segments AS g
        JOIN flows.register_interval_daily AS d
          ON d.register_id = g.register_id AND d.day >= g.first_full AND d.day < g.end_day
        GROUP BY g.register_id, g.from_time
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
    UNION ALL
    SELECT s.account_id, s.customer_id, 'standing_charge', NULL, NULL, NULL, s.customer_tariff_id,
           lower(s.period), upper(s.period), d.days, 'day', s.standing_charge,
           billing.net_of_vat(d.days * s.standing_charge), NULL, NULL, NULL,
           (mt.tariff ->> 'standing_charge')::numeric
    FROM segments AS s
    CROSS JOIN LATERAL (SELECT billing.uk_days(lower(s.period), upper(s.period)) AS days) AS d
    LEFT JOIN meter_tariffs AS mt ON mt.meter_id = s.meter_id AND mt.period = s.period
$$;
COMMENT ON FUNCTION billing.statement_lines(uuid, date, uuid[]) IS
    'Statement lines of an ESCO''s month, unrounded: energy per register and tariff period, standing charge per day.';

-- Billed periods with no customer tariff in force (a statement needs one
-- for every half hour it bills): what create_billing_run refuses to bill.
CREATE FUNCTION billing.periods_without_tariff(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (account_id uuid, customer_id uuid, uncovered tstzmultirange)
LANGUAGE sql STABLE
AS $$
    SELECT x.account_id, x.customer_id, x.uncovered
    FROM (
        SELECT b.account_id, b.customer_id,
               tstzmultirange(b.period)
               - coalesce(range_agg(tstzrange(t.effective_from, t.effective_to)) FILTER (WHERE t.id IS NOT NULL),
                          '{}'::tstzmultirange) AS uncovered  -- (tstzrange(null, null) would be everything)
        FROM billing.billed_periods(p_esco, p_period_start, p_accounts) AS b
        LEFT JOIN billing.customer_tariffs AS t
          ON t.customer_id = b.customer_id AND tstzrange(t.effective_from, t.effective_to) && b.period
        GROUP BY b.account_id, b.customer_id, b.period
    ) AS x
    WHERE NOT isempty(x.uncovered)
$$;


-- Computes the draft statements of a run (of all its accounts, or
-- p_accounts), replacing its drafts: the same inputs give identical figures.
-- Accounts whose statement for the month is final already are left alone.
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
    JOIN billing.accounts AS a ON a.id = g.account_id
    JOIN billing.customers AS c ON c.id = g.customer_id
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
    totals AS (
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
    -- What a statement prints besides its lines, frozen with it: the reads
    -- at either end, the tariffs and their price cap, 12 months of the
    -- meter's kWh and an annual estimate, the credit pushed to the meter;
    -- each one grouped pass over the run.
    per_register AS (
        SELECT l.account_id, l.customer_id, l.register_id, l.element, sum(l.quantity) AS kwh,
               sum(l.half_hours) AS half_hours, sum(l.expected_half_hours) AS expected,
               sum(l.estimated_half_hours) AS estimated
        FROM lines AS l
        WHERE l.kind = 'energy'
        GROUP BY l.account_id, l.customer_id, l.register_id, l.element
    ),
    readings AS (
        SELECT r.account_id, r.customer_id, sum(r.estimated) AS estimated,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'register_id', r.register_id, 'element', r.element,
                   'start_read', sr.read, 'start_read_at', sr."timestamp",
                   'end_read', er.read, 'end_read_at', er."timestamp",
                   'kwh', r.kwh, 'half_hours', r.half_hours, 'expected_half_hours', r.expected,
                   'estimated_half_hours', r.estimated,
                   'estimated', r.estimated > 0 OR r.half_hours < r.expected) ORDER BY r.element) AS readings
        FROM per_register AS r
        JOIN totals AS t ON t.account_id = r.account_id AND t.customer_id = r.customer_id
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_from
                           ORDER BY x."timestamp" DESC LIMIT 1) AS sr ON true
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_to
                           ORDER BY x."timestamp" DESC LIMIT 1) AS er ON true
        GROUP BY r.account_id, r.customer_id
    ),
    tariffs AS (
        SELECT u.account_id, u.customer_id,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'customer_tariff_id', ct.id, 'effective_from', ct.effective_from, 'effective_to', ct.effective_to,
                   'discount', ct.discount, 'unit_rate', ct.unit_rate, 'standing_charge', ct.standing_charge,
                   'cap_unit_rate', bt.unit_rate, 'cap_standing_charge', bt.standing_charge, 'region', mg.region)
                   ORDER BY ct.effective_from) AS tariffs,
               (array_agg(ct.unit_rate ORDER BY ct.effective_from DESC))[1] AS unit_rate,
               (array_agg(ct.standing_charge ORDER BY ct.effective_from DESC))[1] AS standing_charge
        FROM (SELECT DISTINCT l.account_id, l.customer_id, l.customer_tariff_id FROM lines AS l) AS u
        JOIN billing.customer_tariffs AS ct ON ct.id = u.customer_tariff_id
        JOIN billing.microgrid_tariffs AS mg ON mg.id = ct.microgrid_tariff_id
        JOIN billing.benchmark_tariffs AS bt ON bt.region = mg.region AND bt.period_start = mg.period_start
        GROUP BY u.account_id, u.customer_id
    ),
    months AS (  -- the meter's kWh in each of the 12 months to the statement's (whoever paid then)
        SELECT t.account_id, t.customer_id, mo::date AS month, coalesce(sum(x.import_kwh), 0) AS kwh
        FROM totals AS t
        CROSS JOIN generate_series(run.period_start - interval '11 months', run.period_start::timestamp,
                                   interval '1 month') AS mo
        LEFT JOIN flows.meter_registers AS r ON r.meter_id = t.meter_id AND r.nature <> 'solar'
        LEFT JOIN flows.register_interval_monthly AS x ON x.register_id = r.register_id AND x.month = mo::date
        GROUP BY t.account_id, t.customer_id, mo
    ),
    usage AS (
        SELECT u.account_id, u.customer_id,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('month', u.month, 'kwh', u.kwh) ORDER BY u.month)
                   AS months,
               sum(u.kwh) AS total,
               -- a year's kWh: the last 12 months, scaled up when fewer months have data
               billing.round_half_up(sum(u.kwh) * 12 / greatest(count(*) FILTER (WHERE u.kwh > 0), 1), 0) AS annual
        FROM months AS u
        GROUP BY u.account_id, u.customer_id
    ),
    topups AS (  -- credit pushed to the meter (the payments issue moves this onto its top-ups)
        SELECT t.account_id, t.customer_id, count(*)::integer AS n,
               sum(coalesce(x.result ->> 'amount', x.parameters ->> 'amount')::numeric) AS value
        FROM totals AS t
        JOIN flows.meter_commands AS x
          ON x.meter_id = t.meter_id AND x.kind = 'send_token' AND x.status = 'done'
         AND x.finished_at >= t.period_from AND x.finished_at < t.period_to
        GROUP BY t.account_id, t.customer_id
    ),
    made AS (
        INSERT INTO billing.invoices (esco, run_id, account_id, customer_id, period_start, period_end, period_from,
                                      period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,
                                      closing_balance, topups_count, topups_value, corrects, details)
        SELECT run.esco, run.id, t.account_id, t.customer_id, run.period_start, run.period_end, t.period_from,
               t.period_to, t.kwh, t.days, t.net, t.vat_rate, billing.round_half_up(t.net * t.vat_rate, 2),
               t.net + billing.round_half_up(t.net * t.vat_rate, 2), t.prepay_enabled,
               CASE WHEN t.prepay_enabled THEN ob.balance END, CASE WHEN t.prepay_enabled THEN cb.balance END,
               coalesce(tu.n, 0), coalesce(tu.value, 0), t.replaces,
               pg_catalog.jsonb_build_object(
                   'customer', pg_catalog.jsonb_build_object('fullname', c.fullname, 'email', c.email),
                   'account_number', a.account_number,
                   'account_type', a.type,
                   'supply_address', concat_ws(', ', p.plot, p.address, si.name),
                   'esco', pg_catalog.jsonb_build_object('code', e.code, 'name', coalesce(eb.legal_name, e.name),
                                                         'address', eb.address, 'email', eb.email, 'phone', eb.phone,
                                                         'website', eb.website, 'vat_number', eb.vat_number),
                   'meter', pg_catalog.jsonb_build_object('serial', m.serial, 'hardware', m.hardware,
                                                          'prepay', m.prepay_enabled),
                   'readings', coalesce(rd.readings, '[]'),
                   'tariffs', tf.tariffs,
                   'usage_12_months', us.months,
                   'kwh_12_months', us.total,
                   'estimated_annual_kwh', us.annual,
                   'estimated_annual_cost',
                       billing.round_half_up(us.annual * tf.unit_rate + 365 * tf.standing_charge, 2),
                   'estimated_half_hours', coalesce(rd.estimated, 0))
        FROM totals AS t
        JOIN billing.accounts AS a ON a.id = t.account_id
        JOIN billing.customers AS c ON c.id = t.customer_id
        JOIN flows.properties AS p ON p.id = a.property
        JOIN flows.sites AS si ON si.id = p.site
        JOIN flows.escos AS e ON e.id = a.esco
        LEFT JOIN billing.esco_billing AS eb ON eb.esco = a.esco
        JOIN flows.meter_registry AS m ON m.id = t.meter_id
        LEFT JOIN readings AS rd ON rd.account_id = t.account_id AND rd.customer_id = t.customer_id
        LEFT JOIN tariffs AS tf ON tf.account_id = t.account_id AND tf.customer_id = t.customer_id
        LEFT JOIN usage AS us ON us.account_id = t.account_id AND us.customer_id = t.customer_id
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
COMMENT ON FUNCTION billing.compute_statements(uuid, uuid[]) IS
    'Computes (again) the draft statements of a billing run, set-based; refuses when a tariff is missing.';


-- ---- rls/claims.sql (customers: the "customer" claim) ----
-- The customer a customer token is for: the "customer" claim (a customer
-- id, billing.customers). Null without one; an error when it is not an id.
CREATE FUNCTION flows.current_customer_id() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    claimed text := flows.jwt_claims() ->> 'customer';
BEGIN
    IF claimed IS NULL THEN
        RETURN NULL;
    END IF;
    IF claimed !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
        RAISE EXCEPTION 'the customer claim must be a customer id (uuid), got %', pg_catalog.quote_literal(claimed)
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'mint a token with flows token --role customer --customer ID';
    END IF;
    RETURN claimed::uuid;
END
$$;
COMMENT ON FUNCTION flows.current_customer_id() IS 'Customer id named by the "customer" claim, or null without one.';

-- Properties a customer sees: those of the accounts they are linked to now
-- (owner or occupier; a tenant who moved out no longer sees the home).
CREATE OR REPLACE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(array_agg(DISTINCT a.property), '{}')
    FROM billing.customer_accounts AS ca
    JOIN billing.accounts AS a ON a.id = ca.account_id
    WHERE ca.customer_id = flows.current_customer_id()
      AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now())
$$;
COMMENT ON FUNCTION flows.customer_property_ids() IS
    'Properties of the accounts the customer of a customer token is linked to now.';


-- ---- rpc/billing/customers.sql ----
-- Customers and their accounts over HTTP: the production endpoint names
-- (customers, accounts, customer_accounts, contracts) and the operator
-- workflows: onboard a customer to a property, move out, move in.

CREATE VIEW api.customers WITH (security_invoker = true) AS
SELECT id, esco, fullname, email, phone, status, details_confirmed_at, payment_method, invite_expires_at,
       invite_expires_at < now() AS invite_expired, created_at, updated_at
FROM billing.customers;
ALTER VIEW api.customers ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.customers IS
    'Customers (people who pay). status: pending (invited) -> onboarding -> live -> exiting -> archived; live needs '
    'confirmed details, a payment method and a signed contract. Onboard with rpc/onboard_customer.';
COMMENT ON COLUMN api.customers.invite_expired IS 'The invitation (7 days) ran out before it was accepted.';

CREATE VIEW api.accounts WITH (security_invoker = true) AS
SELECT id, esco, account_number, type, status, property, meter_id, opened_at, closed_at, created_at
FROM billing.accounts;
COMMENT ON VIEW api.accounts IS
    'What is billed: supply, solar or ev account of a property and the meter it is billed for. account_number '
    'is printed on statements and is the bank-transfer reference.';

CREATE VIEW api.customer_accounts WITH (security_invoker = true) AS
SELECT id, esco, customer_id, account_id, role, start_time, end_time, move_in_reads, move_out_reads, created_at
FROM billing.customer_accounts;
COMMENT ON VIEW api.customer_accounts IS
    'Who stands behind an account when: owner or occupier from start_time (move in) to end_time (move out). '
    'Occupiers pay while they occupy; the owner pays while nobody does.';

CREATE VIEW api.contracts WITH (security_invoker = true) AS
SELECT id, esco, customer_id, account_id, type, terms_version, signed_at, effective_date, end_date, created_at
FROM billing.contracts;
ALTER VIEW api.contracts ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.contracts IS 'Contracts of customers: terms version, type, signed, effective and end date.';

CREATE VIEW api.esco_billing WITH (security_invoker = true) AS
SELECT esco, legal_name, address, email, phone, website, vat_number, last_account_number, last_invoice_number
FROM billing.esco_billing;
COMMENT ON VIEW api.esco_billing IS
    'What statements print about the ESCO (legal name, address, contact, VAT number) and its counters.';


-- Cumulative reads of a meter's registers at a time, as recorded: the last
-- read at or before it, estimated when over an hour older than the moment.
CREATE FUNCTION billing.reads_at(p_meter uuid, p_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
               'read', x.read, 'timestamp', x."timestamp", 'estimated', x."timestamp" < p_at - interval '1 hour')), '{}')
    FROM flows.meter_registers AS r
    JOIN LATERAL (SELECT i.read, i."timestamp" FROM flows.register_import AS i
                  WHERE i.register_id = r.register_id AND i."timestamp" <= p_at
                  ORDER BY i."timestamp" DESC LIMIT 1) AS x ON true
    WHERE r.meter_id = p_meter AND tstzrange(r.start_time, r.end_time) @> p_at
$$;

-- A move time: a whole half hour, not more than a year away.
CREATE FUNCTION billing.check_move_time(p_what text, p_at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_at IS NULL OR date_bin('30 minutes', p_at, 'epoch') <> p_at THEN
        RAISE EXCEPTION '% must be a whole half hour (:00 or :30), got %', p_what, p_at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'statements split at half hours';
    END IF;
    RETURN p_at;
END
$$;

-- Links a customer to an account from p_at, refusing overlaps with a message
-- that names who is there.
CREATE FUNCTION billing.link_customer(p_account uuid, p_customer uuid, p_role text, p_at timestamptz)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    clash text;
    added uuid;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_account FOR UPDATE;
    IF account.id IS NULL THEN
        RAISE EXCEPTION 'no account %', p_account USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_role NOT IN ('owner', 'occupier') THEN
        RAISE EXCEPTION 'role must be owner or occupier, got %', p_role USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.format('%s from %s%s', c.fullname, ca.start_time,
                             coalesce(' until ' || ca.end_time, ' (not moved out)'))
    INTO clash
    FROM billing.customer_accounts AS ca
    JOIN billing.customers AS c ON c.id = ca.customer_id
    WHERE ca.account_id = p_account AND ca.role = p_role AND tstzrange(ca.start_time, ca.end_time) @> p_at
       OR (ca.account_id = p_account AND ca.role = p_role AND ca.start_time > p_at)
    ORDER BY ca.start_time LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'account % already has an % at %: %', account.account_number, p_role, p_at, clash
            USING ERRCODE = 'exclusion_violation',
                  HINT = CASE p_role WHEN 'occupier' THEN 'move them out first (rpc/move_out)'
                                     ELSE 'end the other owner''s link first' END;
    END IF;
    INSERT INTO billing.customer_accounts (esco, customer_id, account_id, role, start_time, move_in_reads)
    VALUES (account.esco, p_customer, p_account, p_role, p_at,
            CASE WHEN p_role = 'occupier' THEN billing.reads_at(account.meter_id, p_at) END)
    RETURNING id INTO added;
    RETURN added;
END
$$;


CREATE FUNCTION api.onboard_customer(
    property    uuid,
    fullname    text,
    email       text DEFAULT NULL,
    phone       text DEFAULT NULL,
    role        text DEFAULT 'owner_occupier',
    move_in     timestamptz DEFAULT NULL,
    customer_id uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    home flows.properties;
    supply_meter uuid;
    customer billing.customers;
    account billing.accounts;
    at timestamptz := billing.check_move_time('move_in',
                          coalesce(move_in, date_bin('30 minutes', pg_catalog.now(), 'epoch')));
    links uuid[] := ARRAY[]::uuid[];
BEGIN
    IF role NOT IN ('owner_occupier', 'occupier', 'owner') THEN
        RAISE EXCEPTION 'role must be owner_occupier, occupier (a tenant) or owner (a landlord), got %', role
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO home FROM flows.properties AS p WHERE p.id = onboard_customer.property;
    IF home.id IS NULL THEN
        RAISE EXCEPTION 'no property %', onboard_customer.property USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The supply meter: the prepay (else any) meter behind the property's service heads.
    SELECT m.id INTO supply_meter
    FROM flows.properties_service_head AS psh
    JOIN flows.service_head_meter AS shm ON shm.service_head = psh.service_head
    JOIN flows.meter_registry AS m ON m.id = shm.meter
    WHERE psh.property = home.id
    ORDER BY m.prepay_enabled DESC, NOT flows.is_three_phase(m) DESC, m.serial
    LIMIT 1;
    IF supply_meter IS NULL THEN
        RAISE EXCEPTION 'property % has no meter behind its service heads', home.plot
            USING ERRCODE = 'invalid_parameter_value', HINT = 'connect its supply meter first (service_head_meter)';
    END IF;

    IF customer_id IS NULL THEN
        INSERT INTO billing.customers (esco, fullname, email, phone, invite_token, invite_expires_at)
        VALUES (home.esco, onboard_customer.fullname, onboard_customer.email, onboard_customer.phone,
                replace(gen_random_uuid()::text, '-', ''), pg_catalog.now() + interval '7 days')
        RETURNING * INTO customer;
    ELSE
        SELECT * INTO customer FROM billing.customers AS c WHERE c.id = onboard_customer.customer_id;
        IF customer.id IS NULL OR customer.esco <> home.esco THEN
            RAISE EXCEPTION 'no customer % in the property''s ESCO', onboard_customer.customer_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    SELECT * INTO account FROM billing.accounts AS a
    WHERE a.property = home.id AND a.type = 'supply' AND a.status <> 'closed';
    IF account.id IS NULL THEN
        INSERT INTO billing.accounts (esco, account_number, type, status, property, meter_id, opened_at)
        VALUES (home.esco, billing.take_numbers(home.esco, 'account', 1)::text, 'supply', 'open', home.id,
                supply_meter, at)
        RETURNING * INTO account;
    END IF;
    IF role IN ('owner_occupier', 'owner') THEN
        links := links || billing.link_customer(account.id, customer.id, 'owner', at);
    END IF;
    IF role IN ('owner_occupier', 'occupier') THEN
        links := links || billing.link_customer(account.id, customer.id, 'occupier', at);
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'customer', (SELECT pg_catalog.to_jsonb(c) FROM api.customers AS c WHERE c.id = customer.id),
        'invite_token', customer.invite_token,
        'accounts', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(a)) FROM api.accounts AS a WHERE a.id = account.id),
        'customer_accounts', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(l) ORDER BY l.role)
                              FROM api.customer_accounts AS l WHERE l.id = ANY (links)));
END
$$;
COMMENT ON FUNCTION api.onboard_customer(uuid, text, text, text, text, timestamptz, uuid) IS
    'Onboards a customer to a property: creates the customer (invited for 7 days; or give customer_id of an '
    'existing one, e.g. a landlord), the property''s supply account on its meter if it has none, and the links '
    'from move_in (a half hour; default now): owner_occupier, occupier (tenant) or owner (landlord).';


CREATE FUNCTION api.move_out(account_id uuid, move_out timestamptz, final_reads jsonb DEFAULT NULL)
RETURNS SETOF api.customer_accounts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    link billing.customer_accounts;
    account billing.accounts;
    at timestamptz := billing.check_move_time('move_out', move_out);
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = move_out.account_id FOR UPDATE;
    SELECT * INTO link FROM billing.customer_accounts AS ca
    WHERE ca.account_id = move_out.account_id AND ca.role = 'occupier'
      AND ca.start_time < at AND (ca.end_time IS NULL OR ca.end_time >= at)
    ORDER BY ca.start_time DESC LIMIT 1;
    IF link.id IS NULL THEN
        RAISE EXCEPTION 'account % has no occupier at %', coalesce(account.account_number, move_out.account_id::text), at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the move-out must fall after the move-in';
    END IF;
    IF final_reads IS NOT NULL AND pg_catalog.jsonb_typeof(final_reads) <> 'object' THEN
        RAISE EXCEPTION 'final_reads must be an object of reads per element, e.g. {"A": 1234.5}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE billing.customer_accounts AS ca
    SET end_time = at,
        move_out_reads = coalesce((SELECT pg_catalog.jsonb_object_agg(r.key, pg_catalog.jsonb_build_object(
                                       'read', r.value, 'timestamp', at, 'estimated', false))
                                   FROM pg_catalog.jsonb_each(final_reads) AS r),
                                  billing.reads_at(account.meter_id, at))
    WHERE ca.id = link.id;
    -- An owner-occupier moving out has sold the home: their ownership ends too.
    UPDATE billing.customer_accounts AS ca SET end_time = at
    WHERE ca.account_id = move_out.account_id AND ca.role = 'owner' AND ca.customer_id = link.customer_id
      AND ca.start_time < at AND (ca.end_time IS NULL OR ca.end_time > at);
    RETURN QUERY SELECT * FROM api.customer_accounts AS l
                 WHERE l.account_id = move_out.account_id AND l.end_time = at;
END
$$;
COMMENT ON FUNCTION api.move_out(uuid, timestamptz, jsonb) IS
    'Ends the occupancy of an account at move_out (a half hour) and records the final reads (given per element, '
    'or the last recorded ones). An owner-occupier''s ownership ends too; a landlord pays while nobody occupies.';


CREATE FUNCTION api.move_in(account_id uuid, customer_id uuid, move_in timestamptz, role text DEFAULT 'occupier')
RETURNS SETOF api.customer_accounts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    added uuid := billing.link_customer(move_in.account_id, move_in.customer_id, move_in.role,
                                        billing.check_move_time('move_in', move_in.move_in));
BEGIN
    RETURN QUERY SELECT * FROM api.customer_accounts AS l WHERE l.id = added;
END
$$;
COMMENT ON FUNCTION api.move_in(uuid, uuid, timestamptz, text) IS
    'Links a customer to an account from move_in (a half hour) as occupier (default) or owner; refused (23P01) '
    'while someone else holds that role then.';


-- ---- rpc/billing/tariffs.sql ----
-- Customer tariffs over HTTP: the price cap, each ESCO's quarter, each
-- customer's rates; generating next quarter's rates from a new cap, rolling
-- them out to the meters, and the meters whose tariff is not what it should be.

CREATE VIEW api.benchmark_tariffs WITH (security_invoker = true) AS
SELECT region, period_start, unit_rate, standing_charge, created_at
FROM billing.benchmark_tariffs;
COMMENT ON VIEW api.benchmark_tariffs IS
    'The price cap per Ofgem region and quarter (period_start): unit_rate GBP/kWh, standing_charge GBP/day, incl. VAT.';

CREATE VIEW api.microgrid_tariffs WITH (security_invoker = true) AS
SELECT m.id, m.esco, m.period_start, m.region, m.discount,
       (SELECT billing.discounted_rate(b.unit_rate, m.discount) FROM billing.benchmark_tariffs AS b
        WHERE b.region = m.region AND b.period_start = m.period_start) AS unit_rate,
       (SELECT billing.discounted_rate(b.standing_charge, m.discount) FROM billing.benchmark_tariffs AS b
        WHERE b.region = m.region AND b.period_start = m.period_start) AS standing_charge,
       m.emergency_credit, m.ecredit_availability, m.debt_recovery_rate, m.created_at
FROM billing.microgrid_tariffs AS m;
ALTER VIEW api.microgrid_tariffs ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.microgrid_tariffs IS
    'An ESCO''s quarter: its region''s cap, the default discount (percent), the microgrid rates it gives, and '
    'the meters'' prepayment settings (GBP).';

CREATE VIEW api.customer_tariffs WITH (security_invoker = true) AS
SELECT id, esco, customer_id, microgrid_tariff_id, period_start, effective_from, effective_to, discount, unit_rate,
       standing_charge, created_at
FROM billing.customer_tariffs;
COMMENT ON VIEW api.customer_tariffs IS
    'A customer''s rates (GBP incl. VAT) from effective_from to effective_to: the cap x (1 - discount/100), '
    'half-up to 5 decimals. Made by rpc/generate_customer_tariffs, changed by rpc/set_customer_discount.';


CREATE FUNCTION billing.esco_by_code(p_code text) RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    found uuid;
BEGIN
    SELECT e.id INTO found FROM flows.escos AS e WHERE e.code = p_code;
    IF found IS NULL THEN
        RAISE EXCEPTION 'no ESCO %', pg_catalog.quote_literal(p_code)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'esco_code is the ESCO''s code, e.g. DEMO';
    END IF;
    RETURN found;
END
$$;

CREATE FUNCTION billing.check_quarter_start(p_period_start date) RETURNS date
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_period_start IS NULL OR p_period_start <> billing.quarter_start(p_period_start) THEN
        RAISE EXCEPTION 'period_start must be the first day of a quarter (1 January, April, July or October), got %',
            p_period_start USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_period_start;
END
$$;


CREATE FUNCTION api.generate_customer_tariffs(esco_code text, period_start date, discount numeric DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(esco_code);
    quarter date := billing.check_quarter_start(period_start);
    previous billing.microgrid_tariffs;
    microgrid billing.microgrid_tariffs;
    made integer;
BEGIN
    IF discount IS NOT NULL AND (discount < 0 OR discount > 100) THEN
        RAISE EXCEPTION 'discount must be a percentage between 0 and 100, got %', discount
            USING ERRCODE = 'invalid_parameter_value', HINT = '25 means 25% off the price cap';
    END IF;
    SELECT * INTO microgrid FROM billing.microgrid_tariffs AS m WHERE m.esco = esco_id AND m.period_start = quarter;
    IF microgrid.id IS NULL THEN
        SELECT * INTO previous FROM billing.microgrid_tariffs AS m
        WHERE m.esco = esco_id AND m.period_start < quarter ORDER BY m.period_start DESC LIMIT 1;
        IF previous.id IS NULL THEN
            RAISE EXCEPTION 'ESCO % has no microgrid tariff to carry over into %', esco_code, quarter
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'create its first quarter in microgrid_tariffs (region, discount, prepayment settings)';
        END IF;
        IF NOT EXISTS (SELECT FROM billing.benchmark_tariffs AS b
                       WHERE b.region = previous.region AND b.period_start = quarter) THEN
            RAISE EXCEPTION 'no price cap for region % from %', previous.region, quarter
                USING ERRCODE = 'invalid_parameter_value', HINT = 'add it to benchmark_tariffs first';
        END IF;
        INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount, emergency_credit,
                                               ecredit_availability, debt_recovery_rate)
        VALUES (esco_id, quarter, previous.region, coalesce(discount, previous.discount), previous.emergency_credit,
                previous.ecredit_availability, previous.debt_recovery_rate)
        RETURNING * INTO microgrid;
    END IF;
    -- Every live (or onboarding) customer paying for an open supply account
    -- gets the quarter's rates; a customer's discount carries over from their
    -- last tariff, else the ESCO's.
    WITH payers AS (
        SELECT DISTINCT c.id AS customer_id
        FROM billing.customers AS c
        JOIN billing.customer_accounts AS ca ON ca.customer_id = c.id
        JOIN billing.accounts AS a ON a.id = ca.account_id
        WHERE c.esco = esco_id AND c.status IN ('onboarding', 'live', 'exiting') AND a.status = 'open'
          AND a.type IN ('supply', 'ev')
          AND tstzrange(ca.start_time, ca.end_time)
              && tstzrange(flows.uk_day_start(quarter), flows.uk_day_start((quarter + interval '3 months')::date))
    ),
    added AS (
        INSERT INTO billing.customer_tariffs (esco, customer_id, microgrid_tariff_id, period_start, effective_from,
                                              effective_to, discount, unit_rate, standing_charge)
        SELECT esco_id, p.customer_id, microgrid.id, quarter, flows.uk_day_start(quarter),
               flows.uk_day_start((quarter + interval '3 months')::date),
               coalesce((SELECT t.discount FROM billing.customer_tariffs AS t
                         WHERE t.customer_id = p.customer_id AND t.effective_from < flows.uk_day_start(quarter)
                         ORDER BY t.effective_from DESC LIMIT 1), microgrid.discount),
               0, 0  -- derived from the cap by billing.derive_customer_rates
        FROM payers AS p
        WHERE NOT EXISTS (SELECT FROM billing.customer_tariffs AS t
                          WHERE t.customer_id = p.customer_id AND t.period_start = quarter)
        RETURNING 1
    )
    SELECT count(*) INTO made FROM added;
    RETURN pg_catalog.jsonb_build_object(
        'microgrid_tariff', (SELECT pg_catalog.to_jsonb(m) FROM api.microgrid_tariffs AS m WHERE m.id = microgrid.id),
        'customer_tariffs_added', made,
        'customer_tariffs', (SELECT count(*) FROM billing.customer_tariffs AS t
                             WHERE t.esco = esco_id AND t.period_start = quarter));
END
$$;
COMMENT ON FUNCTION api.generate_customer_tariffs(text, date, numeric) IS
    'Next quarter''s customer tariffs from its price cap (benchmark_tariffs): creates the ESCO''s quarter '
    '(carrying the region, discount and prepayment settings over; discount overrides), and gives every live '
    'customer of an open account rates = cap x (1 - their discount carried over). Running it again adds only '
    'what is missing.';


CREATE FUNCTION api.set_customer_discount(customer_id uuid, discount numeric, effective_from timestamptz)
RETURNS SETOF api.customer_tariffs
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    current billing.customer_tariffs;
    added uuid;
    at timestamptz := billing.check_move_time('effective_from', effective_from);
BEGIN
    IF discount IS NULL OR discount < 0 OR discount > 100 THEN
        RAISE EXCEPTION 'discount must be a percentage between 0 and 100, got %', discount
            USING ERRCODE = 'invalid_parameter_value', HINT = '25 means 25% off the price cap';
    END IF;
    SELECT * INTO current FROM billing.customer_tariffs AS t
    WHERE t.customer_id = set_customer_discount.customer_id AND t.effective_from <= at AND t.effective_to > at
    FOR UPDATE;
    IF current.id IS NULL THEN
        RAISE EXCEPTION 'customer % has no tariff in force at %', set_customer_discount.customer_id, at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'generate the quarter''s tariffs first';
    END IF;
    IF EXISTS (SELECT FROM billing.invoices AS i
               WHERE i.customer_id = current.customer_id AND i.status <> 'draft' AND i.period_to > at) THEN
        RAISE EXCEPTION 'customer % has a final statement after %', current.customer_id, at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'a discount cannot change what was billed; credit it first';
    END IF;
    IF current.effective_from = at THEN
        UPDATE billing.customer_tariffs AS t SET discount = set_customer_discount.discount WHERE t.id = current.id;
        RETURN QUERY SELECT * FROM api.customer_tariffs AS t WHERE t.id = current.id;
        RETURN;
    END IF;
    UPDATE billing.customer_tariffs AS t SET effective_to = at WHERE t.id = current.id;
    INSERT INTO billing.customer_tariffs (esco, customer_id, microgrid_tariff_id, period_start, effective_from,
                                          effective_to, discount, unit_rate, standing_charge)
    VALUES (current.esco, current.customer_id, current.microgrid_tariff_id, current.period_start, at,
            current.effective_to, set_customer_discount.discount, 0, 0)
    RETURNING id INTO added;
    RETURN QUERY SELECT * FROM api.customer_tariffs AS t WHERE t.id = added;
END
$$;
COMMENT ON FUNCTION api.set_customer_discount(uuid, numeric, timestamptz) IS
    'Changes a customer''s discount (percent) from effective_from (a half hour) to the end of that tariff: '
    'the tariff in force is split there, so statements split at that half hour.';


-- Meter tariff JSON (DOMAIN.md keys) for a customer tariff.
CREATE FUNCTION billing.meter_tariff(t billing.customer_tariffs, m billing.microgrid_tariffs, activation timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'standing_charge', t.standing_charge::text, 'unit_rate_element_a', t.unit_rate::text,
        'unit_rate_element_b', t.unit_rate::text,
        'prepayment_emergency_credit', m.emergency_credit::text,
        'prepayment_ecredit_availability', m.ecredit_availability::text,
        'prepayment_debt_recovery_rate', m.debt_recovery_rate::text,
        'activation_datetime', pg_catalog.to_char(activation AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
$$;


CREATE FUNCTION api.roll_out_customer_tariffs(esco_code text, period_start date) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(esco_code);
    quarter date := billing.check_quarter_start(period_start);
    batch uuid := gen_random_uuid();
    -- a quarter already begun: its tariff activates in a minute
    activation timestamptz := greatest(flows.uk_day_start(quarter), pg_catalog.now() + interval '1 minute');
    sent integer;
BEGIN
    IF flows.uk_day_start((quarter + interval '3 months')::date) <= pg_catalog.now() THEN
        RAISE EXCEPTION 'quarter % is over', quarter USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH wanted AS (  -- the tariff each supply account's payer has at activation
        SELECT DISTINCT ON (a.meter_id) a.meter_id, billing.meter_tariff(t, m, activation) AS tariff
        FROM billing.accounts AS a
        JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> activation
        JOIN billing.customer_tariffs AS t
          ON t.customer_id = p.customer_id AND t.period_start = quarter
         AND tstzrange(t.effective_from, t.effective_to) @> activation
        JOIN billing.microgrid_tariffs AS m ON m.id = t.microgrid_tariff_id
        JOIN flows.meters_to_command(NULL, p_prepay => true) AS c ON c.meter_id = a.meter_id
        WHERE a.esco = esco_id AND a.status = 'open' AND a.type = 'supply'
        ORDER BY a.meter_id
    ),
    added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, batch_id, requested_by)
        SELECT esco_id, w.meter_id, 'set_future_tariff', pg_catalog.jsonb_build_object('tariff', w.tariff), batch,
               flows.requester()
        FROM wanted AS w
        WHERE flows.tariff_is_valid(w.tariff, true)
        RETURNING 1
    )
    SELECT count(*) INTO sent FROM added;
    RETURN pg_catalog.jsonb_build_object('rollout_id', CASE WHEN sent > 0 THEN batch END, 'meters', sent,
                                         'activation_datetime', activation);
END
$$;
COMMENT ON FUNCTION api.roll_out_customer_tariffs(text, date) IS
    'Writes each supply meter''s customer tariff for the quarter to the meter as its future tariff (activating '
    'at the quarter''s start, or in a minute if it has begun), as one rollout: follow it in tariff_rollouts.';


CREATE VIEW api.meters_with_incorrect_tariffs WITH (security_invoker = true) AS
WITH expected AS (
    SELECT a.esco, a.id AS account_id, a.account_number, a.meter_id, p.customer_id, t.id AS customer_tariff_id,
           t.unit_rate, t.standing_charge, 'active' AS tariff
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> now()
    JOIN billing.customer_tariffs AS t ON t.customer_id = p.customer_id
     AND tstzrange(t.effective_from, t.effective_to) @> now()
    WHERE a.status = 'open' AND a.type = 'supply'
    UNION ALL  -- the next tariff, due within the quarter to come, should be on the meter as its future tariff
    SELECT a.esco, a.id, a.account_number, a.meter_id, p.customer_id, n.id, n.unit_rate, n.standing_charge, 'future'
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> now()
    CROSS JOIN LATERAL (SELECT t.* FROM billing.customer_tariffs AS t
                        WHERE t.customer_id = p.customer_id AND t.effective_from > now()
                          AND t.effective_from < now() + interval '3 months'
                        ORDER BY t.effective_from LIMIT 1) AS n
    WHERE a.status = 'open' AND a.type = 'supply'
)
SELECT e.esco, e.meter_id, m.serial, e.account_id, e.account_number, e.customer_id, e.tariff,
       e.customer_tariff_id, e.unit_rate AS expected_unit_rate, e.standing_charge AS expected_standing_charge,
       (x.tariff ->> 'unit_rate_element_a')::numeric AS meter_unit_rate_a,
       (x.tariff ->> 'unit_rate_element_b')::numeric AS meter_unit_rate_b,
       (x.tariff ->> 'standing_charge')::numeric AS meter_standing_charge,
       s.tariffs_updated_at
FROM expected AS e
JOIN flows.meter_registry AS m ON m.id = e.meter_id
JOIN flows.meter_shadows AS s ON s.id = e.meter_id
CROSS JOIN LATERAL (SELECT CASE e.tariff WHEN 'active' THEN s.tariffs_active ELSE s.tariffs_future END AS tariff) AS x
WHERE m.prepay_enabled AND NOT flows.is_three_phase(m)
  AND ((x.tariff ->> 'unit_rate_element_a')::numeric IS DISTINCT FROM e.unit_rate
       OR coalesce((x.tariff ->> 'unit_rate_element_b')::numeric, e.unit_rate) <> e.unit_rate
       OR (x.tariff ->> 'standing_charge')::numeric IS DISTINCT FROM e.standing_charge);
COMMENT ON VIEW api.meters_with_incorrect_tariffs IS
    'Prepay meters whose tariff (active, or future for the next customer tariff) differs from what their '
    'payer''s customer tariff says; tariff = which one. Roll the quarter out again to fix them.';


-- ---- rpc/billing/statements.sql ----
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
       i.details, i.created_at
FROM billing.invoices AS i
JOIN flows.escos AS e ON e.id = i.esco;
COMMENT ON VIEW api.invoices IS
    'Statements and credit notes: account, payer, month (period_start; billed from period_from to period_to), '
    'number (gap-free per ESCO, given at finalisation; reference = ESCO-number), status draft/final/void, net, '
    'vat, total (GBP), prepayment balances and top-ups, details as printed. PDF: rpc/statement_pdf.';
COMMENT ON COLUMN api.invoices.corrects IS
    'A credit note: the statement it cancels; a statement: the voided one it replaces.';

CREATE VIEW api.invoice_lines WITH (security_invoker = true) AS
SELECT l.id, l.esco, l.invoice_id, l.position, l.kind, l.description, l.register_id, l.element, l.nature,
       l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit, l.rate, l.amount_exact, l.amount,
       l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate,
       billing.round_half_up(l.quantity * (l.meter_rate - l.rate), 2) AS meter_difference
FROM billing.invoice_lines AS l;
COMMENT ON VIEW api.invoice_lines IS
    'Statement lines: quantity (kWh, or days) x rate (GBP incl. VAT) over period_from..period_to; amount_exact '
    '= that net of VAT, unrounded; amount = its share of the statement''s rounded net. half_hours present of '
    'expected, estimated ones counted. meter_rate: what the meter charged; meter_difference = quantity x '
    '(meter_rate - rate), GBP incl. VAT.';

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
    -- numbers in account order, taken from the ESCO's counter in this transaction: gap-free
    WITH numbered AS (
        SELECT i.id, row_number() OVER (ORDER BY i.kind DESC, a.account_number, i.period_from, i.id) AS n
        FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
        WHERE i.id = ANY (p_ids) AND i.status = 'draft'
    ),
    first AS (SELECT billing.take_numbers(p_esco, 'invoice', (SELECT count(*)::integer FROM numbered)) AS number)
    UPDATE billing.invoices AS i
    SET status = 'final', number = f.number + n.n - 1, issued_at = pg_catalog.now()
    FROM numbered AS n, first AS f
    WHERE i.id = n.id
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
    'Issues a run''s draft statements: numbers them (gap-free per ESCO, in account order) and freezes them. '
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
    INSERT INTO billing.invoices (esco, account_id, customer_id, kind, period_start, period_end, period_from,
                                  period_to, kwh, days, net, vat_rate, vat, total, prepay, corrects, reason, details)
    VALUES (original.esco, original.account_id, original.customer_id, 'credit_note', original.period_start,
            original.period_end, original.period_from, original.period_to, -original.kwh, -original.days,
            -original.net, original.vat_rate, -original.vat, -original.total, original.prepay, original.id,
            credit_invoice.reason, original.details)
    RETURNING id INTO note;
    INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description, register_id, element, nature,
                                       customer_tariff_id, period_from, period_to, quantity, unit, rate, amount_exact,
                                       amount, half_hours, expected_half_hours, estimated_half_hours, meter_rate)
    SELECT l.esco, note, l.position, l.kind, l.description, l.register_id, l.element, l.nature, l.customer_tariff_id,
           l.period_from, l.period_to, -l.quantity, l.unit, l.rate, -l.amount_exact, -l.amount, l.half_hours,
           l.expected_half_hours, l.estimated_half_hours, l.meter_rate
    FROM billing.invoice_lines AS l WHERE l.invoice_id = original.id;
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


-- ---- rls/privileges.sql ----
-- == Billing: customers, accounts, tariffs, statements ======================
-- Operators run their ESCO's billing through the api RPCs (invoker rights,
-- so they need the table privileges the RPCs use); nobody writes statements,
-- runs or documents through the views. Customers read their own.

GRANT USAGE ON SCHEMA billing
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT EXECUTE ON FUNCTION
    flows.current_customer_id(),
    billing.round_half_up(numeric, integer),
    billing.included_vat_rate(),
    billing.net_of_vat(numeric),
    billing.discounted_rate(numeric, numeric),
    billing.vat_rate(text, numeric, numeric),
    billing.uk_day_fraction(timestamptz),
    billing.uk_days(timestamptz, timestamptz),
    billing.quarter_start(date),
    billing.month_range(date)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Reading: operators and analysts their ESCO, admins and workers all (rows: policies.sql).
GRANT SELECT ON
    billing.esco_billing, api.esco_billing,
    billing.customers, api.customers,
    billing.accounts, api.accounts,
    billing.customer_accounts, api.customer_accounts,
    billing.contracts, api.contracts,
    billing.payer_periods,
    billing.benchmark_tariffs, api.benchmark_tariffs,
    billing.microgrid_tariffs, api.microgrid_tariffs,
    billing.customer_tariffs, api.customer_tariffs,
    api.meters_with_incorrect_tariffs,
    billing.billing_runs, api.billing_runs,
    billing.invoices, api.invoices,
    billing.invoice_lines, api.invoice_lines,
    billing.invoice_documents, api.invoice_documents,
    api.monthly_usage, api.monthly_costs
TO flows_admin, flows_operator, flows_analyst, flows_service;
-- Customers: their own customer row, accounts, links, contracts, tariffs,
-- statements, usage and costs; the price cap is public.
GRANT SELECT ON
    billing.customers, api.customers,
    billing.accounts, api.accounts,
    billing.customer_accounts, api.customer_accounts,
    billing.contracts, api.contracts,
    billing.benchmark_tariffs, api.benchmark_tariffs,
    billing.microgrid_tariffs,
    billing.customer_tariffs, api.customer_tariffs,
    billing.invoices, api.invoices,
    billing.invoice_lines, api.invoice_lines,
    billing.invoice_documents, api.invoice_documents,
    api.monthly_usage, api.monthly_costs
TO flows_customer;

-- Writing: operators (and admins) manage customers, contracts and their
-- ESCO's contact details directly; the rest goes through the RPCs.
GRANT INSERT, UPDATE ON billing.customers, billing.contracts TO flows_admin, flows_operator;
GRANT INSERT (esco, fullname, email, phone, status, details_confirmed_at, payment_method),
      UPDATE (fullname, email, phone, status, details_confirmed_at, payment_method)
    ON api.customers TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON api.contracts TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.esco_billing TO flows_admin, flows_operator;
GRANT UPDATE (legal_name, address, email, phone, website, vat_number) ON api.esco_billing
    TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.accounts, billing.customer_accounts, billing.microgrid_tariffs,
                        billing.customer_tariffs
    TO flows_admin, flows_operator;
GRANT INSERT (esco, period_start, region, discount, emergency_credit, ecredit_availability, debt_recovery_rate),
      UPDATE (discount, emergency_credit, ecredit_availability, debt_recovery_rate)
    ON api.microgrid_tariffs TO flows_admin, flows_operator;
GRANT INSERT, UPDATE, DELETE ON billing.billing_runs, billing.invoices, billing.invoice_lines
    TO flows_admin, flows_operator;
-- The price cap is the regulator's: admins enter it.
GRANT INSERT, UPDATE, DELETE ON billing.benchmark_tariffs, api.benchmark_tariffs TO flows_admin;
-- Rendered documents: stored once by the renderer (workers or the CLI), never changed.
GRANT INSERT ON billing.invoice_documents TO flows_admin, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.customer_esco_code(uuid),
    billing.store_invoice_document(uuid, bytea, text),
    billing.invoices_to_render(integer),
    api.statement_document(uuid)
TO flows_admin, flows_service;
GRANT EXECUTE ON FUNCTION api.statement_document(uuid) TO flows_operator;
GRANT EXECUTE ON FUNCTION api.statement_pdf(integer, text)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON DOMAIN api."application/pdf"
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- The operator workflows.
GRANT EXECUTE ON FUNCTION
    billing.take_numbers(uuid, text, integer),
    billing.reads_at(uuid, timestamptz),
    billing.check_move_time(text, timestamptz),
    billing.link_customer(uuid, uuid, text, timestamptz),
    billing.esco_by_code(text),
    billing.check_quarter_start(date),
    billing.meter_tariff(billing.customer_tariffs, billing.microgrid_tariffs, timestamptz),
    billing.energy_between(uuid, timestamptz, timestamptz),
    billing.billed_periods(uuid, date, uuid[]),
    billing.statement_lines(uuid, date, uuid[]),
    billing.periods_without_tariff(uuid, date, uuid[]),
    billing.compute_statements(uuid, uuid[]),
    billing.issue_invoices(uuid, uuid[]),
    api.onboard_customer(uuid, text, text, text, text, timestamptz, uuid),
    api.move_out(uuid, timestamptz, jsonb),
    api.move_in(uuid, uuid, timestamptz, text),
    api.generate_customer_tariffs(text, date, numeric),
    api.set_customer_discount(uuid, numeric, timestamptz),
    api.roll_out_customer_tariffs(text, date),
    api.create_billing_run(text, date),
    api.finalise_billing_run(uuid),
    api.credit_invoice(uuid, text)
TO flows_admin, flows_operator;
-- Analysts may compute what a statement would say, without writing.
GRANT EXECUTE ON FUNCTION
    billing.energy_between(uuid, timestamptz, timestamptz),
    billing.billed_periods(uuid, date, uuid[]),
    billing.statement_lines(uuid, date, uuid[]),
    billing.periods_without_tariff(uuid, date, uuid[])
TO flows_analyst, flows_service;


-- ---- rls/policies.sql ----
-- == Billing: customers, accounts, tariffs, statements ======================
-- Tenant = ESCO, as above; a customer (claim "customer") sees their own
-- customer row, the accounts they are or were linked to, their links,
-- contracts, tariffs and issued statements.

ALTER TABLE billing.esco_billing ENABLE ROW LEVEL SECURITY;
CREATE POLICY esco_billing_all ON billing.esco_billing TO flows_admin, flows_service
    USING (true);
CREATE POLICY esco_billing_own_esco ON billing.esco_billing TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY customers_all ON billing.customers TO flows_admin, flows_service
    USING (true);
CREATE POLICY customers_own_esco ON billing.customers TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customers_self ON billing.customers FOR SELECT TO flows_customer
    USING (id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.customer_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY customer_accounts_all ON billing.customer_accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY customer_accounts_own_esco ON billing.customer_accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customer_accounts_self ON billing.customer_accounts FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_all ON billing.accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY accounts_own_esco ON billing.accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY accounts_customer ON billing.accounts FOR SELECT TO flows_customer
    USING (id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca));

ALTER TABLE billing.contracts ENABLE ROW LEVEL SECURITY;
CREATE POLICY contracts_all ON billing.contracts TO flows_admin, flows_service
    USING (true);
CREATE POLICY contracts_own_esco ON billing.contracts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY contracts_self ON billing.contracts FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

-- The price cap: public reference data, entered by admins.
ALTER TABLE billing.benchmark_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY benchmark_tariffs_read ON billing.benchmark_tariffs FOR SELECT
    TO flows_operator, flows_analyst, flows_service, flows_customer
    USING (true);
CREATE POLICY benchmark_tariffs_admin ON billing.benchmark_tariffs TO flows_admin
    USING (true);

ALTER TABLE billing.microgrid_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY microgrid_tariffs_all ON billing.microgrid_tariffs TO flows_admin, flows_service
    USING (true);
CREATE POLICY microgrid_tariffs_own_esco ON billing.microgrid_tariffs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
-- (customers read the quarters behind their own tariffs, for monthly_costs)
CREATE POLICY microgrid_tariffs_customer ON billing.microgrid_tariffs FOR SELECT TO flows_customer
    USING (id IN (SELECT t.microgrid_tariff_id FROM billing.customer_tariffs AS t));

ALTER TABLE billing.customer_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY customer_tariffs_all ON billing.customer_tariffs TO flows_admin, flows_service
    USING (true);
CREATE POLICY customer_tariffs_own_esco ON billing.customer_tariffs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customer_tariffs_self ON billing.customer_tariffs FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.billing_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY billing_runs_all ON billing.billing_runs TO flows_admin, flows_service
    USING (true);
CREATE POLICY billing_runs_own_esco ON billing.billing_runs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoices_all ON billing.invoices TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoices_own_esco ON billing.invoices TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoices_self ON billing.invoices FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id())
           AND status <> 'draft');

ALTER TABLE billing.invoice_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoice_lines_all ON billing.invoice_lines TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoice_lines_own_esco ON billing.invoice_lines TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoice_lines_customer ON billing.invoice_lines FOR SELECT TO flows_customer
    USING (invoice_id IN (SELECT i.id FROM billing.invoices AS i));

ALTER TABLE billing.invoice_documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoice_documents_all ON billing.invoice_documents TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoice_documents_own_esco ON billing.invoice_documents FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoice_documents_customer ON billing.invoice_documents FOR SELECT TO flows_customer
    USING (invoice_id IN (SELECT i.id FROM billing.invoices AS i));

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
LEFT JOIN (SELECT x.esco, x.account_id, range_agg(tstzrange(x.start_time, x.end_time)) AS occupied
           FROM billing.customer_accounts AS x WHERE x.role = 'occupier' GROUP BY x.esco, x.account_id) AS oc
  ON oc.account_id = o.account_id AND oc.esco = o.esco  -- (esco: a filter on it reaches the occupancies too)
CROSS JOIN LATERAL unnest(tstzmultirange(tstzrange(o.start_time, o.end_time))
                          - coalesce(oc.occupied, '{}'::tstzmultirange)) AS r (period)
WHERE o.role = 'owner';
COMMENT ON VIEW billing.payer_periods IS 'Who pays each account when: occupiers, and the owner while nobody occupies.';

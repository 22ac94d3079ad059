-- Consent: what a customer agreed to, when, and who recorded it. Each give or
-- withdraw is a new row (the history is the proof of consent, never
-- rewritten); the latest row per customer and purpose is in force. No row:
-- not given.
--
-- Purposes: half_hourly_data, the customer's half-hourly consumption (and the
-- cumulative reads it is derived from) used and shown beyond what billing
-- needs. Without it the customer's own API access shows daily and monthly
-- figures only (policies.sql); statements are computed either way (billing is
-- the contract).
CREATE TABLE gdpr.consents (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL,
    customer_id uuid        NOT NULL,
    purpose     text        NOT NULL DEFAULT 'half_hourly_data',
    given       boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by text        NOT NULL,
    source      text        NOT NULL,
    CONSTRAINT consents_id_esco_key UNIQUE (id, esco),
    CONSTRAINT consents_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT consents_purpose_valid CHECK (purpose IN ('half_hourly_data')),
    CONSTRAINT consents_source_valid CHECK (source IN ('customer', 'operator'))
);
COMMENT ON TABLE gdpr.consents IS
    'Consents given and withdrawn, one row each (the latest per customer and purpose is in force). '
    'source: the customer themself, or an operator recording it for them.';
COMMENT ON COLUMN gdpr.consents.purpose IS
    'half_hourly_data: half-hourly consumption (and the reads behind it) used and shown to the customer.';
CREATE INDEX consents_customer_idx ON gdpr.consents (customer_id, purpose, recorded_at DESC);

-- Whether a customer's consent for a purpose is in force now.
CREATE FUNCTION gdpr.has_consent(p_customer uuid, p_purpose text) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT c.given FROM gdpr.consents AS c
                     WHERE c.customer_id = p_customer AND c.purpose = p_purpose
                     ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1), false)
$$;
COMMENT ON FUNCTION gdpr.has_consent(uuid, text) IS 'The latest consent of the customer for the purpose (false: none).';

-- The half hours a customer token may see: the times the customer occupied
-- an account (tenants, owner-occupiers), when their half-hourly consent is in
-- force; none otherwise. A landlord who does not live there sees none: the
-- half hours are the occupier's. Read once per statement by the customer
-- policies of the readings tables (policies.sql).
CREATE FUNCTION gdpr.half_hourly_periods() RETURNS tstzmultirange
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN gdpr.has_consent(flows.current_customer_id(), 'half_hourly_data')
                THEN coalesce((SELECT range_agg(tstzrange(ca.start_time, ca.end_time))
                               FROM billing.customer_accounts AS ca
                               WHERE ca.customer_id = flows.current_customer_id() AND ca.role = 'occupier'),
                              '{}')
                ELSE '{}'::tstzmultirange END
$$;
COMMENT ON FUNCTION gdpr.half_hourly_periods() IS
    'For a customer token: the times they occupied a home, if their half-hourly consent is in force; else none.';

-- Data-subject requests over HTTP: export everything held about a customer,
-- erase them, their consents and how long their data is kept. The work is
-- done in the gdpr schema (sql/schema/gdpr/), which checks who may ask.

CREATE FUNCTION api.customer_data_export(customer_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
RETURN gdpr.customer_data(customer_id);
COMMENT ON FUNCTION api.customer_data_export(uuid) IS
    'Everything held about a customer, as one JSON document: their rows of every table the personal-data '
    'registry names (customer, accounts and links, contracts, tariffs, statements and lines, documents'' '
    'metadata, the property, meter and readings of their supply while they paid for it, consents), the '
    'audit entries about them and how long each part is kept. Operators of the customer''s ESCO, admins, '
    'and the customer themself.';

CREATE FUNCTION api.erase_customer(customer_id uuid, reference text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql
RETURN gdpr.erase_customer(customer_id, reference);
COMMENT ON FUNCTION api.erase_customer(uuid, text) IS
    'Erases a customer: name, email and phone pseudonymised everywhere (statements'' printed details and the '
    'audit trail''s copies included; statement PDFs deleted, to be rendered again), financial records kept '
    'until their retention date. Refused (409) while money is owed, a statement is open or they are still '
    'supplied, saying why. reference: the request''s reference, kept with the erasure. Operators and admins.';

CREATE VIEW api.consents WITH (security_invoker = true) AS
SELECT id, esco, customer_id, purpose, given, recorded_at, recorded_by, source,
       row_number() OVER (PARTITION BY customer_id, purpose ORDER BY recorded_at DESC, id DESC) = 1 AS in_force
FROM gdpr.consents;
COMMENT ON VIEW api.consents IS
    'Consents given and withdrawn (one row each; in_force: the latest of its customer and purpose). '
    'half_hourly_data: without it a customer''s own access shows daily and monthly figures, not half hours. '
    'Record one with rpc/record_consent.';
COMMENT ON COLUMN api.consents.source IS 'customer: given or withdrawn by the customer; operator: recorded for them.';

CREATE FUNCTION api.record_consent(given boolean, purpose text DEFAULT 'half_hourly_data', customer_id uuid DEFAULT NULL)
RETURNS SETOF api.consents
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    own uuid := flows.current_customer_id();
    customer billing.customers;
BEGIN
    IF record_consent.given IS NULL THEN
        RAISE EXCEPTION 'given must be true (give consent) or false (withdraw it)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO customer FROM billing.customers AS c
    WHERE c.id = coalesce(record_consent.customer_id, own) AND (own IS NULL OR c.id = own);
    IF customer.id IS NULL THEN
        RAISE EXCEPTION 'no customer %', coalesce(record_consent.customer_id::text, 'given')
            USING ERRCODE = 'PT404', HINT = 'pass customer_id (a customer token records its own consent)';
    END IF;
    -- what is in force already changes nothing
    IF (SELECT c.given FROM gdpr.consents AS c
        WHERE c.customer_id = customer.id AND c.purpose = record_consent.purpose
        ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1) IS DISTINCT FROM record_consent.given THEN
        INSERT INTO gdpr.consents (esco, customer_id, purpose, given, recorded_by, source)
        VALUES (customer.esco, customer.id, record_consent.purpose, record_consent.given, flows.requester(),
                CASE WHEN own IS NULL THEN 'operator' ELSE 'customer' END);
    END IF;
    RETURN QUERY SELECT * FROM api.consents AS c
                 WHERE c.customer_id = customer.id AND c.purpose = record_consent.purpose AND c.in_force;
END
$$;
COMMENT ON FUNCTION api.record_consent(boolean, text, uuid) IS
    'Gives (given true) or withdraws (false) a consent: a customer token for itself, an operator for a customer '
    'of the ESCO (customer_id). purpose: half_hourly_data. Recording what is in force already changes nothing.';

CREATE VIEW api.data_retention WITH (security_invoker = true) AS
SELECT c.id AS customer_id, c.esco, r.relation, r.rows, r.retain_until, r.retention
FROM billing.customers AS c
CROSS JOIN LATERAL gdpr.retention(c.id) AS r;
COMMENT ON VIEW api.data_retention IS
    'What is held about each customer, table by table: how many rows, the latest date they are kept until '
    '(null: kept with what they describe, or until erasure) and the rule. Filter with ?customer_id=eq.ID.';

CREATE VIEW api.erasures WITH (security_invoker = true) AS
SELECT id, esco, customer_id, pseudonym, reference, requested_by, erased_at, summary
FROM gdpr.erasures;
COMMENT ON VIEW api.erasures IS
    'Customers erased: when, by whom, for which request, their pseudonym and what changed (rpc/erase_customer).';

-- Who is asking: the one place claims are read.
--
-- PostgREST logs in as flows_authenticator and puts the verified claims of the
-- request's JWT in the `request.jwt.claims` setting. Any other login (Grafana's
-- grafanareader, an analyst's psql) could set that setting itself, so for them
-- the claims come from flows.sql_login_claims, which only administrators write.

CREATE TABLE flows.sql_login_claims (
    login  name  PRIMARY KEY,
    claims jsonb NOT NULL,
    CONSTRAINT sql_login_claims_object CHECK (jsonb_typeof(claims) = 'object'),
    CONSTRAINT sql_login_claims_not_authenticator CHECK (login <> 'flows_authenticator')
);
COMMENT ON TABLE flows.sql_login_claims IS
    'Claims of SQL logins that are not PostgREST, e.g. grafanareader -> {"esco": "WLCE"}.';

-- SECURITY DEFINER so that sql_login_claims needs no grants at all.
CREATE FUNCTION flows.jwt_claims() RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT CASE
        WHEN session_user = 'flows_authenticator'
            THEN coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb
        ELSE coalesce((SELECT c.claims FROM flows.sql_login_claims AS c WHERE c.login = session_user), '{}')
    END
$$;
COMMENT ON FUNCTION flows.jwt_claims() IS
    'Claims of the caller: the JWT''s for PostgREST requests, flows.sql_login_claims for other logins, else {}.';

-- The caller's ESCO from the "esco" claim (an ESCO code, e.g. WLCE). Null
-- when there is no such claim; an error when it names no ESCO the caller can
-- see (a token for an ESCO that does not exist must not look like an empty one).
CREATE FUNCTION flows.current_esco_id() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    claimed text := flows.jwt_claims() ->> 'esco';
    esco_id uuid;
BEGIN
    IF claimed IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT e.id INTO esco_id FROM flows.escos AS e WHERE e.code = claimed;
    IF esco_id IS NULL THEN
        RAISE EXCEPTION 'unknown ESCO % in the esco claim', pg_catalog.quote_literal(claimed)
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'mint a token for an existing ESCO code (flows token --esco CODE)';
    END IF;
    RETURN esco_id;
END
$$;
COMMENT ON FUNCTION flows.current_esco_id() IS 'ESCO id named by the "esco" claim, or null without one.';

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
-- PL/pgSQL, not SQL, so its plan is kept per session: a SQL function that
-- cannot be inlined is planned again by every statement calling it, and every
-- read a customer makes calls it (properties_customer).
CREATE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT coalesce(array_agg(DISTINCT a.property), '{}')
            FROM billing.customer_accounts AS ca
            JOIN billing.accounts AS a ON a.id = ca.account_id
            WHERE ca.customer_id = flows.current_customer_id()
              AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()));
END
$$;
COMMENT ON FUNCTION flows.customer_property_ids() IS
    'Properties of the accounts the customer of a customer token is linked to now.';


-- Who is asking, as a name to record (meter_commands.requested_by, a
-- cancellation's reason): the token's subject, else its email, else the login.
CREATE FUNCTION flows.requester() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(flows.jwt_claims() ->> 'sub', flows.jwt_claims() ->> 'email', current_user)
$$;

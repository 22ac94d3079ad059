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

-- Property ids of a customer, from the "properties" claim (a JSON array).
CREATE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(array_agg(p.value::uuid), '{}')
    FROM pg_catalog.jsonb_array_elements_text(
        CASE WHEN pg_catalog.jsonb_typeof(flows.jwt_claims() -> 'properties') = 'array'
             THEN flows.jwt_claims() -> 'properties' ELSE '[]' END) AS p (value)
$$;
COMMENT ON FUNCTION flows.customer_property_ids() IS 'Property ids in the "properties" claim of a customer token.';

-- Who is asking, as a name to record (meter_commands.requested_by, a
-- cancellation's reason): the token's subject, else its email, else the login.
CREATE FUNCTION flows.requester() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(flows.jwt_claims() ->> 'sub', flows.jwt_claims() ->> 'email', current_user)
$$;

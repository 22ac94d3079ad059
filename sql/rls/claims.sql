-- Who is asking: the one place JWT claims are read.
-- PostgREST puts the verified claims of the request's token in the
-- `request.jwt.claims` setting; SQL logins (Grafana, psql) have none.

CREATE FUNCTION flows.jwt_claims() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
COMMENT ON FUNCTION flows.jwt_claims() IS 'Claims of the current request''s JWT, {} outside PostgREST.';

-- The ESCO of the caller, from the "esco" claim (an ESCO code, e.g. WLCE).
-- Runs with the caller's rights: an operator can see its own ESCO row, so the
-- lookup succeeds exactly when the claim names an ESCO the caller may see.
CREATE FUNCTION flows.current_esco_id() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT e.id FROM flows.escos AS e WHERE e.code = flows.jwt_claims() ->> 'esco'
$$;
COMMENT ON FUNCTION flows.current_esco_id() IS 'ESCO id named by the JWT claim "esco", or null.';

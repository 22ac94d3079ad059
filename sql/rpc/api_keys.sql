-- API keys of an ESCO: listed and revoked through the API, minted by
-- `flows api-key create` (the JWT needs the signing secret, which the database
-- never holds).

CREATE VIEW api.api_keys WITH (security_invoker = true) AS
SELECT id, esco, name, role, created_by, created_at, expires_at, revoked_at, revoked_by,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
            WHEN expires_at <= now() THEN 'expired'
            ELSE 'live' END AS status
FROM flows.api_keys;
COMMENT ON VIEW api.api_keys IS
    'Long-lived credentials of integrations, one ESCO each (the token itself is never stored). '
    'Revoke with rpc/revoke_api_key.';
COMMENT ON COLUMN api.api_keys.role IS 'flows_operator (reads and writes) or flows_analyst (reads).';

CREATE FUNCTION api.revoke_api_key(id uuid) RETURNS SETOF api.api_keys
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.api_keys AS k
    SET revoked_at = pg_catalog.now(), revoked_by = flows.requester()
    WHERE k.id = revoke_api_key.id AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE SQLSTATE 'PT404' USING  -- HTTP 404 through PostgREST
            MESSAGE = pg_catalog.format('no live API key %s', revoke_api_key.id),
            HINT = 'list keys with GET /api_keys; a revoked key stays revoked';
    END IF;
    RETURN QUERY SELECT * FROM api.api_keys AS k WHERE k.id = revoke_api_key.id;
END
$$;
COMMENT ON FUNCTION api.revoke_api_key(uuid) IS 'Revokes an API key: requests with it are refused from now on.';

-- Records a new key (the CLI then signs its token). Invoker's rights: the
-- caller must be allowed to write the ESCO's keys.
CREATE FUNCTION flows.create_api_key(p_esco_code text, p_name text, p_role text, p_expires_at timestamptz)
RETURNS flows.api_keys
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid;
    created flows.api_keys;
BEGIN
    SELECT e.id INTO esco_id FROM flows.escos AS e WHERE e.code = p_esco_code;
    IF esco_id IS NULL THEN
        RAISE EXCEPTION 'no ESCO with code %', p_esco_code USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_role NOT IN ('flows_operator', 'flows_analyst') THEN
        RAISE EXCEPTION 'an API key is for role operator or analyst, got %', p_role
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'keys are scoped to one ESCO; admin and service roles see every ESCO';
    END IF;
    IF p_expires_at IS NULL OR p_expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'an API key needs an expiry in the future' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO flows.api_keys (esco, name, role, created_by, expires_at)
    VALUES (esco_id, p_name, p_role, flows.requester(), p_expires_at)
    RETURNING * INTO created;
    RETURN created;
END
$$;

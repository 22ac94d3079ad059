-- The check PostgREST runs before every request (postgrest.conf db-pre-request),
-- for what PostgREST 12.0.2 does not check itself:
--   * a token without an expiry (exp) is refused: a leaked one would work forever;
--   * with an audience configured (app.settings.jwt_aud, the same value as
--     PostgREST's jwt-aud), a token without that aud is refused;
--   * an API key's token (claim "api_key") works only while its key is live:
--     not revoked, not expired, same ESCO and role as when it was minted.
-- SECURITY DEFINER to read api_keys, which callers cannot.
CREATE FUNCTION flows.check_request() RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    audience text := nullif(pg_catalog.current_setting('app.settings.jwt_aud', true), '');
BEGIN
    IF NOT claims ? 'role' OR claims ->> 'role' = 'flows_anon' THEN
        RETURN;  -- no token: the anonymous role, which may call /rpc/health only
    END IF;
    IF NOT claims ? 'exp' THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = 'the token has no expiry (exp claim) and is refused',
            HINT = 'mint tokens with an expiry (flows token --expires 12h); integrations use API keys '
                   '(flows api-key create), which can be revoked';
    END IF;
    IF audience IS NOT NULL AND NOT coalesce(claims -> 'aud' = pg_catalog.to_jsonb(audience)
            OR (pg_catalog.jsonb_typeof(claims -> 'aud') = 'array' AND claims -> 'aud' ? audience), false) THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = pg_catalog.format('the token is not for this API: its aud claim must be %s', audience),
            HINT = 'mint tokens with the configured audience (FLOWS_JWT_AUD)';
    END IF;
    IF claims ? 'api_key' AND NOT EXISTS (
        SELECT FROM flows.api_keys AS k
        JOIN flows.escos AS e ON e.id = k.esco
        WHERE k.id::text = claims ->> 'api_key' AND k.revoked_at IS NULL AND k.expires_at > pg_catalog.now()
          AND k.role = claims ->> 'role' AND e.code = claims ->> 'esco') THEN
        RAISE SQLSTATE 'PT401' USING
            MESSAGE = 'this API key is revoked, expired or unknown',
            HINT = 'ask an operator of your ESCO for a new key (flows api-key create)';
    END IF;
END
$$;
COMMENT ON FUNCTION flows.check_request() IS
    'PostgREST db-pre-request: refuses tokens without exp or the configured aud, and revoked API keys.';

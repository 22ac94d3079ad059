CREATE FUNCTION api.health() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object('status', 'ok', 'database_time', pg_catalog.now())
$$;
COMMENT ON FUNCTION api.health() IS 'Liveness of the API and its database; needs no token.';

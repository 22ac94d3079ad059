-- Records observed meter state (shadow + history) through the API, e.g. to
-- keep passive digital twins in sync from another system. state holds the
-- fields of a meter state: balance, csq, import_a, tariffs_active, ...
CREATE FUNCTION api.record_meter_state(meter_id uuid, observed_at timestamptz, state jsonb)
RETURNS integer
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT flows.record_meter_states(pg_catalog.jsonb_build_array(
        state || pg_catalog.jsonb_build_object('meter_id', meter_id, 'observed_at', observed_at)))
$$;
COMMENT ON FUNCTION api.record_meter_state(uuid, timestamptz, jsonb) IS
    'Records a meter''s observed state (balance, csq, reads, tariffs, ...) and its history; returns history rows added.';

-- Entries of a meter's event log (arrays of equal length). Event ids no one
-- has named yet are added to meter_event_log_type as unknown_<id>, so no event
-- is ever dropped. Returns the number of new events.
CREATE FUNCTION flows.record_meter_events(
    p_meter_id    uuid,
    p_timestamps  timestamptz[],
    p_event_types integer[],
    p_event_sets  integer[]
) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    first_time timestamptz;
    last_time timestamptz;
    added integer;
BEGIN
    IF coalesce(pg_catalog.cardinality(p_timestamps), 0) = 0 THEN
        RETURN 0;
    END IF;
    IF pg_catalog.cardinality(p_event_types) <> pg_catalog.cardinality(p_timestamps)
       OR pg_catalog.cardinality(p_event_sets) <> pg_catalog.cardinality(p_timestamps) THEN
        RAISE EXCEPTION 'timestamps, event_types and event_sets must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM flows.meter_registry AS m WHERE m.id = p_meter_id) THEN
        RAISE EXCEPTION 'unknown meter: %', p_meter_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.ensure_partitions('flows.meter_event_log', first_time, last_time);
    INSERT INTO flows.meter_event_log_type (id, name)
    SELECT DISTINCT t, 'unknown_' || t FROM unnest(p_event_types) AS t
    ON CONFLICT (id) DO NOTHING;
    INSERT INTO flows.meter_event_log (meter_id, "timestamp", event_type, event_set)
    SELECT p_meter_id, e.ts, e.event_type, e.event_set
    FROM unnest(p_timestamps, p_event_types, p_event_sets) AS e (ts, event_type, event_set)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$$;


-- Where a meter's event log was last read up to: a sync reads the entries
-- after it (versioned: a running worker calls it).
CREATE FUNCTION flows.last_meter_event_time_v1(p_meter_id uuid) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT max(e."timestamp") FROM flows.meter_event_log AS e WHERE e.meter_id = p_meter_id;
END;

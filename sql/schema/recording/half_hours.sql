-- Energy per half hour for many registers at once: arrays of equal length
-- (import_kwh or export_kwh may be null: not measured). Merging with what is
-- stored: a new half hour is added; a stored one gains values it lacked;
-- values derived from reads give way to the meter's profile log. Keeps the
-- daily and monthly rollups exact. Returns the half hours added or changed.
-- SECURITY DEFINER: the only way to write half hours (readings.sql).
CREATE FUNCTION flows.record_interval_hh(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_source       text DEFAULT 'profile_log'
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- its statements are cheaper to run than to plan
AS $$
DECLARE
    n integer := coalesce(pg_catalog.cardinality(p_register_ids), 0);
    first_time timestamptz;
    last_time timestamptz;
    added integer;
    changed integer;
BEGIN
    IF p_source IS NULL OR p_source NOT IN ('reads', 'profile_log') THEN
        RAISE EXCEPTION 'source must be reads or profile_log, got %', p_source
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(pg_catalog.cardinality(p_timestamps), 0) <> n
       OR coalesce(pg_catalog.cardinality(p_import_kwh), n) <> n
       OR coalesce(pg_catalog.cardinality(p_export_kwh), n) <> n THEN
        RAISE EXCEPTION 'register_ids, timestamps, import_kwh and export_kwh must have the same length'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'import_kwh or export_kwh may be null: not measured';
    END IF;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.lock_known_registers(p_register_ids);
    PERFORM flows.ensure_partitions('flows.register_interval_hh', first_time, last_time);

    -- 1. The common case, all new: one plain insert (no conflict handling to
    --    pay for), and the rollups follow from the batch itself.
    BEGIN
        INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)
        SELECT b.register_id, b.ts, b.import_kwh, b.export_kwh, p_source
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh)
            AS b (register_id, ts, import_kwh, export_kwh);
        PERFORM flows.add_to_interval_rollups(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh,
                                              p_source = 'reads');
        RETURN n;
    EXCEPTION WHEN unique_violation THEN
        NULL;  -- some are stored already: all undone, and recorded below
    END;

    -- 2. Some were stored already: add the new ones, fill what stored ones
    --    lack, let the profile log replace values derived from reads; then
    --    recompute the days touched.
    INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)
    SELECT b.register_id, b.ts, b.import_kwh, b.export_kwh, p_source
    FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS b (register_id, ts, import_kwh, export_kwh)
    ON CONFLICT (register_id, "timestamp") DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;

    UPDATE flows.register_interval_hh AS h
    SET import_kwh = CASE WHEN d.take_import THEN d.import_kwh ELSE h.import_kwh END,
        export_kwh = CASE WHEN d.take_export THEN d.export_kwh ELSE h.export_kwh END,
        source = CASE WHEN p_source = 'profile_log' THEN 'profile_log' ELSE h.source END
    FROM (
        SELECT i.register_id, i.ts, i.import_kwh, i.export_kwh,
               i.import_kwh IS NOT NULL AND i.import_kwh IS DISTINCT FROM old.import_kwh
                   AND (old.import_kwh IS NULL OR (old.source = 'reads' AND p_source = 'profile_log')) AS take_import,
               i.export_kwh IS NOT NULL AND i.export_kwh IS DISTINCT FROM old.export_kwh
                   AND (old.export_kwh IS NULL OR (old.source = 'reads' AND p_source = 'profile_log')) AS take_export
        FROM (SELECT DISTINCT ON (b.register_id, b.ts) b.register_id, b.ts, b.import_kwh, b.export_kwh
              FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh)
                  AS b (register_id, ts, import_kwh, export_kwh)
              ORDER BY b.register_id, b.ts) AS i
        JOIN flows.register_interval_hh AS old ON old.register_id = i.register_id AND old."timestamp" = i.ts
    ) AS d
    WHERE h.register_id = d.register_id AND h."timestamp" = d.ts AND (d.take_import OR d.take_export);
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF added + changed > 0 THEN
        PERFORM flows.refresh_interval_rollups(p_register_ids, p_timestamps);
    END IF;
    RETURN added + changed;
END
$$;
COMMENT ON FUNCTION flows.record_interval_hh(uuid[], timestamptz[], numeric[], numeric[], text) IS
    'Records energy per half hour for many registers (arrays of equal length); idempotent; keeps rollups exact.';

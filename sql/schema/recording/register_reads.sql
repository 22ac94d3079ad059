-- Cumulative register reads, for the import or export table. New reads are
-- also noted for flows.estimate_interval_hh (the scheduler derives half hours
-- from them). SECURITY DEFINER: the only way to write reads (readings.sql).
CREATE FUNCTION flows.record_register_reads(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_reads        numeric[],
    p_direction    text
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    first_time timestamptz;
    last_time timestamptz;
    added integer;
BEGIN
    IF p_direction NOT IN ('import', 'export') THEN
        RAISE EXCEPTION 'direction must be import or export, got %', p_direction
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(pg_catalog.cardinality(p_register_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.lock_known_registers(p_register_ids);
    -- One static statement per table (no dynamic SQL: plans are cached, the SQL reads as SQL).
    IF p_direction = 'import' THEN
        PERFORM flows.ensure_partitions('flows.register_import', first_time, last_time);
        WITH new_reads AS (
            INSERT INTO flows.register_import AS r (register_id, "timestamp", read)
            SELECT * FROM unnest(p_register_ids, p_timestamps, p_reads)
            ON CONFLICT (register_id, "timestamp") DO NOTHING
            RETURNING r.register_id, r."timestamp"
        ),
        noted AS (INSERT INTO flows.reads_to_estimate SELECT * FROM new_reads ON CONFLICT DO NOTHING)
        SELECT count(*) INTO added FROM new_reads;
    ELSE
        PERFORM flows.ensure_partitions('flows.register_export', first_time, last_time);
        WITH new_reads AS (
            INSERT INTO flows.register_export AS r (register_id, "timestamp", read)
            SELECT * FROM unnest(p_register_ids, p_timestamps, p_reads)
            ON CONFLICT (register_id, "timestamp") DO NOTHING
            RETURNING r.register_id, r."timestamp"
        ),
        noted AS (INSERT INTO flows.reads_to_estimate SELECT * FROM new_reads ON CONFLICT DO NOTHING)
        SELECT count(*) INTO added FROM new_reads;
    END IF;
    RETURN added;
END
$$;

-- Half hours estimated from consecutive cumulative reads: a register is taken
-- to grow linearly between two reads, so its value at each half-hour boundary
-- in between is interpolated (rounded to the Wh) and each half hour whose both
-- ends are known gets the difference, import and export, with source 'reads'.
-- Only between reads at most 6 hours apart (longer gaps wait for the meter's
-- profile log), never across a fall (a reset register) or an implausible jump
-- (the reads are kept either way). For reads at p_timestamps (those new since
-- the last time); returns the half hours added or changed.
CREATE FUNCTION flows.interval_hh_from_reads(p_register_ids uuid[], p_timestamps timestamptz[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- planned once per session: planning costs more than running it
AS $$
DECLARE
    ids uuid[];
    times timestamptz[];
    imports numeric[];
    exports numeric[];
BEGIN
    IF coalesce(pg_catalog.cardinality(p_register_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    WITH span AS (
        SELECT b.register_id, min(b.ts) AS first_new, max(b.ts) AS last_new
        FROM unnest(p_register_ids, p_timestamps) AS b (register_id, ts) GROUP BY 1
    ),
    all_reads AS (
        SELECT 'import' AS direction, i.register_id, i."timestamp", i.read, s.first_new, s.last_new
        FROM flows.register_import AS i JOIN span AS s USING (register_id)
        WHERE i."timestamp" BETWEEN s.first_new - interval '13 hours' AND s.last_new + interval '13 hours'
        UNION ALL
        SELECT 'export', e.register_id, e."timestamp", e.read, s.first_new, s.last_new
        FROM flows.register_export AS e JOIN span AS s USING (register_id)
        WHERE e."timestamp" BETWEEN s.first_new - interval '13 hours' AND s.last_new + interval '13 hours'
    ),
    ranked AS (  -- the new reads and two either side: a half hour across a neighbouring read
                 -- takes one boundary from the pair before (or after) it. Half hours ending
                 -- before the read preceding the new ones (previous) were estimated already.
        SELECT r.*,
               row_number() OVER (PARTITION BY r.direction, r.register_id, r."timestamp" < r.first_new
                                  ORDER BY r."timestamp" DESC) AS before_rank,
               row_number() OVER (PARTITION BY r.direction, r.register_id, r."timestamp" > r.last_new
                                  ORDER BY r."timestamp") AS after_rank,
               max(r."timestamp") FILTER (WHERE r."timestamp" < r.first_new)
                   OVER (PARTITION BY r.direction, r.register_id) AS previous
        FROM all_reads AS r
    ),
    pairs AS (
        SELECT direction, register_id, previous, "timestamp" AS t0, read AS v0,
               lead("timestamp") OVER w AS t1, lead(read) OVER w AS v1
        FROM ranked
        WHERE ("timestamp" >= first_new OR before_rank <= 2) AND ("timestamp" <= last_new OR after_rank <= 2)
        WINDOW w AS (PARTITION BY direction, register_id ORDER BY "timestamp")
    ),
    boundaries AS (  -- cumulative value at each half-hour boundary between two reads
        SELECT DISTINCT ON (p.direction, p.register_id, b.b) p.direction, p.register_id, p.previous, b.b,
               round(p.v0 + (p.v1 - p.v0) * extract(epoch FROM b.b - p.t0) / extract(epoch FROM p.t1 - p.t0), 3) AS c
        FROM pairs AS p
        CROSS JOIN LATERAL generate_series(
            date_bin('30 minutes', p.t0 - interval '1 microsecond', 'epoch') + interval '30 minutes',
            p.t1, interval '30 minutes') AS b (b)
        WHERE p.t1 IS NOT NULL AND p.t1 - p.t0 <= interval '6 hours' AND p.v1 >= p.v0
          -- a jump beyond what a half hour can hold (register_interval_hh_kwh_range) is no estimate
          AND (p.v1 - p.v0) / greatest(extract(epoch FROM p.t1 - p.t0) / 1800, 1) <= 500
        ORDER BY p.direction, p.register_id, b.b
    ),
    half_hours AS (
        SELECT direction, register_id, previous, b, lead(b) OVER w AS b1, lead(c) OVER w - c AS kwh
        FROM boundaries WINDOW w AS (PARTITION BY direction, register_id ORDER BY b)
    ),
    both_directions AS (
        SELECT register_id, b,
               max(kwh) FILTER (WHERE direction = 'import') AS import_kwh,
               max(kwh) FILTER (WHERE direction = 'export') AS export_kwh
        FROM half_hours
        WHERE b1 = b + interval '30 minutes' AND (previous IS NULL OR b1 > previous)
        GROUP BY register_id, b
    )
    SELECT array_agg(register_id), array_agg(b), array_agg(import_kwh), array_agg(export_kwh)
    INTO ids, times, imports, exports
    FROM both_directions;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN flows.record_interval_hh(ids, times, imports, exports, 'reads');
END
$$;


-- Estimates the half hours the reads noted since the last pass make known;
-- returns the half hours added or changed. SECURITY DEFINER: the queue is
-- internal (no role has privileges on it).
CREATE FUNCTION flows.estimate_interval_hh() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    ids uuid[];
    times timestamptz[];
BEGIN
    WITH taken AS (DELETE FROM flows.reads_to_estimate RETURNING register_id, "timestamp")
    SELECT array_agg(register_id), array_agg("timestamp") INTO ids, times FROM taken;
    RETURN flows.interval_hh_from_reads(ids, times);
END
$$;
COMMENT ON FUNCTION flows.estimate_interval_hh() IS
    'Turns the reads recorded since the last call into estimated half hours (the scheduler calls it).';

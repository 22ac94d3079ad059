-- Time-series tables: partitioned by month on plain PostgreSQL, hypertables
-- when the TimescaleDB extension is installed. Either way a BRIN index on time
-- (cheap, fits append-mostly data) and the primary key's btree on
-- (register or meter, time) serve the queries.

-- Monthly partitions (UTC months) of a partitioned flows table covering
-- [p_from, p_to]; returns how many were created. Ingestion calls it for the
-- range of each batch, so late data never lacks a partition; the scheduler
-- calls flows.maintain_partitions() to stay months ahead. Safe when sessions
-- record into the same new month at once (concurrent backfills). SECURITY
-- DEFINER: only the tables' owner may add partitions.
CREATE FUNCTION flows.ensure_partitions(p_table regclass, p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    table_name name;
    month timestamp;
    last_month timestamp := pg_catalog.date_trunc('month', p_to AT TIME ZONE 'UTC');
    partition_name text;
    created integer := 0;
BEGIN
    SELECT c.relname INTO table_name
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_partitioned_table AS p ON p.partrelid = c.oid
    WHERE c.oid = p_table AND c.relnamespace = 'flows'::regnamespace;
    IF table_name IS NULL THEN
        RETURN 0;  -- not a partitioned flows table (e.g. a TimescaleDB hypertable makes its own chunks)
    END IF;
    IF p_to < p_from OR p_to - p_from > interval '25 months' THEN
        RAISE EXCEPTION 'partition range % to % is not plausible', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    month := pg_catalog.date_trunc('month', p_from AT TIME ZONE 'UTC');
    WHILE month <= last_month LOOP
        partition_name := table_name || '_p' || pg_catalog.to_char(month, 'YYYY_MM');
        IF pg_catalog.to_regclass('flows.' || pg_catalog.quote_ident(partition_name)) IS NULL THEN
            PERFORM pg_catalog.pg_advisory_xact_lock(p_table::oid::bigint);
            -- Asked again of the catalog itself, not its cache: a session that waited for the lock while
            -- another created the partition still holds "no such table" in its cache.
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c
                           WHERE c.relname = partition_name AND c.relnamespace = 'flows'::regnamespace) THEN
                EXECUTE pg_catalog.format(
                    'CREATE TABLE flows.%I PARTITION OF flows.%I FOR VALUES FROM (%L) TO (%L)',
                    partition_name, table_name,
                    month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION flows.ensure_partitions(regclass, timestamptz, timestamptz) IS
    'Creates the missing monthly partitions of a time-series table for a time range.';

-- Keeps every time-series table partitioned from last month to three months ahead.
CREATE FUNCTION flows.maintain_partitions() RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    t regclass;
    created integer := 0;
BEGIN
    FOR t IN
        SELECT p.partrelid::regclass
        FROM pg_catalog.pg_partitioned_table AS p
        JOIN pg_catalog.pg_class AS c ON c.oid = p.partrelid
        WHERE c.relnamespace = 'flows'::regnamespace AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        created := created + flows.ensure_partitions(t, pg_catalog.now() - interval '1 month',
                                                      pg_catalog.now() + interval '3 months');
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION flows.maintain_partitions() IS
    'Creates partitions from last month to three months ahead for every time-series table.';

-- Creates a time-series table from its column list: a hypertable when
-- TimescaleDB is installed, else a table partitioned by month on p_time_column.
CREATE PROCEDURE flows.create_timeseries(p_table text, p_columns text, p_time_column text DEFAULT 'timestamp')
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    timescale name;
BEGIN
    SELECT n.nspname INTO timescale
    FROM pg_catalog.pg_extension AS e
    JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    IF timescale IS NOT NULL THEN
        EXECUTE pg_catalog.format('CREATE TABLE flows.%I (%s)', p_table, p_columns);
        EXECUTE pg_catalog.format(
            'SELECT %I.create_hypertable(%L, %L, chunk_time_interval => interval ''1 month'')',
            timescale, 'flows.' || p_table, p_time_column);
    ELSE
        EXECUTE pg_catalog.format('CREATE TABLE flows.%I (%s) PARTITION BY RANGE (%I)',
                                  p_table, p_columns, p_time_column);
        PERFORM flows.ensure_partitions(pg_catalog.format('flows.%I', p_table)::regclass,
                                        pg_catalog.now() - interval '1 month',
                                        pg_catalog.now() + interval '3 months');
    END IF;
    EXECUTE pg_catalog.format('CREATE INDEX %I ON flows.%I USING brin (%I)',
                              p_table || '_time_brin', p_table, p_time_column);
END
$$;
COMMENT ON PROCEDURE flows.create_timeseries(text, text, text) IS
    'Creates a time-series table: monthly partitions, or a hypertable under TimescaleDB.';

-- Realtime change capture: which api relations can be followed live, and the
-- log of changes the gateway (`flows gateway`) delivers over WebSocket and SSE.
--
--   statement --(statement-level triggers, transition tables)--> realtime_events (xid, relation, key)
--             --(first capture in a transaction)--> realtime_commits (xid)
--   COMMIT    --(deferred trigger: advisory lock, next position)--> realtime_commits.position, NOTIFY flows_realtime
--
-- Positions are handed out at commit time under one transaction-level
-- advisory lock, which PostgreSQL releases only after the commit is visible:
-- whoever sees position N also sees every position below N. The gateway reads
-- commits in position order and never skips one that committed late. Rows
-- carry ids only: the gateway reads each row through the api view as the
-- subscriber (the statements of flows.realtime_query), so row-level security
-- decides who sees what. docs/realtime.md has the whole design and its measured cost.

-- == The registry ===========================================================

-- An api view that can be followed live, by its key column.
CREATE TABLE flows.realtime_relations (
    relation   text PRIMARY KEY,
    key_column text NOT NULL,
    notes      text,
    CONSTRAINT realtime_relations_name_format CHECK (relation ~ '^[a-z_][a-z0-9_]*$'),
    CONSTRAINT realtime_relations_key_format CHECK (key_column ~ '^[a-z_][a-z0-9_]*$')
);
COMMENT ON TABLE flows.realtime_relations IS
    'api views the gateway can stream (GET /events/stream?relation=NAME), each with its key column.';

-- Which statements on which tables touch a followed relation, and how to get
-- the keys (and the ESCO, when known) of the touched rows. `changes` is a
-- SELECT over the statement's transition tables (new_rows for INSERT and
-- UPDATE, old_rows for UPDATE and DELETE) returning (key, esco). A `scope`
-- source does not change the relation's rows but may change who sees them
-- (e.g. a meter connected to another property): its events are delivered as
-- "visible now -> upsert, visible before -> remove" like any other.
CREATE TABLE flows.realtime_sources (
    relation  text     NOT NULL REFERENCES flows.realtime_relations (relation) ON DELETE CASCADE,
    source    regclass NOT NULL,
    operation text     NOT NULL,
    changes   text     NOT NULL,
    scope     boolean  NOT NULL DEFAULT false,
    PRIMARY KEY (relation, source, operation),
    CONSTRAINT realtime_sources_operation_valid CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE'))
);
CREATE INDEX realtime_sources_source_idx ON flows.realtime_sources (source, operation);
COMMENT ON TABLE flows.realtime_sources IS
    'Per table and operation: a SELECT over new_rows/old_rows giving (key, esco) of the followed relation''s rows touched.';


-- == The change log =========================================================

-- One row per touched key and kind of change per transaction (the reader folds them per commit).
CREATE TABLE flows.realtime_events (
    xid      xid8   NOT NULL,
    relation text   NOT NULL,
    key      text   NOT NULL,
    op       "char" NOT NULL,
    esco     uuid,
    PRIMARY KEY (xid, relation, key, op),
    CONSTRAINT realtime_events_op_valid CHECK (op IN ('i', 'u', 'd', 's'))
);
COMMENT ON TABLE flows.realtime_events IS
    'Keys touched per transaction: op i(nsert), u(pdate), d(elete), s(cope: who may see the row changed).';

-- One row per capturing transaction; position and committed_at are set at commit.
CREATE TABLE flows.realtime_commits (
    xid          xid8        PRIMARY KEY,
    position     bigint,
    committed_at timestamptz,
    CONSTRAINT realtime_commits_position_key UNIQUE (position)
);
COMMENT ON TABLE flows.realtime_commits IS
    'Transactions that changed followed relations, numbered in commit order (position) when they commit.';

CREATE SEQUENCE flows.realtime_position AS bigint;

-- Up to which position changes were pruned: a client resuming from an older
-- position must resync.
CREATE TABLE flows.realtime_state (
    singleton      boolean PRIMARY KEY DEFAULT true,
    pruned_through bigint  NOT NULL DEFAULT 0,
    CONSTRAINT realtime_state_singleton CHECK (singleton)
);
COMMENT ON TABLE flows.realtime_state IS 'pruned_through: changes up to this position are gone (resume needs resync).';


-- == Capture ================================================================

-- The statement-level capture trigger: for each registry source of this table
-- and operation, the touched keys go to realtime_events, and the transaction
-- is registered once in realtime_commits (whose deferred trigger numbers it
-- at commit). SECURITY DEFINER: writers need no rights on the log.
CREATE FUNCTION flows.capture_realtime_changes() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    src record;
    touched bigint;
    captured bigint := 0;
BEGIN
    FOR src IN
        SELECT s.relation, s.changes, s.scope FROM flows.realtime_sources AS s
        WHERE s.source = TG_RELID AND s.operation = TG_OP
    LOOP
        EXECUTE pg_catalog.format(
            'INSERT INTO flows.realtime_events (xid, relation, key, op, esco)'
            ' SELECT pg_catalog.pg_current_xact_id(), %L, c.key::text, %L, c.esco'
            ' FROM (%s) AS c (key, esco) WHERE c.key IS NOT NULL ON CONFLICT DO NOTHING',
            src.relation,
            CASE WHEN src.scope THEN 's' ELSE pg_catalog.lower(pg_catalog.left(TG_OP, 1)) END,
            src.changes);
        GET DIAGNOSTICS touched = ROW_COUNT;
        captured := captured + touched;
    END LOOP;
    IF captured > 0 THEN
        INSERT INTO flows.realtime_commits (xid) VALUES (pg_catalog.pg_current_xact_id()) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.capture_realtime_changes() IS
    'Statement trigger: logs the keys of followed relations a statement touched (flows.realtime_sources).';

-- At commit (deferred): the next position, under a lock held until the commit
-- is visible, so positions are in commit order; then the doorbell.
CREATE FUNCTION flows.number_realtime_commit() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    next_position bigint;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7318050700412);  -- 'realtime position', any fixed number
    next_position := pg_catalog.nextval('flows.realtime_position');
    UPDATE flows.realtime_commits SET position = next_position, committed_at = pg_catalog.clock_timestamp()
    WHERE xid = NEW.xid;
    PERFORM pg_catalog.pg_notify('flows_realtime', next_position::text);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.number_realtime_commit() IS
    'Deferred to commit: numbers the transaction''s changes in commit order and rings flows_realtime (the position).';

CREATE CONSTRAINT TRIGGER realtime_commits_number AFTER INSERT ON flows.realtime_commits
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION flows.number_realtime_commit();

-- Puts the three capture triggers (insert, update, delete: a trigger with
-- transition tables has one event) on a table, once.
CREATE PROCEDURE flows.capture_realtime(p_source regclass)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    operation text;
    table_name text := (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid = p_source);
BEGIN
    FOREACH operation IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
                       WHERE t.tgrelid = p_source AND t.tgname = table_name || '_realtime_' || operation) THEN
            EXECUTE pg_catalog.format(
                'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT'
                ' EXECUTE FUNCTION flows.capture_realtime_changes()',
                table_name || '_realtime_' || operation, pg_catalog.upper(operation), p_source,
                CASE operation WHEN 'insert' THEN 'NEW TABLE AS new_rows'
                               WHEN 'update' THEN 'OLD TABLE AS old_rows NEW TABLE AS new_rows'
                               ELSE 'OLD TABLE AS old_rows' END);
        END IF;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE flows.capture_realtime(regclass) IS 'Adds the realtime capture triggers to a table (idempotent).';

-- The one line per relation: follow api.<relation>, a view of table p_source
-- keyed by p_key_column, with its ESCO in p_esco_column (null: none).
CREATE PROCEDURE flows.follow_realtime(p_relation text, p_source regclass, p_key_column text,
                                       p_esco_column text DEFAULT 'esco', p_notes text DEFAULT NULL)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_expression text := coalesce(pg_catalog.quote_ident(p_esco_column), 'NULL::uuid');
BEGIN
    INSERT INTO flows.realtime_relations (relation, key_column, notes) VALUES (p_relation, p_key_column, p_notes);
    INSERT INTO flows.realtime_sources (relation, source, operation, changes)
    SELECT p_relation, p_source, o.operation,
           pg_catalog.format('SELECT %I, %s FROM %s', p_key_column, esco_expression, o.transition)
    FROM (VALUES ('INSERT', 'new_rows'), ('UPDATE', 'new_rows'), ('DELETE', 'old_rows')) AS o (operation, transition);
    CALL flows.capture_realtime(p_source);
END
$$;
COMMENT ON PROCEDURE flows.follow_realtime(text, regclass, text, text, text) IS
    'Registers api.<relation> (rows of one table, by key, with an esco column) for realtime; adds the triggers.';


-- == Reading (the gateway, logged in as flows_authenticator) =================

-- The latest position the caller's snapshot sees (0: none yet).
CREATE FUNCTION flows.realtime_head() RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT coalesce(max(c.position), 0) FROM flows.realtime_commits AS c
$$;

CREATE FUNCTION flows.realtime_pruned_through() RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT coalesce((SELECT s.pruned_through FROM flows.realtime_state AS s), 0)
$$;

-- Changes of the commits after p_after up to p_through, in commit order, one
-- row per (commit, relation, key): may_leave when a statement deleted the row
-- or changed who may see it; inserted when the commit created the row.
CREATE FUNCTION flows.realtime_changes(p_after bigint, p_through bigint)
RETURNS TABLE (commit_position bigint, committed_at timestamptz, relation text, key text, esco uuid,
               may_leave boolean, inserted boolean)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT c.position, c.committed_at, e.relation, e.key, max(e.esco::text)::uuid,
           bool_or(e.op IN ('d', 's')), bool_or(e.op = 'i')
    FROM flows.realtime_commits AS c
    JOIN flows.realtime_events AS e ON e.xid = c.xid
    WHERE c.position > p_after AND c.position <= p_through
    GROUP BY c.position, c.committed_at, e.relation, e.key
    ORDER BY c.position, e.relation, e.key
$$;

-- The type of a column of api.<relation> (null: no such column), from the
-- catalog (the gateway's login has no rights on the api schema itself).
CREATE FUNCTION flows.realtime_column_type(p_relation text, p_column text) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'api'::regnamespace AND c.relname = p_relation
      AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- A subscription filter (PostgREST syntax, parsed by the gateway into
-- [{"column", "op", "value", "negate"}]) as a boolean SQL condition over the
-- view's row `v`: every column checked against the view, every value not in
-- the text but appended to p_values and referenced as $2[n] (cast to the
-- column's type), so filters of one shape share one prepared statement.
-- Errors name the column or operator.
CREATE FUNCTION flows.realtime_condition(p_relation text, p_filter jsonb, INOUT p_values text[],
                                         OUT condition text)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    item jsonb;
    column_type text;
    expression text;
    parts text[] := '{}'::text[];
    operator text;
BEGIN
    IF NOT EXISTS (SELECT FROM flows.realtime_relations AS r WHERE r.relation = p_relation) THEN
        RAISE EXCEPTION 'relation % cannot be followed live', pg_catalog.quote_literal(p_relation)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = (SELECT 'one of: ' || string_agg(r.relation, ', ' ORDER BY r.relation)
                          FROM flows.realtime_relations AS r);
    END IF;
    FOR item IN SELECT e.value FROM pg_catalog.jsonb_array_elements(coalesce(p_filter, '[]')) AS e LOOP
        column_type := flows.realtime_column_type(p_relation, item ->> 'column');
        IF column_type IS NULL THEN
            RAISE EXCEPTION 'filter column % is not a column of %', pg_catalog.quote_literal(item ->> 'column'),
                p_relation USING ERRCODE = 'invalid_parameter_value';
        END IF;
        operator := item ->> 'op';
        expression := CASE
            WHEN operator IN ('eq', 'neq', 'lt', 'lte', 'gt', 'gte') THEN
                pg_catalog.format('v.%I %s (($2::text[])[%s])::%s', item ->> 'column',
                    CASE operator WHEN 'eq' THEN '=' WHEN 'neq' THEN '<>' WHEN 'lt' THEN '<' WHEN 'lte' THEN '<='
                                  WHEN 'gt' THEN '>' ELSE '>=' END,
                    coalesce(pg_catalog.cardinality(p_values), 0) + 1, column_type)
            WHEN operator = 'in' AND pg_catalog.jsonb_typeof(item -> 'value') = 'array' THEN
                pg_catalog.format('v.%I = ANY ((($2::text[])[%s])::%s[])', item ->> 'column',
                    coalesce(pg_catalog.cardinality(p_values), 0) + 1, column_type)
            WHEN operator = 'is' AND item ->> 'value' IN ('null', 'true', 'false', 'unknown') THEN
                pg_catalog.format('v.%I IS %s', item ->> 'column', pg_catalog.upper(item ->> 'value'))
        END;
        IF expression IS NULL THEN
            RAISE EXCEPTION 'filter operator % on % is not supported', pg_catalog.quote_literal(operator),
                item ->> 'column' USING ERRCODE = 'invalid_parameter_value',
                HINT = 'eq, neq, lt, lte, gt, gte, in.(a,b), is.null|true|false|unknown, each optionally not.';
        END IF;
        IF operator = 'in' THEN
            p_values := p_values || (SELECT coalesce(array_agg(x), '{}'::text[])
                                     FROM pg_catalog.jsonb_array_elements_text(item -> 'value') AS x)::text;
        ELSIF operator <> 'is' THEN
            p_values := p_values || (item ->> 'value');
        END IF;
        IF (item ->> 'negate')::boolean THEN
            expression := 'NOT (' || expression || ')';
        END IF;
        parts := parts || expression;
    END LOOP;
    condition := coalesce(NULLIF(array_to_string(parts, ' AND '), ''), 'true');
END
$$;
COMMENT ON FUNCTION flows.realtime_condition(text, jsonb, text[]) IS
    'A parsed PostgREST-style filter as a checked SQL condition over the view row v, its values as $2[n].';

-- The statement that reads api.<relation>'s rows with the keys $1 (text[])
-- and says which of p_filters (a JSON array of filters) each passes, with the
-- filters' values for $2. The gateway prepares it once per shape and runs it
-- after setting the role and request.jwt.claims of the audience it reads for
-- (as PostgREST does), so row-level security decides which rows come back.
-- p_rows false: keys and matches only (the "was it visible before" question).
CREATE FUNCTION flows.realtime_query(p_relation text, p_filters jsonb, p_rows boolean DEFAULT true,
                                     OUT query text, OUT "values" text[])
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    key_column text := (SELECT r.key_column FROM flows.realtime_relations AS r WHERE r.relation = p_relation);
    conditions text[] := '{}'::text[];
    filter jsonb;
    condition text;
BEGIN
    "values" := '{}'::text[];
    FOR filter IN SELECT e.value FROM pg_catalog.jsonb_array_elements(coalesce(p_filters, '[]')) AS e LOOP
        SELECT c."p_values", c.condition INTO "values", condition
        FROM flows.realtime_condition(p_relation, filter, "values") AS c;
        conditions := conditions || condition;
    END LOOP;
    IF key_column IS NULL THEN
        PERFORM flows.realtime_condition(p_relation, '[]', '{}');  -- raises the clear error
    END IF;
    query := pg_catalog.format(
        'SELECT v.%I::text, %s, ARRAY[%s]::boolean[] FROM api.%I AS v WHERE v.%I = ANY (($1::text[])::%s[])',
        key_column, CASE WHEN p_rows THEN 'pg_catalog.to_json(v)' ELSE 'NULL::json' END,
        array_to_string(conditions, ', '), p_relation, key_column,
        flows.realtime_column_type(p_relation, key_column));
END
$$;
COMMENT ON FUNCTION flows.realtime_query(text, jsonb, boolean) IS
    'The statement reading api.<relation> rows by key and which filters they pass (run as the subscriber).';

-- The rows of api.<relation> passing a filter as one audience reads them (a
-- subscription's first state), at most p_limit + 1 so the caller can refuse more.
CREATE FUNCTION flows.realtime_snapshot(p_relation text, p_audience jsonb, p_filter jsonb, p_limit integer)
RETURNS TABLE (key text, row_data json)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    filter record := flows.realtime_condition(p_relation, p_filter, '{}');
    query text := pg_catalog.format(
        'SELECT v.%I::text, pg_catalog.to_json(v) FROM api.%I AS v WHERE %s ORDER BY 1 LIMIT %s',
        (SELECT r.key_column FROM flows.realtime_relations AS r WHERE r.relation = p_relation), p_relation,
        filter.condition, p_limit + 1);
BEGIN
    PERFORM pg_catalog.set_config('role', p_audience ->> 'role', true);
    PERFORM pg_catalog.set_config('request.jwt.claims', (p_audience -> 'claims')::text, true);
    RETURN QUERY EXECUTE query USING NULL::text[], filter.p_values;
    PERFORM pg_catalog.set_config('role', 'none', true);
    PERFORM pg_catalog.set_config('request.jwt.claims', '', true);
END
$$;
COMMENT ON FUNCTION flows.realtime_snapshot(text, jsonb, jsonb, integer) IS
    'A subscription''s first state: rows of api.<relation> passing its filter, read as its role and claims.';

-- Which of these ESCOs each audience sees (api.escos as that role): a change
-- of an ESCO the audience cannot see was never visible to it.
CREATE FUNCTION flows.realtime_visible_escos(p_audiences jsonb, p_escos uuid[])
RETURNS TABLE (audience integer, esco uuid)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    audience_number integer := 0;
    member jsonb;
BEGIN
    FOR member IN SELECT e.value FROM pg_catalog.jsonb_array_elements(p_audiences) AS e LOOP
        PERFORM pg_catalog.set_config('role', member ->> 'role', true);
        PERFORM pg_catalog.set_config('request.jwt.claims', (member -> 'claims')::text, true);
        RETURN QUERY EXECUTE 'SELECT $1, e.id FROM api.escos AS e WHERE e.id = ANY ($2)' USING audience_number, p_escos;
        PERFORM pg_catalog.set_config('role', 'none', true);
        audience_number := audience_number + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('request.jwt.claims', '', true);
END
$$;


-- == Pruning ================================================================

-- Drops commits (and their changes) older than p_retention; returns how many
-- commits went. Run it on a schedule: the gateway does every few minutes
-- (--prune-interval), or pg_cron: SELECT cron.schedule('*/10 * * * *', 'SELECT flows.prune_realtime_events()').
CREATE FUNCTION flows.prune_realtime_events(p_retention interval DEFAULT '1 hour') RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    last_pruned bigint;
    commits bigint;
BEGIN
    IF p_retention < interval '0' THEN
        RAISE EXCEPTION 'retention must not be negative, got %', p_retention USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH gone AS (
        DELETE FROM flows.realtime_commits AS c
        WHERE c.committed_at < pg_catalog.now() - p_retention
        RETURNING c.xid, c.position
    ), changes AS (
        DELETE FROM flows.realtime_events AS e USING gone WHERE e.xid = gone.xid
    )
    SELECT max(gone.position), count(*) INTO last_pruned, commits FROM gone;
    IF last_pruned IS NOT NULL THEN
        INSERT INTO flows.realtime_state (pruned_through) VALUES (last_pruned)
        ON CONFLICT (singleton) DO UPDATE
            SET pruned_through = greatest(flows.realtime_state.pruned_through, excluded.pruned_through);
    END IF;
    RETURN commits;
END
$$;
COMMENT ON FUNCTION flows.prune_realtime_events(interval) IS
    'Drops realtime changes older than the retention; clients resuming from before them get resync.';

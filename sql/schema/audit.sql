-- The audit trail: who changed what, when, for configuration and money.
--
-- One row per changed row of an audited table, written by a trigger in the
-- same transaction as the change (a rolled-back change leaves no audit row).
-- Who: the JWT's subject, role and ESCO, the API key, the request id (the
-- X-Request-Id header the proxy sets), and the database login; never the
-- bearer token or other headers. What: the relation, the row's primary key,
-- the row before and after. When: the transaction's time and id.
--
-- Append-only for everyone, the owner included: nobody holds UPDATE, DELETE or
-- TRUNCATE on it, and a trigger refuses them even if someone grants them back
-- (erasure pseudonymises copies of a customer's rows: below).
-- A table is audited by one line in sql/schema/audit_registry.sql.
CREATE TABLE flows.audit_log (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    esco           uuid,
    relation       text        NOT NULL,
    operation      text        NOT NULL,
    row_key        jsonb       NOT NULL,
    before         jsonb,
    after          jsonb,
    actor_sub      text,
    actor_role     text        NOT NULL,
    actor_esco     text,
    api_key        uuid,
    request_id     text,
    db_user        text        NOT NULL,
    transaction_id bigint      NOT NULL,
    CONSTRAINT audit_log_operation_valid CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    CONSTRAINT audit_log_images CHECK ((before IS NULL) = (operation = 'INSERT') AND
                                       (after IS NULL) = (operation = 'DELETE'))
);
COMMENT ON TABLE flows.audit_log IS
    'Who changed what and when (configuration and money); append-only. esco: the changed row''s ESCO.';
COMMENT ON COLUMN flows.audit_log.row_key IS 'Primary key of the changed row, e.g. {"id": "..."}.';
COMMENT ON COLUMN flows.audit_log.actor_role IS 'The JWT''s role for API requests, else the database login.';
COMMENT ON COLUMN flows.audit_log.request_id IS 'X-Request-Id of the HTTP request (set by the proxy), if any.';
CREATE INDEX audit_log_esco_at_idx ON flows.audit_log (esco, at);
CREATE INDEX audit_log_row_idx ON flows.audit_log (relation, row_key);

-- One deliberate exception: erasing a customer (gdpr.erase_customer)
-- pseudonymises the row copies and actors of the audit rows of the customer's
-- ESCO, in the transaction that recorded the erasure in gdpr.erasures (which
-- is audited itself); nothing else of the row may change. The owner holds
-- UPDATE on those three columns for that (privileges.sql) and nothing else.
CREATE FUNCTION flows.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (to_jsonb(NEW) - '{before,after,actor_sub}'::text[]) = (to_jsonb(OLD) - '{before,after,actor_sub}'::text[])
           AND gdpr.erasing(OLD.esco) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; record a correction as a new change';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON flows.audit_log
    FOR EACH ROW EXECUTE FUNCTION flows.refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON flows.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION flows.refuse_audit_change();


-- The audit trigger. Arguments (set by flows.audit): the ESCO column ('' for
-- none), then the primary key columns. SECURITY DEFINER: writers need no
-- privilege on the audit log, so they cannot write it any other way.
CREATE FUNCTION flows.audit_row() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END;
    changed jsonb := coalesce(new_row, old_row);
    row_key jsonb := '{}'::jsonb;
    request_id text;
BEGIN
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        row_key := row_key || pg_catalog.jsonb_build_object(TG_ARGV[i], changed -> TG_ARGV[i]);
    END LOOP;
    IF session_user = 'flows_authenticator' THEN  -- only PostgREST's headers are the client's
        request_id := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb ->> 'x-request-id';
    END IF;
    INSERT INTO flows.audit_log (esco, relation, operation, row_key, before, after, actor_sub, actor_role,
                                 actor_esco, api_key, request_id, db_user, transaction_id)
    VALUES ((changed ->> nullif(TG_ARGV[0], ''))::uuid, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_key,
            old_row, new_row, claims ->> 'sub', coalesce(claims ->> 'role', session_user::text), claims ->> 'esco',
            CASE WHEN claims ->> 'api_key' ~ '^[0-9a-f-]{36}$' THEN (claims ->> 'api_key')::uuid END,
            pg_catalog.left(request_id, 200), session_user::text, pg_catalog.txid_current());
    RETURN NULL;
END
$$;


-- The audit trigger of a table written in bulk (flows.audit's per_statement):
-- one INSERT for every row a statement changed, from its transition tables;
-- an update's old and new rows are paired by primary key, which such a table
-- never changes. Arguments (set by flows.audit): the ESCO column ('' for
-- none), the ignored columns (an array literal), the rows' condition with
-- {row} ('' for every row), then the primary key columns.
CREATE FUNCTION flows.audit_statement() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET enable_nestloop = off  -- transition tables have no statistics: old and new rows paired by a hash, not n x n
AS $$
DECLARE
    claims jsonb := flows.jwt_claims();
    request_id text;
    image text := CASE TG_OP WHEN 'DELETE' THEN 'o' ELSE 'n' END;  -- the row the key, ESCO and condition read
    row_key text;
    pairing text;
BEGIN
    SELECT string_agg(pg_catalog.format('%L, %s.%I', k, image, k), ', '),
           string_agg(pg_catalog.format('n.%1$I = o.%1$I', k), ' AND ')
    INTO row_key, pairing
    FROM unnest(TG_ARGV[3:TG_NARGS - 1]) AS k;
    IF session_user = 'flows_authenticator' THEN  -- only PostgREST's headers are the client's
        request_id := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb ->> 'x-request-id';
    END IF;
    EXECUTE pg_catalog.format(
        'INSERT INTO flows.audit_log (esco, relation, operation, row_key, before, after, actor_sub, actor_role,'
        ' actor_esco, api_key, request_id, db_user, transaction_id)'
        ' SELECT %s, %L, %L, pg_catalog.jsonb_build_object(%s), %s, %s, $1 ->> ''sub'','
        ' coalesce($1 ->> ''role'', session_user::text), $1 ->> ''esco'','
        ' CASE WHEN $1 ->> ''api_key'' ~ ''^[0-9a-f-]{36}$'' THEN ($1 ->> ''api_key'')::uuid END, $2,'
        ' session_user::text, pg_catalog.txid_current()'
        ' FROM %s WHERE %s AND %s',
        CASE WHEN TG_ARGV[0] = '' THEN 'NULL::uuid' ELSE pg_catalog.format('%s.%I::uuid', image, TG_ARGV[0]) END,
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_key,
        CASE WHEN TG_OP = 'INSERT' THEN 'NULL' ELSE 'pg_catalog.to_jsonb(o)' END,
        CASE WHEN TG_OP = 'DELETE' THEN 'NULL' ELSE 'pg_catalog.to_jsonb(n)' END,
        CASE TG_OP WHEN 'INSERT' THEN 'new_rows AS n' WHEN 'DELETE' THEN 'old_rows AS o'
                   ELSE 'old_rows AS o JOIN new_rows AS n ON ' || pairing END,
        CASE WHEN TG_OP = 'UPDATE'
             THEN pg_catalog.format('(pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.-) %1$L::text[]) IS DISTINCT FROM '
                                    '(pg_catalog.to_jsonb(n) OPERATOR(pg_catalog.-) %1$L::text[])', TG_ARGV[1])
             ELSE 'true' END,
        coalesce(nullif(pg_catalog.replace(TG_ARGV[2], '{row}', image), ''), 'true'))
    USING claims, pg_catalog.left(request_id, 200);
    RETURN NULL;
END
$$;


-- Attaches the audit trail to a table: the one call sql/schema/audit_registry.sql
-- makes per audited table (CALL flows.audit('flows.payments')).
--   esco_column      the column holding the row's ESCO (null: the row belongs to none)
--   ignored_columns  an UPDATE that changes only these is not audited (e.g. updated_at, leases)
--   only_rows        a condition on the row, written with {row} (e.g. '{row}.requested_by <> ''scheduler''')
--   per_statement    one trigger call per statement (flows.audit_statement) instead of one per row: for a
--                    table written thousands of rows at a time, whose primary key is never updated
CREATE PROCEDURE flows.audit(relation regclass, esco_column text DEFAULT 'esco',
                             ignored_columns text[] DEFAULT '{updated_at}', only_rows text DEFAULT NULL,
                             per_statement boolean DEFAULT false)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    key_columns text;
    arguments text;
    changed text;
BEGIN
    SELECT string_agg(pg_catalog.quote_literal(a.attname), ', ' ORDER BY k.n) INTO key_columns
    FROM pg_catalog.pg_index AS i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = relation AND i.indisprimary;
    IF key_columns IS NULL THEN
        RAISE EXCEPTION '% has no primary key to identify audited rows by', relation
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    IF per_statement THEN
        arguments := pg_catalog.format('%L, %L, %L, %s', coalesce(esco_column, ''), coalesce(ignored_columns, '{}'),
                                       coalesce(only_rows, ''), key_columns);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_update AFTER UPDATE ON %s '
                                  'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        EXECUTE pg_catalog.format('CREATE TRIGGER audit_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION flows.audit_statement(%s)', relation, arguments);
        RETURN;
    END IF;
    arguments := pg_catalog.quote_literal(coalesce(esco_column, '')) || ', ' || key_columns;
    changed := pg_catalog.format('(pg_catalog.to_jsonb(OLD.*) OPERATOR(pg_catalog.-) %1$L::text[]) IS DISTINCT FROM '
                                 '(pg_catalog.to_jsonb(NEW.*) OPERATOR(pg_catalog.-) %1$L::text[])',
                                 coalesce(ignored_columns, '{}'));
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_insert AFTER INSERT ON %s FOR EACH ROW %s '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation,
                              'WHEN (' || pg_catalog.replace(only_rows, '{row}', 'NEW') || ')', arguments);
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_update AFTER UPDATE ON %s FOR EACH ROW WHEN (%s%s) '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation, changed,
                              ' AND (' || pg_catalog.replace(only_rows, '{row}', 'NEW') || ')', arguments);
    EXECUTE pg_catalog.format('CREATE TRIGGER audit_delete AFTER DELETE ON %s FOR EACH ROW %s '
                              'EXECUTE FUNCTION flows.audit_row(%s)', relation,
                              'WHEN (' || pg_catalog.replace(only_rows, '{row}', 'OLD') || ')', arguments);
END
$$;
COMMENT ON PROCEDURE flows.audit(regclass, text, text[], text, boolean) IS
    'Audits a table: its inserts, updates (ignoring ignored_columns) and deletes go to flows.audit_log.';

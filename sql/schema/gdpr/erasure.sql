-- Erasure: a customer's identity and contact data pseudonymised everywhere
-- the registry names (sql/schema/gdpr/registry.sql), the audit trail's copies
-- included, while their financial records stay (pseudonymised) until their
-- retention date. Refused, saying why, while money is owed or a statement is
-- open: the checks are a registry too (gdpr.erasure_check, one line each).
--
-- Two frozen things change here, and only here: final statements' printed
-- details (billing.guard_final_invoice) and the audit trail's row copies
-- (flows.refuse_audit_change). Both allow it only in a transaction that has
-- recorded the erasure in gdpr.erasures (itself audited), and only in the
-- columns holding the copies.

CREATE TABLE gdpr.erasures (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco           uuid        NOT NULL,
    customer_id    uuid        NOT NULL,
    pseudonym      text        NOT NULL,
    reference      text,
    requested_by   text        NOT NULL,
    erased_at      timestamptz NOT NULL DEFAULT now(),
    transaction_id bigint      NOT NULL DEFAULT txid_current(),
    summary        jsonb,
    CONSTRAINT erasures_id_esco_key UNIQUE (id, esco),
    CONSTRAINT erasures_customer_key UNIQUE (customer_id),
    CONSTRAINT erasures_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco)
);
COMMENT ON TABLE gdpr.erasures IS
    'Customers erased: when, by whom, for which request (reference), the pseudonym they now carry and what changed.';
COMMENT ON COLUMN gdpr.erasures.transaction_id IS
    'The erasing transaction: the frozen statements and audit copies may change only in it.';
CREATE INDEX erasures_transaction_idx ON gdpr.erasures (transaction_id);

-- Whether this transaction is erasing (a customer of) an ESCO: the guards of
-- frozen rows ask. SECURITY DEFINER: whoever writes statements may ask
-- without reading erasures.
CREATE FUNCTION gdpr.erasing(p_esco uuid, p_customer uuid DEFAULT NULL) RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT FROM gdpr.erasures AS e
                   WHERE e.transaction_id = pg_catalog.txid_current_if_assigned() AND e.esco = p_esco
                     AND (p_customer IS NULL OR e.customer_id = p_customer))
$$;
COMMENT ON FUNCTION gdpr.erasing(uuid, uuid) IS
    'True inside the transaction that erases a customer of the ESCO (that customer, when given).';


-- What must be true before a customer is erased: one line per check. The
-- query returns one row (one text column: the reason, naming what to do) per
-- thing in the way, with {customer} for the customer's id.
CREATE TABLE gdpr.erasure_checks (
    name  text PRIMARY KEY,
    query text NOT NULL,
    hint  text NOT NULL,
    CONSTRAINT erasure_checks_query_names_customer CHECK (strpos(query, '{customer}') > 0)
);
COMMENT ON TABLE gdpr.erasure_checks IS
    'Why a customer cannot be erased yet (money owed, a statement open ...): a query per check, returning reasons.';

CREATE PROCEDURE gdpr.erasure_check(name text, query text, hint text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    EXECUTE pg_catalog.format('SELECT r::text FROM (%s) AS r LIMIT 0', gdpr.bind(query, 'r')) USING NULL::uuid;
    INSERT INTO gdpr.erasure_checks (name, query, hint) VALUES (name, query, hint);
END
$$;
COMMENT ON PROCEDURE gdpr.erasure_check(text, text, text) IS
    'Adds a check erasure must pass: a query returning a reason per obstacle ({customer}: the customer''s id).';

CREATE FUNCTION gdpr.erasure_refusals(p_customer uuid) RETURNS TABLE (check_name text, reason text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    item gdpr.erasure_checks;
BEGIN
    FOR item IN SELECT * FROM gdpr.erasure_checks AS c ORDER BY c.name LOOP
        RETURN QUERY EXECUTE pg_catalog.format('SELECT %L::text, r.reason::text, %L::text FROM (%s) AS r (reason)',
                                               item.name, item.hint, gdpr.bind(item.query, 'r'))
            USING p_customer;
    END LOOP;
END
$$;
COMMENT ON FUNCTION gdpr.erasure_refusals(uuid) IS 'Everything that stops the customer''s erasure now (none: erasable).';


-- The name an erased customer carries: stable, and telling nothing the id does not.
CREATE FUNCTION gdpr.pseudonym(p_customer uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 'Erased customer ' || left(p_customer::text, 8);

-- A regular expression matching any of a customer's identities as a whole
-- token (not inside a longer word or number), longest first, so that a full
-- name goes before a part of it. Null when there are none.
CREATE FUNCTION gdpr.identity_pattern(p_identities text[]) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN (SELECT '(?<![[:alnum:]_])(?:'
               || string_agg(regexp_replace(i, '([.^$*+?()[\]{}|\\-])', '\\\1', 'g'), '|'
                             ORDER BY length(i) DESC, i)
               || ')(?![[:alnum:]_])'
        FROM unnest(p_identities) AS i);
COMMENT ON FUNCTION gdpr.identity_pattern(text[]) IS
    'A case-insensitive pattern for any of the identities as a whole token (null: no identities).';

-- Free text with every match of the pattern (any case) replaced by the pseudonym.
CREATE FUNCTION gdpr.scrub(p_text text, p_pattern text, p_pseudonym text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN p_pattern IS NULL THEN p_text ELSE regexp_replace(p_text, p_pattern, p_pseudonym, 'gi') END;
COMMENT ON FUNCTION gdpr.scrub(text, text, text) IS 'p_text with the identities (gdpr.identity_pattern) replaced.';

-- The same inside every string value of a jsonb value (keys are left alone).
CREATE FUNCTION gdpr.scrub(p_value jsonb, p_pattern text, p_pseudonym text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_pattern IS NULL THEN p_value ELSE CASE jsonb_typeof(p_value)
        WHEN 'string' THEN to_jsonb(gdpr.scrub(p_value #>> '{}', p_pattern, p_pseudonym))
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(e.key, gdpr.scrub(e.value, p_pattern, p_pseudonym)), '{}')
                            FROM jsonb_each(p_value) AS e)
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(gdpr.scrub(e.value, p_pattern, p_pseudonym) ORDER BY e.n), '[]')
                           FROM jsonb_array_elements(p_value) WITH ORDINALITY AS e (value, n))
        ELSE p_value END END
$$;
COMMENT ON FUNCTION gdpr.scrub(jsonb, text, text) IS 'p_value with the identities replaced in every string value.';

-- A jsonb value with the value at a path replaced, unless it is missing or null.
CREATE FUNCTION gdpr.set_path(p_value jsonb, p_path text[], p_new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN p_value #> p_path IS NULL OR p_value #> p_path = 'null' THEN p_value
            ELSE jsonb_set(p_value, p_path, p_new, false) END;

-- The identities of a customer: the values of their customer row's personal
-- text columns (name, email, phone ...), now and in every copy the audit
-- trail kept (a changed email is still someone's email). Strings of fewer
-- than three characters are left out.
CREATE FUNCTION gdpr.identities(p_customer uuid) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    columns text[] := ARRAY(SELECT p.column_name FROM gdpr.personal_columns AS p
                            JOIN pg_catalog.pg_attribute AS a
                              ON a.attrelid = 'billing.customers'::regclass AND a.attname = p.column_name
                            WHERE p.relation = 'billing.customers' AND p.path = '{}' AND p.erase <> 'keep'
                              AND a.atttypid = 'text'::regtype);
    found text[];
BEGIN
    EXECUTE pg_catalog.format('SELECT ARRAY[%s] FROM billing.customers AS t WHERE t.id = $1',
                              (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I::text', c), ', ')
                               FROM unnest(columns) AS c))
        INTO found USING p_customer;
    RETURN ARRAY(
        SELECT DISTINCT v FROM (
            SELECT unnest(found) AS v
            UNION ALL
            SELECT image ->> c
            FROM flows.audit_log AS a
            CROSS JOIN LATERAL (VALUES (a.before), (a.after)) AS i (image)
            CROSS JOIN unnest(columns) AS c
            WHERE a.relation = 'billing.customers' AND a.row_key = pg_catalog.jsonb_build_object('id', p_customer)
        ) AS x
        WHERE pg_catalog.length(pg_catalog.btrim(v)) >= 3 AND v <> gdpr.pseudonym(p_customer)
        ORDER BY v);
END
$$;
COMMENT ON FUNCTION gdpr.identities(uuid) IS
    'A customer''s names, emails and phones (the customer row''s personal columns), current and past.';


-- What erasure does to one column (or a value inside it) as SQL over the
-- value p_value (an SQL expression), with $2 the identity pattern and $3 the pseudonym.
CREATE FUNCTION gdpr.erased_value(p_value text, p_path text[], p_erase text, p_is_json boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
DECLARE
    replacement text := CASE p_erase
        WHEN 'pseudonym' THEN CASE WHEN p_is_json THEN 'pg_catalog.to_jsonb($3)' ELSE '$3' END
        WHEN 'null' THEN CASE WHEN p_is_json THEN '''null''::jsonb' ELSE 'NULL' END
        WHEN 'redact' THEN CASE WHEN p_is_json THEN '''"[erased]"''::jsonb' ELSE '''[erased]''' END
    END;
BEGIN
    IF p_erase = 'scrub' THEN
        RETURN CASE WHEN p_path = '{}' THEN pg_catalog.format('gdpr.scrub(%s, $2, $3)', p_value)
                    ELSE pg_catalog.format('gdpr.set_path(%1$s, %2$L, gdpr.scrub(%1$s #> %2$L, $2, $3))',
                                           p_value, p_path) END;
    END IF;
    IF replacement IS NULL THEN
        RAISE EXCEPTION 'cannot erase a value with %', p_erase USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_path = '{}' THEN
        RETURN CASE WHEN p_erase = 'null' THEN replacement
                    ELSE pg_catalog.format('CASE WHEN %s IS NULL THEN NULL ELSE %s END', p_value, replacement) END;
    END IF;
    RETURN pg_catalog.format('gdpr.set_path(%s, %L, %s)', p_value, p_path, replacement);
END
$$;

-- Erases the customer's rows of one registered table; returns what it did,
-- e.g. {"updated": 2} or {"deleted": 1}.
CREATE FUNCTION gdpr.erase_rows(p_relation text, p_customer uuid, p_pattern text, p_pseudonym text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    entry gdpr.personal_data;
    assignments text;
    changed text;
    n bigint;
BEGIN
    SELECT * INTO entry FROM gdpr.personal_data AS p WHERE p.relation = p_relation;
    IF EXISTS (SELECT FROM gdpr.personal_columns AS c WHERE c.relation = p_relation AND c.erase = 'delete_row') THEN
        EXECUTE pg_catalog.format('DELETE FROM %s AS t WHERE %s', entry.relation, gdpr.bind(entry.subject, 't'))
            USING p_customer;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN pg_catalog.jsonb_build_object('deleted', n);
    END IF;
    -- one assignment per column, its entries (whole value, values inside it) applied in turn
    WITH entries AS (
        SELECT c.column_name, c.path, c.erase, pg_catalog.format_type(a.atttypid, NULL) IN ('jsonb', 'json') AS is_json,
               row_number() OVER (PARTITION BY c.column_name ORDER BY c.path) AS step
        FROM gdpr.personal_columns AS c
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = entry.relation::regclass AND a.attname = c.column_name
        WHERE c.relation = p_relation AND c.erase <> 'keep'
    ),
    folded AS (
        WITH RECURSIVE f (column_name, step, expression) AS (
            SELECT e.column_name, 0::bigint, pg_catalog.format('t.%I', e.column_name)
            FROM entries AS e WHERE e.step = 1
            UNION ALL
            SELECT e.column_name, e.step, gdpr.erased_value(f.expression, e.path, e.erase, e.is_json)
            FROM f JOIN entries AS e ON e.column_name = f.column_name AND e.step = f.step + 1
        )
        SELECT DISTINCT ON (f.column_name) f.column_name, f.expression FROM f ORDER BY f.column_name, f.step DESC
    )
    SELECT pg_catalog.string_agg(pg_catalog.format('%I = %s', f.column_name, f.expression), ', '),
           pg_catalog.string_agg(pg_catalog.format('t.%I IS DISTINCT FROM %s', f.column_name, f.expression), ' OR ')
    INTO assignments, changed
    FROM folded AS f;
    IF assignments IS NULL THEN
        RETURN pg_catalog.jsonb_build_object('updated', 0);
    END IF;
    EXECUTE pg_catalog.format('UPDATE %s AS t SET %s WHERE (%s) AND (%s)', entry.relation, assignments,
                              gdpr.bind(entry.subject, 't'), changed)
        USING p_customer, p_pattern, p_pseudonym;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN pg_catalog.jsonb_build_object('updated', n);
END
$$;
COMMENT ON FUNCTION gdpr.erase_rows(text, uuid, text, text) IS
    'Pseudonymises (or deletes) the customer''s rows of a registered table by its registry entries.';

-- A row copy (an audit image) of a registered table, erased as the table's
-- rows are, then scrubbed of the identities wherever else they appear.
CREATE FUNCTION gdpr.erased_image(p_relation text, p_image jsonb, p_pattern text, p_pseudonym text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    entry gdpr.personal_columns;
    image jsonb := p_image;
BEGIN
    IF image IS NULL THEN
        RETURN NULL;
    END IF;
    FOR entry IN SELECT * FROM gdpr.personal_columns AS c WHERE c.relation = p_relation AND c.erase <> 'keep' LOOP
        image := gdpr.set_path(image, entry.column_name || entry.path, CASE entry.erase
            WHEN 'pseudonym' THEN pg_catalog.to_jsonb(p_pseudonym)
            WHEN 'redact' THEN '"[erased]"'::jsonb
            WHEN 'scrub' THEN gdpr.scrub(image #> (entry.column_name || entry.path), p_pattern, p_pseudonym)
            ELSE 'null'::jsonb END);
    END LOOP;
    RETURN gdpr.scrub(image, p_pattern, p_pseudonym);
END
$$;

-- The audit trail's rows about a customer: copies of their rows of every
-- registered table whose history is theirs (by the registry's conditions, on
-- the row before or after the change), and what they did themselves (the
-- actor is one of their identities).
CREATE FUNCTION gdpr.audit_entries(p_customer uuid) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    entry gdpr.personal_data;
    esco_id uuid := (SELECT c.esco FROM billing.customers AS c WHERE c.id = p_customer);
    actors text[] := gdpr.identities(p_customer) || p_customer::text;
BEGIN
    -- one statement per table, the copies read as rows of the table: the condition's subqueries run once
    FOR entry IN SELECT * FROM gdpr.personal_data AS p WHERE p.history ORDER BY p.relation LOOP
        RETURN QUERY EXECUTE pg_catalog.format(
            'SELECT DISTINCT a.id FROM flows.audit_log AS a'
            ' CROSS JOIN LATERAL (VALUES (a.before), (a.after)) AS i (image)'
            ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%2$s, i.image) AS t'
            ' WHERE a.relation = %1$L AND a.esco = $2 AND i.image IS NOT NULL AND (%3$s)',
            entry.relation, entry.relation, gdpr.bind(entry.subject, 't'))
            USING p_customer, esco_id;
    END LOOP;
    RETURN QUERY SELECT a.id FROM flows.audit_log AS a
                 WHERE a.esco = esco_id AND a.actor_sub = ANY (actors);
END
$$;
COMMENT ON FUNCTION gdpr.audit_entries(uuid) IS
    'Ids of the audit rows about a customer (copies of their registered rows) or made by them.';

-- Pseudonymises the audit trail of the customer's ESCO: the copies of their
-- rows, and any copy or actor that mentions one of their identities. Allowed
-- by flows.refuse_audit_change only because this transaction recorded the
-- erasure. Returns the number of audit rows changed.
CREATE FUNCTION gdpr.erase_audit_copies(p_customer uuid, p_pattern text, p_pseudonym text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := (SELECT c.esco FROM billing.customers AS c WHERE c.id = p_customer);
    about bigint[] := ARRAY(SELECT gdpr.audit_entries(p_customer));
    n bigint;
BEGIN
    WITH erased AS (
        SELECT a.id,
               CASE WHEN a.id = ANY (about) THEN gdpr.erased_image(a.relation, a.before, p_pattern, p_pseudonym)
                    ELSE gdpr.scrub(a.before, p_pattern, p_pseudonym) END AS before,
               CASE WHEN a.id = ANY (about) THEN gdpr.erased_image(a.relation, a.after, p_pattern, p_pseudonym)
                    ELSE gdpr.scrub(a.after, p_pattern, p_pseudonym) END AS after,
               gdpr.scrub(a.actor_sub, p_pattern, p_pseudonym) AS actor_sub
        FROM flows.audit_log AS a
        WHERE a.esco = esco_id
          AND (a.id = ANY (about)
               OR concat_ws(' ', a.before::text, a.after::text, a.actor_sub) ~* p_pattern)
    )
    UPDATE flows.audit_log AS a
    SET before = e.before, after = e.after, actor_sub = e.actor_sub
    FROM erased AS e
    WHERE a.id = e.id
      AND (a.before, a.after, a.actor_sub) IS DISTINCT FROM (e.before, e.after, e.actor_sub);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Waits for billing runs that could be freezing the customer's name into a
-- statement, and keeps new ones waiting until this transaction ends: the
-- advisory lock api.create_billing_run takes per ESCO and month (same key),
-- for every month from the customer's first link to now.
CREATE FUNCTION gdpr.hold_billing_runs(p_customer billing.customers) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('billing_run:' || p_customer.esco || m.month, 0))
    FROM (SELECT flows.uk_month(flows.uk_day(min(ca.start_time))) AS first
          FROM billing.customer_accounts AS ca WHERE ca.customer_id = p_customer.id) AS f
    CROSS JOIN LATERAL generate_series(f.first, flows.uk_month(flows.uk_day(pg_catalog.now())), interval '1 month')
        AS g (at)
    CROSS JOIN LATERAL (SELECT g.at::date AS month) AS m
    ORDER BY m.month;
END
$$;


CREATE FUNCTION gdpr.erase_customer(p_customer uuid, p_reference text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    customer billing.customers := gdpr.customer_for(p_customer, 'erase');
    erasure gdpr.erasures;
    refusals jsonb;
    pattern text;
    pseudonym text := gdpr.pseudonym(p_customer);
    changed jsonb := '{}'::jsonb;
    relation text;
    audit_rows bigint;
    outcome jsonb;
BEGIN
    PERFORM gdpr.hold_billing_runs(customer);
    PERFORM FROM billing.customers AS c WHERE c.id = p_customer FOR UPDATE;
    SELECT * INTO erasure FROM gdpr.erasures AS e WHERE e.customer_id = p_customer;
    IF erasure.id IS NOT NULL THEN  -- erased before: nothing left to do
        RETURN erasure.summary || pg_catalog.jsonb_build_object('already_erased', true);
    END IF;
    SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.check_name, r.reason) INTO refusals
    FROM gdpr.erasure_refusals(p_customer) AS r;
    IF refusals IS NOT NULL THEN
        RAISE EXCEPTION 'customer % cannot be erased yet: %', p_customer,
            (SELECT pg_catalog.string_agg(r ->> 'reason', '; ') FROM pg_catalog.jsonb_array_elements(refusals) AS r)
            USING ERRCODE = 'PT409', DETAIL = refusals::text,
                  HINT = (SELECT pg_catalog.string_agg(DISTINCT r ->> 'hint', '; ')
                          FROM pg_catalog.jsonb_array_elements(refusals) AS r);
    END IF;

    pattern := gdpr.identity_pattern(gdpr.identities(p_customer));
    INSERT INTO gdpr.erasures (esco, customer_id, pseudonym, reference, requested_by)
    VALUES (customer.esco, p_customer, pseudonym, p_reference, gdpr.requester())
    RETURNING * INTO erasure;
    FOR relation IN SELECT DISTINCT c.relation FROM gdpr.personal_columns AS c WHERE c.erase <> 'keep'
                    ORDER BY c.relation LOOP
        changed := changed || pg_catalog.jsonb_build_object(relation,
                                                            gdpr.erase_rows(relation, p_customer, pattern, pseudonym));
    END LOOP;
    UPDATE billing.customers AS c SET status = 'archived' WHERE c.id = p_customer AND c.status <> 'archived';
    audit_rows := gdpr.erase_audit_copies(p_customer, pattern, pseudonym);

    outcome := pg_catalog.jsonb_build_object(
        'customer_id', p_customer, 'pseudonym', pseudonym, 'erased_at', erasure.erased_at,
        'requested_by', erasure.requested_by,
        'reference', (SELECT e.reference FROM gdpr.erasures AS e WHERE e.id = erasure.id),  -- as scrubbed
        'changed', changed, 'audit_entries', audit_rows,
        'kept', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'relation', r.relation, 'rows', r.rows, 'retain_until', r.retain_until) ORDER BY r.relation)
                 FROM gdpr.kept(p_customer, (SELECT pg_catalog.count(*) FROM gdpr.audit_entries(p_customer))) AS r
                 WHERE r.rows > 0));
    UPDATE gdpr.erasures AS e SET summary = outcome WHERE e.id = erasure.id;
    RETURN outcome;
END
$$;
COMMENT ON FUNCTION gdpr.erase_customer(uuid, text) IS
    'Erases a customer: identity and contact data pseudonymised everywhere (audit copies too), financial records '
    'kept; refused (PT409) while a check of gdpr.erasure_checks stands in the way. Erasing again changes nothing.';

-- The processor may speak of an erased customer's payment later (a refund at
-- its dashboard, a dispute, a receipt updated): such an event is stored
-- erased, as the erasure left the others (the registry's entries for
-- billing.processor_events: the payer's details emptied). It is recognised
-- when it is matched to its payment (apply_processor_event_v1 records the
-- event, then names its payment). SECURITY DEFINER: the gateway's role does
-- not read erasures.
CREATE FUNCTION gdpr.erase_late_processor_event() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    pseudonym text;
BEGIN
    SELECT e.pseudonym INTO pseudonym
    FROM gdpr.erasures AS e
    JOIN billing.payments AS p ON p.customer_id = e.customer_id
    WHERE p.id = NEW.payment_id
       OR p.id = (SELECT r.payment_id FROM billing.refunds AS r WHERE r.id = NEW.refund_id);
    IF pseudonym IS NOT NULL THEN
        NEW := pg_catalog.jsonb_populate_record(NEW, gdpr.erased_image('billing.processor_events',
                                                                       pg_catalog.to_jsonb(NEW), NULL, pseudonym));
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION gdpr.erase_late_processor_event() IS
    'Stores a processor event about an erased customer''s payment or refund erased (the payer''s details emptied).';

CREATE TRIGGER processor_events_erased_payer BEFORE INSERT OR UPDATE OF payment_id, refund_id
    ON billing.processor_events
    FOR EACH ROW WHEN (NEW.payment_id IS NOT NULL OR NEW.refund_id IS NOT NULL)
    EXECUTE FUNCTION gdpr.erase_late_processor_event();

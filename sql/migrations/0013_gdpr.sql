-- 0013_gdpr: personal data. The gdpr schema holds the registry of where personal data lives
-- (read by the export, the erasure and the retention view), consents, erasures, the checks an erasure must
-- pass, and the functions; the api offers customer_data_export, erase_customer, record_consent, consents,
-- data_retention and erasures. Customers see half hours (and the reads behind them) only with consent.
-- Final statements' details and the audit trail's row copies may change in an erasing transaction only.

CREATE SCHEMA gdpr AUTHORIZATION flows_owner;
COMMENT ON SCHEMA gdpr IS
    'Personal data: its registry, consents, erasures, the export and erasure of a customer. Not exposed over HTTP.';

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/gdpr/registry.sql ----
-- Personal data: where Flows keeps data about a customer and what erasure does
-- to it, in one registry that the export (gdpr.customer_data), the erasure
-- (gdpr.erase_customer) and the retention view (gdpr.retention) all read. A
-- table holding data about customers joins with one line in
-- sql/schema/gdpr/personal_data.sql (and the same line in its migration):
--
--   CALL gdpr.register('billing.payments', subject => '{row}.customer_id = {customer}',
--                      personal => '{"description": "scrub"}',
--                      retain_until => '{row}.created_at + interval ''6 years''',
--                      retention => 'HMRC: payment records 6 years');
--
-- subject       which rows are about the customer: a condition on {row} (the table's row) and {customer}
--               (the customer's id)
-- personal      what erasure does to each column holding identity or contact data: "column" or
--               "column.key.key" (a value inside a jsonb column) -> one of
--                 pseudonym   the erasure's pseudonym ("Erased customer 3f9c0e0d"): names, NOT NULL columns
--                 null        emptied: email, phone, tokens
--                 redact      replaced by "[erased]" (free text that is not worth keeping)
--                 scrub       the customer's names, emails and phones (now and in the audit trail's past
--                             copies) replaced by the pseudonym inside free text: descriptions, reasons
--                 delete_row  the row is deleted (a copy that can be made again from pseudonymised data, or a
--                             message that is nothing without its address)
--                 keep: why   left as it is, saying why (e.g. a property's address belongs to the home)
-- retain_until  when the row may go: an expression on {row} (a date); null: kept with what it describes
-- retention     the rule in words, shown to the customer (api.data_retention)
-- omit          columns left out of the export (credentials, binary documents)
-- history       whether the audit trail's copies of these rows are about the customer (false for a property
--               or a meter: they outlive their occupants, and their changes are not the customer's data)
--
-- A column named like personal data (email, phone, fullname, address, recipient ...) in a table of any
-- schema must be registered, or declared not a person's with gdpr.not_personal: the view
-- gdpr.unregistered_personal_columns lists those that are neither, and the tests fail while it is not empty.

CREATE TABLE gdpr.personal_data (
    relation     text   PRIMARY KEY,
    subject      text   NOT NULL,
    retention    text   NOT NULL,
    retain_until text,
    omit         text[] NOT NULL DEFAULT '{}',
    history      boolean NOT NULL DEFAULT true,
    CONSTRAINT personal_data_subject_names_customer CHECK (strpos(subject, '{customer}') > 0),
    CONSTRAINT personal_data_retention_not_blank CHECK (btrim(retention) <> '')
);
COMMENT ON TABLE gdpr.personal_data IS
    'Tables holding data about a customer: which rows (subject), how long they are kept, what the export omits.';

CREATE TABLE gdpr.personal_columns (
    relation    text   NOT NULL REFERENCES gdpr.personal_data ON DELETE CASCADE,
    column_name text   NOT NULL,
    path        text[] NOT NULL DEFAULT '{}',
    erase       text   NOT NULL,
    note        text,
    PRIMARY KEY (relation, column_name, path),
    CONSTRAINT personal_columns_erase_valid
        CHECK (erase IN ('pseudonym', 'null', 'redact', 'scrub', 'delete_row', 'keep')),
    CONSTRAINT personal_columns_keep_says_why CHECK (erase <> 'keep' OR coalesce(btrim(note), '') <> ''),
    CONSTRAINT personal_columns_path_erasable CHECK (path = '{}' OR erase IN ('pseudonym', 'null', 'redact', 'scrub'))
);
COMMENT ON TABLE gdpr.personal_columns IS
    'Columns (or values inside jsonb columns) holding identity or contact data, and what erasure does to each.';

CREATE TABLE gdpr.not_personal (
    relation    text NOT NULL,
    column_name text NOT NULL,
    why         text NOT NULL,
    PRIMARY KEY (relation, column_name),
    CONSTRAINT not_personal_says_why CHECK (btrim(why) <> '')
);
COMMENT ON TABLE gdpr.not_personal IS
    'Columns named like personal data that hold no person''s data (an ESCO''s contact, a meter''s IP address).';


-- A registry condition or expression made runnable: {row} becomes the row's
-- alias, {customer} the first query parameter ($1).
CREATE FUNCTION gdpr.bind(p_template text, p_alias text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN replace(replace(p_template, '{row}', p_alias), '{customer}', '$1');


CREATE PROCEDURE gdpr.register(relation regclass, subject text, retention text, personal jsonb DEFAULT '{}',
                               retain_until text DEFAULT NULL, omit text[] DEFAULT '{}', history boolean DEFAULT true)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    item record;
    column_name text;
    erase text;
BEGIN
    -- the condition and the expression must run: checked now, not at the first erasure
    EXECUTE pg_catalog.format('SELECT %s FROM %s AS t WHERE %s LIMIT 0',
                              coalesce(gdpr.bind(retain_until, 't'), 'NULL'), relation, gdpr.bind(subject, 't'))
        USING NULL::uuid;
    INSERT INTO gdpr.personal_data (relation, subject, retention, retain_until, omit, history)
    VALUES (relation::text, subject, retention, retain_until, omit, history);
    FOR item IN SELECT p.key, p.value FROM pg_catalog.jsonb_each_text(personal) AS p LOOP
        column_name := pg_catalog.split_part(item.key, '.', 1);
        erase := pg_catalog.btrim(pg_catalog.split_part(item.value, ':', 1));
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = relation
                       AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION '% has no column %', relation, column_name
                USING ERRCODE = 'undefined_column', HINT = 'personal => {"column": "pseudonym | null | ..."}';
        END IF;
        INSERT INTO gdpr.personal_columns (relation, column_name, path, erase, note)
        VALUES (relation::text, column_name,
                (pg_catalog.string_to_array(item.key, '.'))[2:],
                erase, nullif(pg_catalog.btrim(pg_catalog.substr(item.value, pg_catalog.length(erase) + 2)), ''));
    END LOOP;
END
$$;
COMMENT ON PROCEDURE gdpr.register(regclass, text, text, jsonb, text, text[], boolean) IS
    'Registers a table holding data about customers: which rows, what erasure does to which columns, retention.';

CREATE PROCEDURE gdpr.not_personal(relation regclass, columns text[], why text)
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO gdpr.not_personal (relation, column_name, why)
    SELECT relation::text, c.name, why FROM unnest(columns) AS c (name);
END;
COMMENT ON PROCEDURE gdpr.not_personal(regclass, text[], text) IS
    'Declares columns named like personal data to hold no person''s data, saying why.';


-- Columns of Flows tables (owned by flows_owner, in any schema) whose names
-- say they hold personal data (email, phone, name, address, recipient ...), neither registered nor
-- declared not personal; and registry lines naming what does not exist. The
-- tests require it to be empty.
CREATE VIEW gdpr.unregistered_personal_columns WITH (security_invoker = true) AS
SELECT format('%I.%I', n.nspname, c.relname) AS relation, a.attname::text AS column_name,
       'looks like personal data: register it (gdpr.register) or say why it is not (gdpr.not_personal)' AS problem
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
  AND pg_catalog.pg_get_userbyid(c.relowner) = 'flows_owner'
  AND a.attname ~* ('(^|_)(e_?mail|emails|phone|phones|mobile|telephone|fullname|full_name|first_name|last_name|'
                    'surname|forename|given_name|family_name|address|addresses|postcode|post_code|recipient|'
                    'recipients|date_of_birth|birth_date|dob|national_insurance|ni_number|iban|sort_code|'
                    'account_holder|holder_name|payer_name|customer_name)($|_)')
  AND NOT EXISTS (SELECT FROM gdpr.personal_columns AS p
                  WHERE p.relation = format('%I.%I', n.nspname, c.relname) AND p.column_name = a.attname)
  AND NOT EXISTS (SELECT FROM gdpr.not_personal AS x
                  WHERE x.relation = format('%I.%I', n.nspname, c.relname) AND x.column_name = a.attname)
UNION ALL
SELECT r.relation, NULL, 'registered, but no such table'
FROM (SELECT p.relation FROM gdpr.personal_data AS p UNION SELECT x.relation FROM gdpr.not_personal AS x) AS r
WHERE to_regclass(r.relation) IS NULL
UNION ALL
SELECT r.relation, r.column_name, 'registered, but no such column'
FROM (SELECT p.relation, p.column_name FROM gdpr.personal_columns AS p
      UNION SELECT x.relation, x.column_name FROM gdpr.not_personal AS x) AS r
WHERE to_regclass(r.relation) IS NOT NULL
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = to_regclass(r.relation)
                  AND a.attname = r.column_name AND a.attnum > 0 AND NOT a.attisdropped);
COMMENT ON VIEW gdpr.unregistered_personal_columns IS
    'Columns that look like personal data but are in no registry, and registry lines naming nothing: must be empty.';

-- ---- schema/gdpr/access.sql ----
-- Who may ask for a customer's data. The export, erasure and retention
-- functions are SECURITY DEFINER (they read the audit trail, which customers
-- cannot, and erasure changes frozen rows), so they check the caller
-- themselves, by the rules the policies of billing.customers apply:
--   export   admins and workers every customer, operators their ESCO's, a customer themself
--   read     the same, and analysts their ESCO's (retention dates)
--   erase    admins, and operators their ESCO's
-- A superuser (the `flows gdpr` CLI on the embedded stack) may do all three.

-- The caller of a definer function: the role PostgREST (or a SQL session)
-- switched to, else the login. current_user is the definer's owner.
CREATE FUNCTION gdpr.caller() RETURNS name
LANGUAGE sql STABLE
RETURN CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role')::name END;
COMMENT ON FUNCTION gdpr.caller() IS 'The role calling a SECURITY DEFINER function (its SET ROLE, else the login).';

CREATE FUNCTION gdpr.caller_may(p_customer billing.customers, p_action text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    caller name := gdpr.caller();
BEGIN
    IF p_action NOT IN ('export', 'read', 'erase') THEN
        RAISE EXCEPTION 'unknown action %', p_action USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = caller)
       OR pg_catalog.pg_has_role(caller, 'flows_admin', 'USAGE') THEN
        RETURN true;
    END IF;
    IF p_action <> 'erase' AND pg_catalog.pg_has_role(caller, 'flows_service', 'USAGE') THEN
        RETURN true;
    END IF;
    IF pg_catalog.pg_has_role(caller, 'flows_operator', 'USAGE')
       OR (p_action = 'read' AND pg_catalog.pg_has_role(caller, 'flows_analyst', 'USAGE')) THEN
        RETURN p_customer.esco = flows.current_esco_id();
    END IF;
    IF p_action <> 'erase' AND pg_catalog.pg_has_role(caller, 'flows_customer', 'USAGE') THEN
        RETURN p_customer.id = flows.current_customer_id() AND p_customer.esco = flows.current_esco_id();
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION gdpr.caller_may(billing.customers, text) IS
    'Whether the caller may export (export), see the retention of (read) or erase (erase) a customer''s data.';

-- The customer, if the caller may act on them; otherwise the same refusal as
-- for an id that exists nowhere (PT404), so nobody learns another ESCO's ids.
CREATE FUNCTION gdpr.customer_for(p_customer uuid, p_action text) RETURNS billing.customers
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    found billing.customers;
BEGIN
    SELECT * INTO found FROM billing.customers AS c WHERE c.id = p_customer;
    IF found.id IS NULL OR NOT gdpr.caller_may(found, p_action) THEN
        RAISE EXCEPTION 'no customer %', coalesce(p_customer::text, 'null')
            USING ERRCODE = 'PT404', HINT = 'customer ids are listed at /customers';
    END IF;
    RETURN found;
END
$$;
COMMENT ON FUNCTION gdpr.customer_for(uuid, text) IS
    'The customer row when the caller may act on it, else PT404 (as for an id that exists nowhere).';

-- Who to record as having asked: the token's subject or email, else the caller.
CREATE FUNCTION gdpr.requester() RETURNS text
LANGUAGE sql STABLE
RETURN coalesce(flows.jwt_claims() ->> 'sub', flows.jwt_claims() ->> 'email', gdpr.caller()::text);
COMMENT ON FUNCTION gdpr.requester() IS 'Who asked: the token''s sub or email, else the calling role.';

-- ---- schema/gdpr/consents.sql ----
-- Consent: what a customer agreed to, when, and who recorded it. Each give or
-- withdraw is a new row (the history is the proof of consent, never
-- rewritten); the latest row per customer and purpose is in force. No row:
-- not given.
--
-- Purposes: half_hourly_data, the customer's half-hourly consumption (and the
-- cumulative reads it is derived from) used and shown beyond what billing
-- needs. Without it the customer's own API access shows daily and monthly
-- figures only (policies.sql); statements are computed either way (billing is
-- the contract).
CREATE TABLE gdpr.consents (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL,
    customer_id uuid        NOT NULL,
    purpose     text        NOT NULL DEFAULT 'half_hourly_data',
    given       boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by text        NOT NULL,
    source      text        NOT NULL,
    CONSTRAINT consents_id_esco_key UNIQUE (id, esco),
    CONSTRAINT consents_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT consents_purpose_valid CHECK (purpose IN ('half_hourly_data')),
    CONSTRAINT consents_source_valid CHECK (source IN ('customer', 'operator'))
);
COMMENT ON TABLE gdpr.consents IS
    'Consents given and withdrawn, one row each (the latest per customer and purpose is in force). '
    'source: the customer themself, or an operator recording it for them.';
COMMENT ON COLUMN gdpr.consents.purpose IS
    'half_hourly_data: half-hourly consumption (and the reads behind it) used and shown to the customer.';
CREATE INDEX consents_customer_idx ON gdpr.consents (customer_id, purpose, recorded_at DESC);

-- Whether a customer's consent for a purpose is in force now.
CREATE FUNCTION gdpr.has_consent(p_customer uuid, p_purpose text) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT c.given FROM gdpr.consents AS c
                     WHERE c.customer_id = p_customer AND c.purpose = p_purpose
                     ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1), false)
$$;
COMMENT ON FUNCTION gdpr.has_consent(uuid, text) IS 'The latest consent of the customer for the purpose (false: none).';

-- The half hours a customer token may see: the times the customer occupied
-- an account (tenants, owner-occupiers), when their half-hourly consent is in
-- force; none otherwise. A landlord who does not live there sees none: the
-- half hours are the occupier's. Read once per statement by the customer
-- policies of the readings tables (policies.sql).
CREATE FUNCTION gdpr.half_hourly_periods() RETURNS tstzmultirange
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN gdpr.has_consent(flows.current_customer_id(), 'half_hourly_data')
                THEN coalesce((SELECT range_agg(tstzrange(ca.start_time, ca.end_time))
                               FROM billing.customer_accounts AS ca
                               WHERE ca.customer_id = flows.current_customer_id() AND ca.role = 'occupier'),
                              '{}')
                ELSE '{}'::tstzmultirange END
$$;
COMMENT ON FUNCTION gdpr.half_hourly_periods() IS
    'For a customer token: the times they occupied a home, if their half-hourly consent is in force; else none.';

-- ---- schema/gdpr/subjects.sql ----
-- What a customer's supply was: the helpers the registry's conditions use to
-- find the meter data about a customer (sql/schema/gdpr/personal_data.sql).

-- The registers a customer paid for, and when: their payer periods
-- (billing.payer_periods: an occupier while they occupy, an owner while
-- nobody does) on the account's meter, within each register's life. The meter
-- data of those registers in those periods is the customer's consumption.
CREATE FUNCTION gdpr.supply_registers(p_customer uuid)
RETURNS TABLE (register_id uuid, meter_id uuid, period tstzrange)
LANGUAGE sql STABLE ROWS 4
AS $$
    SELECT r.register_id, a.meter_id, p.period * tstzrange(r.start_time, r.end_time)
    FROM billing.payer_periods AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    JOIN flows.meter_registers AS r ON r.meter_id = a.meter_id
    WHERE p.customer_id = p_customer AND p.period && tstzrange(r.start_time, r.end_time)
$$;
COMMENT ON FUNCTION gdpr.supply_registers(uuid) IS
    'Registers of the meters a customer paid for, with the periods they paid (payer periods within register life).';

-- The same per meter (prepay balances, top-ups).
CREATE FUNCTION gdpr.supply_meters(p_customer uuid) RETURNS TABLE (meter_id uuid, period tstzrange)
LANGUAGE sql STABLE ROWS 2
AS $$
    SELECT a.meter_id, p.period
    FROM billing.payer_periods AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    WHERE p.customer_id = p_customer AND a.meter_id IS NOT NULL
$$;
COMMENT ON FUNCTION gdpr.supply_meters(uuid) IS 'Meters a customer paid for, with the periods they paid.';

-- The customer's journals in the ledger: those of their payments, refunds,
-- top-ups and statements (a reversal carries the ids of the journal it
-- reverses). The ledger is kept per account, and an account outlives its
-- occupants: these, not the account's, are the customer's money.
CREATE FUNCTION gdpr.customer_journals(p_customer uuid) RETURNS TABLE (journal_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT j.id
    FROM billing.journals AS j
    WHERE j.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = p_customer)
       OR j.refund_id IN (SELECT r.id FROM billing.refunds AS r JOIN billing.payments AS p ON p.id = r.payment_id
                          WHERE p.customer_id = p_customer)
       OR j.topup_id IN (SELECT t.id FROM billing.topups AS t WHERE t.customer_id = p_customer)
       OR j.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = p_customer)
$$;
COMMENT ON FUNCTION gdpr.customer_journals(uuid) IS
    'Ledger journals about a customer: of their payments, refunds, top-ups and statements (and their reversals).';

-- ---- schema/gdpr/erasure.sql ----
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

-- ---- schema/gdpr/export.sql ----
-- Everything held about a customer (the right of access), and how long each
-- part is kept, from the registry (sql/schema/gdpr/registry.sql).

-- How long the customer's rows of each registered table are kept: how many
-- there are, the latest retention date among them (null: kept with what they
-- describe, or until erasure) and the rule in words; and the audit trail's
-- entries about them (p_audit_entries of them, counted by the caller, who
-- often has them already).
CREATE FUNCTION gdpr.kept(p_customer uuid, p_audit_entries bigint)
RETURNS TABLE (relation text, rows bigint, retain_until date, retention text)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    entry gdpr.personal_data;
BEGIN
    FOR entry IN SELECT * FROM gdpr.personal_data AS p ORDER BY p.relation LOOP
        RETURN QUERY EXECUTE pg_catalog.format('SELECT %L::text, count(*), max(%s)::date, %L::text FROM %s AS t WHERE %s',
                                               entry.relation, coalesce(gdpr.bind(entry.retain_until, 't'), 'NULL'),
                                               entry.retention, entry.relation, gdpr.bind(entry.subject, 't'))
            USING p_customer;
    END LOOP;
    RETURN QUERY SELECT 'flows.audit_log'::text, p_audit_entries, NULL::date,
                        'The ESCO''s record of who changed what (configuration and money): kept; the copies of the '
                        'customer''s rows in it are pseudonymised on erasure.'::text;
END
$$;
COMMENT ON FUNCTION gdpr.kept(uuid, bigint) IS
    'Per registered table: the customer''s rows, the latest date they are kept until, and the rule.';

-- The same for whoever may see the customer (api.data_retention).
CREATE FUNCTION gdpr.retention(p_customer uuid)
RETURNS TABLE (relation text, rows bigint, retain_until date, retention text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    PERFORM gdpr.customer_for(p_customer, 'read');
    RETURN QUERY SELECT * FROM gdpr.kept(p_customer, (SELECT pg_catalog.count(*) FROM gdpr.audit_entries(p_customer)));
END
$$;
COMMENT ON FUNCTION gdpr.retention(uuid) IS
    'Per registered table: the customer''s rows, the latest date they are kept until, and the rule (who may see '
    'the customer may ask).';


-- The export: one JSON document with the customer's rows of every registered
-- table (less the columns the registry omits: credentials, binary documents),
-- the audit trail's entries about them, their consents and the retention of
-- each part. STABLE: it only reads (GET /rpc/customer_data_export works).
CREATE FUNCTION gdpr.customer_data(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    customer billing.customers := gdpr.customer_for(p_customer, 'export');
    about bigint[] := ARRAY(SELECT gdpr.audit_entries(p_customer));
    entry gdpr.personal_data;
    found jsonb;
    tables jsonb := '{}'::jsonb;
BEGIN
    FOR entry IN SELECT * FROM gdpr.personal_data AS p ORDER BY p.relation LOOP
        EXECUTE pg_catalog.format('SELECT coalesce(jsonb_agg(to_jsonb(t) - $2 ORDER BY to_jsonb(t)::text), ''[]'')'
                                  ' FROM %s AS t WHERE %s', entry.relation, gdpr.bind(entry.subject, 't'))
            INTO found USING p_customer, entry.omit;
        tables := tables || pg_catalog.jsonb_build_object(entry.relation, found);
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'format', 'flows.customer_data_export/1',
        'customer_id', customer.id,
        'generated_at', pg_catalog.now(),
        'requested_by', gdpr.requester(),
        'controller', (SELECT pg_catalog.jsonb_build_object('code', e.code, 'name', coalesce(b.legal_name, e.name),
                                                            'address', b.address, 'email', b.email, 'phone', b.phone)
                       FROM flows.escos AS e LEFT JOIN billing.esco_billing AS b ON b.esco = e.id
                       WHERE e.id = customer.esco),
        'consents', (SELECT pg_catalog.jsonb_object_agg(p.purpose, gdpr.has_consent(customer.id, p.purpose))
                     FROM (SELECT DISTINCT c.purpose FROM gdpr.consents AS c WHERE c.customer_id = customer.id
                           UNION SELECT 'half_hourly_data') AS p),
        'tables', tables,
        'audit_log', (SELECT coalesce(pg_catalog.jsonb_agg(
                                          pg_catalog.to_jsonb(a) - '{db_user,transaction_id}'::text[]
                                          || pg_catalog.jsonb_build_object('before', a.before - coalesce(p.omit, '{}'),
                                                                           'after', a.after - coalesce(p.omit, '{}'))
                                          ORDER BY a.id), '[]')
                      FROM flows.audit_log AS a
                      LEFT JOIN gdpr.personal_data AS p ON p.relation = a.relation
                      WHERE a.id = ANY (about)),
        'retention', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.relation)
                      FROM gdpr.kept(customer.id, pg_catalog.cardinality(about)) AS r));
END
$$;
COMMENT ON FUNCTION gdpr.customer_data(uuid) IS
    'Everything held about a customer as one JSON document: their rows of every registered table, the audit '
    'entries about them, their consents, and how long each part is kept.';

-- ---- schema/audit.sql: erasure may pseudonymise the audit trail's row copies ----
CREATE OR REPLACE FUNCTION flows.refuse_audit_change() RETURNS trigger
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

-- ---- schema/billing/statements.sql: and what a final statement prints ----
CREATE OR REPLACE FUNCTION billing.guard_final_invoice() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'final' AND NEW.status = 'void'
       AND (to_jsonb(NEW) - 'status') = (to_jsonb(OLD) - 'status') THEN
        RETURN NEW;
    END IF;
    -- erasing the customer (gdpr.erase_customer) pseudonymises what the statement prints
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - '{details,reason}'::text[]) = (to_jsonb(OLD) - '{details,reason}'::text[]) THEN
        IF gdpr.erasing(OLD.esco, OLD.customer_id) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% % is % and cannot be changed', replace(OLD.kind, '_', ' '), OLD.number, OLD.status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
END
$$;

-- ---- rpc/gdpr.sql ----
-- Data-subject requests over HTTP: export everything held about a customer,
-- erase them, their consents and how long their data is kept. The work is
-- done in the gdpr schema (sql/schema/gdpr/), which checks who may ask.

CREATE FUNCTION api.customer_data_export(customer_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
RETURN gdpr.customer_data(customer_id);
COMMENT ON FUNCTION api.customer_data_export(uuid) IS
    'Everything held about a customer, as one JSON document: their rows of every table the personal-data '
    'registry names (customer, accounts and links, contracts, tariffs, statements and lines, documents'' '
    'metadata, the property, meter and readings of their supply while they paid for it, consents), the '
    'audit entries about them and how long each part is kept. Operators of the customer''s ESCO, admins, '
    'and the customer themself.';

CREATE FUNCTION api.erase_customer(customer_id uuid, reference text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql
RETURN gdpr.erase_customer(customer_id, reference);
COMMENT ON FUNCTION api.erase_customer(uuid, text) IS
    'Erases a customer: name, email and phone pseudonymised everywhere (statements'' printed details and the '
    'audit trail''s copies included; statement PDFs deleted, to be rendered again), financial records kept '
    'until their retention date. Refused (409) while money is owed, a statement is open or they are still '
    'supplied, saying why. reference: the request''s reference, kept with the erasure. Operators and admins.';

CREATE VIEW api.consents WITH (security_invoker = true) AS
SELECT id, esco, customer_id, purpose, given, recorded_at, recorded_by, source,
       row_number() OVER (PARTITION BY customer_id, purpose ORDER BY recorded_at DESC, id DESC) = 1 AS in_force
FROM gdpr.consents;
COMMENT ON VIEW api.consents IS
    'Consents given and withdrawn (one row each; in_force: the latest of its customer and purpose). '
    'half_hourly_data: without it a customer''s own access shows daily and monthly figures, not half hours. '
    'Record one with rpc/record_consent.';
COMMENT ON COLUMN api.consents.source IS 'customer: given or withdrawn by the customer; operator: recorded for them.';

CREATE FUNCTION api.record_consent(given boolean, purpose text DEFAULT 'half_hourly_data', customer_id uuid DEFAULT NULL)
RETURNS SETOF api.consents
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    own uuid := flows.current_customer_id();
    customer billing.customers;
BEGIN
    IF record_consent.given IS NULL THEN
        RAISE EXCEPTION 'given must be true (give consent) or false (withdraw it)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO customer FROM billing.customers AS c
    WHERE c.id = coalesce(record_consent.customer_id, own) AND (own IS NULL OR c.id = own);
    IF customer.id IS NULL THEN
        RAISE EXCEPTION 'no customer %', coalesce(record_consent.customer_id::text, 'given')
            USING ERRCODE = 'PT404', HINT = 'pass customer_id (a customer token records its own consent)';
    END IF;
    -- what is in force already changes nothing
    IF (SELECT c.given FROM gdpr.consents AS c
        WHERE c.customer_id = customer.id AND c.purpose = record_consent.purpose
        ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1) IS DISTINCT FROM record_consent.given THEN
        INSERT INTO gdpr.consents (esco, customer_id, purpose, given, recorded_by, source)
        VALUES (customer.esco, customer.id, record_consent.purpose, record_consent.given, flows.requester(),
                CASE WHEN own IS NULL THEN 'operator' ELSE 'customer' END);
    END IF;
    RETURN QUERY SELECT * FROM api.consents AS c
                 WHERE c.customer_id = customer.id AND c.purpose = record_consent.purpose AND c.in_force;
END
$$;
COMMENT ON FUNCTION api.record_consent(boolean, text, uuid) IS
    'Gives (given true) or withdraws (false) a consent: a customer token for itself, an operator for a customer '
    'of the ESCO (customer_id). purpose: half_hourly_data. Recording what is in force already changes nothing.';

CREATE VIEW api.data_retention WITH (security_invoker = true) AS
SELECT c.id AS customer_id, c.esco, r.relation, r.rows, r.retain_until, r.retention
FROM billing.customers AS c
CROSS JOIN LATERAL gdpr.retention(c.id) AS r;
COMMENT ON VIEW api.data_retention IS
    'What is held about each customer, table by table: how many rows, the latest date they are kept until '
    '(null: kept with what they describe, or until erasure) and the rule. Filter with ?customer_id=eq.ID.';

CREATE VIEW api.erasures WITH (security_invoker = true) AS
SELECT id, esco, customer_id, pseudonym, reference, requested_by, erased_at, summary
FROM gdpr.erasures;
COMMENT ON VIEW api.erasures IS
    'Customers erased: when, by whom, for which request, their pseudonym and what changed (rpc/erase_customer).';

-- ---- schema/audit_registry.sql ----
-- Erasures of customers' personal data (who erased whom, when, why).
CALL flows.audit('gdpr.erasures');

-- ---- schema/gdpr/personal_data.sql ----
-- Where personal data lives: one line per table holding data about customers
-- (gdpr.register, schema/gdpr/registry.sql), read by the export, the erasure
-- and the retention view; columns named like personal data that are not a
-- person's (gdpr.not_personal); and what must be settled before an erasure
-- (gdpr.erasure_check, schema/gdpr/erasure.sql). Loaded after every table; a
-- new table adds its line here and the same line in its migration.
--
-- Retention: HMRC wants VAT records (statements, their lines, payments) for 6
-- years; a claim under a contract can be brought for 6 years after it ends
-- (Limitation Act 1980). Identity and contact data go at erasure; what stays
-- refers to the pseudonym only. Messages sent to a customer are kept a year
-- (enough to answer "did you tell me?"), and go at erasure.

-- The customer: identity and contact data (an open invitation ends with its token).
CALL gdpr.register('billing.customers', subject => '{row}.id = {customer}',
    personal => '{"fullname": "pseudonym", "email": "null", "phone": "null", "invite_token": "null",'
                ' "invite_expires_at": "null"}',
    omit => '{invite_token}',
    retain_until => '(SELECT max(i.period_end) FROM billing.invoices AS i WHERE i.customer_id = {row}.id)'
                    ' + interval ''6 years''',
    retention => 'Name, email and phone: until you ask us to erase them; the (pseudonymised) customer record as '
                 'long as the statements that refer to it (6 years after the last).');

-- Who stood behind which account when, their accounts and contracts, their tariffs.
CALL gdpr.register('billing.customer_accounts', subject => '{row}.customer_id = {customer}',
    retain_until => 'coalesce({row}.end_time, now())::date + interval ''6 years''',
    retention => 'Moves in and out with their reads: 6 years after the move-out (they explain the statements).');
CALL gdpr.register('billing.accounts',
    subject => '{row}.id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca WHERE ca.customer_id = {customer})',
    retention => 'The property''s account: kept with the property (the next occupant is billed on it).');
CALL gdpr.register('billing.contracts', subject => '{row}.customer_id = {customer}',
    retain_until => 'coalesce({row}.end_date, now()::date) + interval ''6 years''',
    retention => 'Contracts: 6 years after they end (Limitation Act 1980).');
CALL gdpr.register('billing.customer_tariffs', subject => '{row}.customer_id = {customer}',
    retain_until => '{row}.effective_to::date + interval ''6 years''',
    retention => 'Your rates: 6 years after they ended (they price the statements).');

-- Statements: VAT records. The frozen details print the name and email; the
-- PDF is deleted and rendered again from the pseudonymised statement.
CALL gdpr.register('billing.invoices', subject => '{row}.customer_id = {customer}',
    personal => '{"details.customer.fullname": "pseudonym", "details.customer.email": "null", "reason": "scrub"}',
    retain_until => '{row}.period_end + interval ''6 years''',
    retention => 'Statements and credit notes: 6 years after the period they cover (HMRC: VAT records).');
CALL gdpr.register('billing.invoice_lines',
    subject => '{row}.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = {customer})',
    retain_until => '(SELECT i.period_end FROM billing.invoices AS i WHERE i.id = {row}.invoice_id)'
                    ' + interval ''6 years''',
    retention => 'Statement lines: with their statement (HMRC: VAT records, 6 years).');
CALL gdpr.register('billing.invoice_documents',
    subject => '{row}.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = {customer})',
    personal => '{"content": "delete_row"}', omit => '{content}',
    retain_until => '(SELECT i.period_end FROM billing.invoices AS i WHERE i.id = {row}.invoice_id)'
                    ' + interval ''6 years''',
    retention => 'Statement PDFs: with their statement; erasure deletes them and they are rendered again '
                 'with the pseudonym.');

-- The home and the meter data of the supply they paid for, while they paid for it.
CALL gdpr.register('flows.properties',
    subject => '{row}.id IN (SELECT a.property FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    personal => '{"address": "keep: the home''s address; it stays with the property and its next occupants"}',
    history => false, retention => 'The property: kept with the community''s network.');
CALL gdpr.register('flows.meter_registry',
    subject => '{row}.id IN (SELECT a.meter_id FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    history => false, retention => 'The meter: kept with the property.');
CALL gdpr.register('flows.meter_registers',
    subject => '{row}.meter_id IN (SELECT a.meter_id FROM billing.accounts AS a JOIN billing.customer_accounts AS ca'
               ' ON ca.account_id = a.id WHERE ca.customer_id = {customer})',
    history => false, retention => 'The meter''s registers: kept with the meter.');
CALL gdpr.register('flows.register_interval_hh',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Half-hourly consumption: 6 years (it is what the statements bill); after erasure it refers to '
                 'the pseudonym only.');
CALL gdpr.register('flows.register_interval_daily',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.day), flows.uk_day_start({row}.day + 1)))',
    retain_until => '{row}.day + interval ''6 years''',
    retention => 'Daily consumption: 6 years.');
CALL gdpr.register('flows.register_interval_monthly',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND s.period && tstzrange(flows.uk_day_start({row}.month),'
               ' flows.uk_day_start(({row}.month + interval ''1 month'')::date)))',
    retain_until => '{row}.month + interval ''6 years''',
    retention => 'Monthly consumption: 6 years.');
CALL gdpr.register('flows.register_import',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Meter reads (import): 6 years.');
CALL gdpr.register('flows.register_export',
    subject => 'EXISTS (SELECT FROM gdpr.supply_registers({customer}) AS s WHERE s.register_id = {row}.register_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Meter reads (export): 6 years.');
CALL gdpr.register('flows.meter_prepay_balance',
    subject => 'EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s WHERE s.meter_id = {row}.meter_id'
               ' AND {row}."timestamp" >= lower(s.period) AND (upper_inf(s.period) OR {row}."timestamp" < upper(s.period)))',
    retain_until => '{row}."timestamp"::date + interval ''6 years''',
    retention => 'Credit on the meter: 6 years (the statements'' opening and closing balances).');
-- The pushes to their meter: every round of their top-ups (billing.topups
-- below) and tokens an operator sent by hand, with the meter's answers. The
-- tokens stay: they are the meter's credit codes, not the customer's identity,
-- and prove what the meter took.
CALL gdpr.register('flows.meter_commands',
    subject => '{row}.kind = ''send_token'' AND EXISTS (SELECT FROM gdpr.supply_meters({customer}) AS s'
               ' WHERE s.meter_id = {row}.meter_id AND s.period @> {row}.created_at)',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Tokens sent to your meter and its answers: 6 years (HMRC: the money they record).');

-- Money in: payments, refunds, what the processor told us about them, saved
-- ways to pay, top-ups, gifts, solar credit and the wallet. Money records: 6
-- years (HMRC), the figures and the processor's references unchanged (a
-- refund or a reconciliation needs them); free text that may name the
-- customer is scrubbed, and who asked (requested_by: a customer's own token
-- names them) too.
CALL gdpr.register('billing.payments', subject => '{row}.customer_id = {customer}',
    personal => '{"description": "scrub", "failure_reason": "scrub", "requested_by": "scrub",'
                ' "receipt_url": "null: the processor''s receipt page shows the payer''s email and card",'
                ' "provider_reference": "keep: the processor''s or bank''s reference: refunds and reconciliation need it"}',
    retain_until => 'coalesce({row}.received_at, {row}.created_at)::date + interval ''6 years''',
    retention => 'Payments: 6 years after they were made (HMRC: VAT records).');
CALL gdpr.register('billing.refunds',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})',
    personal => '{"reason": "scrub", "failure_reason": "scrub", "requested_by": "scrub"}',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Refunds: 6 years after they were made (HMRC).');
-- The processor's events carry what it knows of the payer (a charge's billing
-- details, the receipt email): emptied, and any other mention scrubbed. An
-- event arriving after the erasure is stored erased (gdpr.erase_late_processor_event).
CALL gdpr.register('billing.processor_events',
    subject => '{row}.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = {customer})'
               ' OR {row}.refund_id IN (SELECT r.id FROM billing.refunds AS r JOIN billing.payments AS p'
               ' ON p.id = r.payment_id WHERE p.customer_id = {customer})',
    personal => '{"payload": "scrub", "detail": "scrub",'
                ' "payload.data.object.billing_details": "null", "payload.data.object.receipt_email": "null",'
                ' "payload.data.object.shipping": "null", "payload.data.object.customer_details": "null",'
                ' "payload.data.object.receipt_url": "null"}',
    retain_until => '{row}.received_at::date + interval ''6 years''',
    retention => 'What the payment processor told us about your payments: 6 years (it proves what was paid); '
                 'the names, emails and addresses in it go at erasure.');
CALL gdpr.register('billing.payment_methods', subject => '{row}.customer_id = {customer}',
    personal => '{"label": "scrub",'
                ' "processor_customer": "keep: the processor''s id for the payer, needed to ask it to erase them too"}',
    retain_until => 'coalesce((SELECT max(p.created_at) FROM billing.payments AS p WHERE p.payment_method_id = {row}.id),'
                    ' {row}.created_at)::date + interval ''6 years''',
    retention => 'Your saved card or mandate (the processor''s references, never the card): 6 years after its last '
                 'payment.');
CALL gdpr.register('billing.topups', subject => '{row}.customer_id = {customer}',
    personal => '{"notes": "scrub", "reference": "scrub", "requested_by": "scrub"}',
    retain_until => '{row}.created_at::date + interval ''6 years''',
    retention => 'Top-ups of your meter: 6 years (HMRC: the money they record).');
CALL gdpr.register('billing.gifts',
    subject => '{row}.id IN (SELECT t.gift_id FROM billing.topups AS t WHERE t.customer_id = {customer})'
               ' OR EXISTS (SELECT FROM billing.payer_periods AS p WHERE p.customer_id = {customer}'
               ' AND p.account_id = {row}.account_id AND p.period @> {row}.scheduled_at)',
    personal => '{"reason": "scrub", "cancel_reason": "scrub", "requested_by": "scrub"}',
    retain_until => 'coalesce({row}.given_at, {row}.created_at)::date + interval ''6 years''',
    retention => 'Credit given to you: 6 years (HMRC).');
CALL gdpr.register('billing.solar_credits', subject => '{row}.customer_id = {customer}',
    retain_until => '{row}.month + interval ''6 years''',
    retention => 'Solar credit earned: 6 years (HMRC).');
CALL gdpr.register('billing.wallets',
    subject => '{row}.account_id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca'
               ' WHERE ca.customer_id = {customer})',
    history => false, retention => 'The account''s wallet (top-up settings): kept with the account.');
-- The ledger: append-only, never changed, erasure included. Its journals
-- refer to payments, top-ups and statements by id (erased there), so nothing
-- in it names the customer; a memo repeats a payment's reference or an
-- operator's reason for a gift or an adjustment.
CALL gdpr.register('billing.journals',
    subject => '{row}.id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)',
    personal => '{"memo": "keep: the books are append-only (HMRC: 6 years); a memo repeats a reference or an '
                'operator''s reason: write no names in them"}',
    retain_until => '{row}.posted_at::date + interval ''6 years''',
    retention => 'Your money in the ESCO''s books: 6 years (HMRC: accounting records).');
CALL gdpr.register('billing.journal_entries',
    subject => '{row}.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)',
    retain_until => '(SELECT j.posted_at FROM billing.journals AS j WHERE j.id = {row}.journal_id)::date'
                    ' + interval ''6 years''',
    retention => 'The lines of those journals: 6 years (HMRC).');

-- Notifications: their choices, and the messages sent to them (the outbox:
-- address, and parameters naming them). A message is kept a year, then goes;
-- at erasure it goes at once (its recipient is an address or nothing: there
-- is no pseudonym for it, and a message is not worth keeping without it).
CALL gdpr.register('flows.notification_preferences', subject => '{row}.customer_id = {customer}',
    retention => 'Your notification choices: as long as your customer record.');
CALL gdpr.register('flows.notification_outbox', subject => '{row}.customer_id = {customer}',
    personal => '{"recipient": "delete_row"}',
    retain_until => '{row}.created_at::date + interval ''1 year''',
    retention => 'Messages sent to you (email, text): a year; deleted at erasure.');

-- Consent and erasure records: the proof of what was agreed and done.
CALL gdpr.register('gdpr.consents', subject => '{row}.customer_id = {customer}',
    personal => '{"recorded_by": "scrub"}',
    retention => 'Your consents and withdrawals: kept as the proof of what you agreed to.');
CALL gdpr.register('gdpr.erasures', subject => '{row}.customer_id = {customer}',
    personal => '{"reference": "scrub"}',
    retention => 'The record that your data was erased: kept.');

-- Named like personal data, but no person's.
CALL gdpr.not_personal('billing.esco_billing', '{address,email,phone}',
    'the ESCO''s own contact details, printed on statements');
CALL gdpr.not_personal('flows.meter_registry', '{ip_address}', 'the meter''s modem address on the network');
CALL gdpr.not_personal('flows.notification_settings', '{operator_emails,operator_phones}',
    'the ESCO''s own staff contacts for operator alerts, not a customer''s: the ESCO keeps them in its settings '
    'and removes a person''s when they leave');


-- What must be settled before a customer is erased.
CALL gdpr.erasure_check('live',
    $$SELECT 'they are a live customer (status live)' FROM billing.customers AS c
      WHERE c.id = {customer} AND c.status = 'live'$$,
    hint => 'end their supply first: set them exiting and record the move-out (rpc/move_out)');
CALL gdpr.erasure_check('still_supplied',
    $$SELECT format('they are still the %s of account %s (since %s)', ca.role, a.account_number,
                    to_char(ca.start_time AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.customer_accounts AS ca JOIN billing.accounts AS a ON a.id = ca.account_id
      WHERE ca.customer_id = {customer} AND (ca.end_time IS NULL OR ca.end_time > now())$$,
    hint => 'record the move-out (rpc/move_out), or end their ownership (end_time of their customer_accounts row)');
CALL gdpr.erasure_check('statement_open',
    $$SELECT format('a statement of account %s for %s is open in the draft billing run %s', a.account_number,
                    to_char(i.period_start, 'FMMonth YYYY'), i.run_id)
      FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
      WHERE i.customer_id = {customer} AND i.status = 'draft'$$,
    hint => 'finalise the billing run (rpc/finalise_billing_run) so that the statement is issued');
CALL gdpr.erasure_check('not_billed',
    $$SELECT format('their supply on account %s is billed up to %s, not to their move-out at %s', a.account_number,
                    coalesce(to_char(b.billed_to AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'), 'nothing'),
                    to_char(upper(p.period) AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.payer_periods AS p JOIN billing.accounts AS a ON a.id = p.account_id
      CROSS JOIN LATERAL (SELECT max(i.period_to) AS billed_to FROM billing.invoices AS i
                          WHERE i.account_id = p.account_id AND i.customer_id = p.customer_id
                            AND i.kind = 'statement' AND i.status = 'final') AS b
      WHERE p.customer_id = {customer} AND a.type IN ('supply', 'ev') AND NOT upper_inf(p.period)
        AND upper(p.period) > coalesce(b.billed_to, lower(p.period))
      UNION ALL
      SELECT format('their statement %s of account %s for %s was credited and the month not billed again',
                    v.number, a.account_number, to_char(v.period_start, 'FMMonth YYYY'))
      FROM billing.invoices AS v JOIN billing.accounts AS a ON a.id = v.account_id
      WHERE v.customer_id = {customer} AND v.kind = 'statement' AND v.status = 'void'
        AND NOT EXISTS (SELECT FROM billing.invoices AS n
                        WHERE n.corrects = v.id AND n.kind = 'statement' AND n.status = 'final')$$,
    hint => 'bill the months up to the move-out (rpc/create_billing_run, then rpc/finalise_billing_run)');
-- Money: on an account billed as a credit meter, what they owe by the ledger
-- (their journals' customer credit: statements less what they paid), plus
-- statements issued before the ledger existed (not posted); on a prepayment
-- meter, a debt left on the meter (its own balance on their last statement:
-- there the customer credit is only money on its way to the meter). And what
-- is held for them, to put on the meter or pay back.
CALL gdpr.erasure_check('money_owed',
    $$SELECT format('account %s owes £%s (by the ledger: their statements less what they paid)', a.account_number,
                    o.owed)
      FROM (SELECT x.account_id, sum(x.amount) AS owed
            FROM (SELECT e.account_id, e.amount FROM billing.journal_entries AS e
                  WHERE e.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)
                    AND e.ledger_account = 'customer_credit'
                  UNION ALL
                  SELECT i.account_id, i.total FROM billing.invoices AS i
                  WHERE i.customer_id = {customer} AND i.status IN ('final', 'void') AND NOT i.prepay
                    AND i.total <> 0
                    AND NOT EXISTS (SELECT FROM billing.journals AS j
                                    WHERE j.invoice_id = i.id AND j.kind = 'statement_charge')) AS x
            GROUP BY x.account_id) AS o
      JOIN billing.accounts AS a ON a.id = o.account_id
      WHERE o.owed > 0
        AND EXISTS (SELECT FROM billing.invoices AS c WHERE c.account_id = o.account_id AND c.customer_id = {customer}
                    AND c.status <> 'draft' AND NOT c.prepay)
      UNION ALL
      SELECT format('statement %s of account %s: £%s owed on the prepayment meter', i.number, a.account_number,
                    -i.closing_balance)
      FROM billing.invoices AS i JOIN billing.accounts AS a ON a.id = i.account_id
      WHERE i.customer_id = {customer} AND i.kind = 'statement' AND i.status = 'final' AND i.prepay
        AND i.closing_balance < 0
        AND i.period_to = (SELECT max(l.period_to) FROM billing.invoices AS l
                           WHERE l.account_id = i.account_id AND l.customer_id = i.customer_id AND l.status = 'final')$$,
    hint => 'settle what is owed first: record their payment (rpc/record_payment), or the processor''s');
CALL gdpr.erasure_check('credit_held',
    $$SELECT format('£%s of theirs is held on account %s (received or given, not on the meter nor refunded)',
                    -sum(e.amount), a.account_number)
      FROM billing.journal_entries AS e JOIN billing.accounts AS a ON a.id = e.account_id
      WHERE e.journal_id IN (SELECT j.journal_id FROM gdpr.customer_journals({customer}) AS j)
        AND e.ledger_account = 'customer_credit'
      GROUP BY a.account_number
      HAVING sum(e.amount) < 0$$,
    hint => 'put it on their meter (their top-up), or pay it back (rpc/refund_payment)');
-- Money in flight: an erasure never races a payment, a refund or a top-up
-- (the processor's next event, the meter's answer would find the row changed
-- under them, and the money unsettled).
CALL gdpr.erasure_check('payment_in_flight',
    $$SELECT format('their %s payment of £%s is %s (since %s)', p.provider, p.amount, p.status,
                    to_char(coalesce(p.submitted_at, p.created_at) AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'))
      FROM billing.payments AS p
      WHERE p.customer_id = {customer} AND p.status IN ('pending', 'created', 'processing')$$,
    hint => 'wait until the processor settles it (succeeded or failed), or cancel it before it is submitted '
            '(rpc/cancel_payment)');
CALL gdpr.erasure_check('refund_in_flight',
    $$SELECT format('a refund of £%s of their payment %s is %s', r.amount, r.payment_id, r.status)
      FROM billing.refunds AS r JOIN billing.payments AS p ON p.id = r.payment_id
      WHERE p.customer_id = {customer} AND r.status IN ('pending', 'submitted')$$,
    hint => 'wait until the processor pays it back (the payments job)');
CALL gdpr.erasure_check('topup_unfinished',
    $$SELECT format('their %s top-up of £%s to meter %s %s%s', replace(t.source, '_', ' '), t.amount, m.serial,
                    CASE t.status WHEN 'wait_token_fetch' THEN 'is waiting for its token'
                                  WHEN 'wait_token_push' THEN 'is waiting to reach the meter'
                                  ELSE 'failed' END,
                    coalesce(' (' || coalesce(t.waiting_reason, t.last_error) || ')', ''))
      FROM billing.topups AS t JOIN flows.meter_registry AS m ON m.id = t.meter_id
      WHERE t.customer_id = {customer} AND t.status NOT IN ('completed', 'cancelled')$$,
    hint => 'let the worker put it on the meter, retry it (rpc/retry_topup) or cancel it (rpc/cancel_topup: a '
            'payment''s money then stays their credit, to pay back)');

-- ---- rls/privileges.sql ----
-- == Personal data (GDPR) ===================================================
-- The export, erasure and retention functions are SECURITY DEFINER and check
-- the caller themselves (schema/gdpr/access.sql); the api functions and
-- views over them are granted to who may ask.

GRANT USAGE ON SCHEMA gdpr
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Consents: everyone who sees a customer sees theirs; the customer and the
-- operators of their ESCO record them (rpc/record_consent); the half-hourly
-- gate reads them as the customer.
GRANT SELECT ON gdpr.consents, api.consents
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT ON gdpr.consents TO flows_admin, flows_operator, flows_customer;
GRANT EXECUTE ON FUNCTION
    gdpr.has_consent(uuid, text),
    gdpr.half_hourly_periods()
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT EXECUTE ON FUNCTION api.record_consent(boolean, text, uuid) TO flows_admin, flows_operator, flows_customer;
GRANT EXECUTE ON FUNCTION flows.requester() TO flows_customer;  -- who recorded a consent

-- The export: admins, workers, operators (their ESCO's customers), the customer themself.
GRANT EXECUTE ON FUNCTION gdpr.customer_data(uuid), api.customer_data_export(uuid)
    TO flows_admin, flows_operator, flows_service, flows_customer;
-- Retention dates: whoever sees the customer.
GRANT EXECUTE ON FUNCTION gdpr.retention(uuid)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT SELECT ON api.data_retention TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Erasure: admins and operators (their ESCO's customers); the erasures are read like the audit trail.
GRANT EXECUTE ON FUNCTION gdpr.erase_customer(uuid, text), api.erase_customer(uuid, text)
    TO flows_admin, flows_operator;
GRANT SELECT ON gdpr.erasures, api.erasures TO flows_admin, flows_operator;
-- The guard of final statements asks whether an erasure is under way (whoever may write statements).
GRANT EXECUTE ON FUNCTION gdpr.erasing(uuid, uuid) TO flows_admin, flows_operator, flows_service;
-- The one change the audit trail allows: erasure (run as the owner) pseudonymises row copies and actors.
GRANT UPDATE (before, after, actor_sub) ON flows.audit_log TO flows_owner;

-- ---- rls/policies.sql: customers' readings move to the GDPR section ----
ALTER POLICY register_import_visible_register ON flows.register_import TO flows_operator, flows_analyst;
ALTER POLICY register_export_visible_register ON flows.register_export TO flows_operator, flows_analyst;
ALTER POLICY register_interval_hh_visible_register ON flows.register_interval_hh TO flows_operator, flows_analyst;

-- == Personal data (GDPR) ===================================================

-- A customer's half hours, and the cumulative reads they are derived from:
-- their own meters', for the times they occupied the home, while their
-- half-hourly consent is in force (gdpr.half_hourly_periods, evaluated once
-- per statement). Daily and monthly figures stay visible without it.
CREATE POLICY register_interval_hh_customer ON flows.register_interval_hh FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));
CREATE POLICY register_import_customer ON flows.register_import FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));
CREATE POLICY register_export_customer ON flows.register_export FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));

-- Consents: recorded by the customer themself or an operator of their ESCO
-- (rpc/record_consent), never changed.
ALTER TABLE gdpr.consents ENABLE ROW LEVEL SECURITY;
CREATE POLICY consents_all ON gdpr.consents TO flows_admin, flows_service
    USING (true);
CREATE POLICY consents_own_esco ON gdpr.consents TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY consents_self ON gdpr.consents TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

-- Erasures: admins read every ESCO's, operators their own (written by gdpr.erase_customer only).
ALTER TABLE gdpr.erasures ENABLE ROW LEVEL SECURITY;
CREATE POLICY erasures_admin ON gdpr.erasures FOR SELECT TO flows_admin
    USING (true);
CREATE POLICY erasures_own_esco ON gdpr.erasures FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));

-- The registry and the erasure checks: no policy, only the SECURITY DEFINER
-- export, erasure and retention functions (owned by flows_owner) read them.
ALTER TABLE gdpr.personal_data ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.personal_columns ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.not_personal ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.erasure_checks ENABLE ROW LEVEL SECURITY;

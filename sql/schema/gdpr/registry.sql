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

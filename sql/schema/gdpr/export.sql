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

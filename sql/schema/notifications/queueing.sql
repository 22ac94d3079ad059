-- From events to messages. A rule's events function says what happened (one
-- flows.notification_event per thing to tell); flows.queue_notifications
-- turns each into messages for its audience (channels, preferences, quiet
-- hours, recipients), one statement for all of them; and
-- flows.run_notification_rules_v1 runs every rule, each on the window since
-- its last run.

-- One thing to tell: its ESCO, a key naming it within the rule (a meter and
-- the time it crossed, a statement, a rollout), the customer it is for (null
-- for the ESCO's operators), what the template shows, and the statement
-- whose PDF is attached (null: none).
CREATE TYPE flows.notification_event AS (
    esco        uuid,
    key         text,
    customer_id uuid,
    parameters  jsonb,
    invoice_id  uuid
);
COMMENT ON TYPE flows.notification_event IS
    'What a rule''s events function returns: esco, key (unique within the rule), customer_id (null: operators), '
    'parameters (for the template), invoice_id (its PDF attached).';


-- Queues the messages of a rule's events; returns how many were new.
-- Customers: each channel they chose (default email) for which they have an
-- address, unless they opted out of a rule that is not essential; texts wait
-- for the end of their quiet hours (theirs, else the ESCO's). Operators: each
-- of the ESCO's operator emails and phones, at once. Every message carries
-- the ESCO's name and contact for the template. The dedupe key (rule, event
-- key, channel, and for staff the recipient) makes queueing the same event
-- again change nothing.
CREATE FUNCTION flows.queue_notifications(p_rule text, p_events flows.notification_event[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    spec flows.notification_rules;
    queued integer;
BEGIN
    SELECT * INTO STRICT spec FROM flows.notification_rules AS r WHERE r.rule = p_rule;
    INSERT INTO flows.notification_outbox AS o
        (esco, rule, channel, recipient, customer_id, template, parameters, invoice_id, dedupe_key, send_after)
    SELECT d.esco, p_rule, d.channel, d.recipient, d.customer_id, p_rule,
           d.parameters || pg_catalog.jsonb_build_object(
               'esco_name', coalesce(b.legal_name, e.name), 'esco_email', b.email, 'esco_phone', b.phone,
               'esco_website', b.website),
           CASE WHEN d.channel = 'email' THEN d.invoice_id END,
           concat_ws('/', p_rule, d.key, d.channel, d.staff_recipient), d.send_after
    FROM (
        SELECT ev.esco, ev.key, ev.customer_id, ev.invoice_id, ch.channel,
               ev.parameters || pg_catalog.jsonb_build_object('customer_name', c.fullname) AS parameters,
               CASE ch.channel WHEN 'email' THEN c.email ELSE flows.phone_e164(c.phone) END AS recipient,
               NULL::text AS staff_recipient,
               CASE ch.channel
                   WHEN 'sms' THEN flows.after_quiet_hours(pg_catalog.now(), coalesce(p.sms_quiet_from, s.sms_quiet_from),
                                                           coalesce(p.sms_quiet_to, s.sms_quiet_to))
                   ELSE pg_catalog.now()
               END AS send_after
        FROM unnest(p_events) AS ev
        JOIN billing.customers AS c ON c.id = ev.customer_id AND c.esco = ev.esco AND c.status <> 'archived'
        JOIN flows.notification_settings AS s ON s.esco = ev.esco
        LEFT JOIN flows.notification_preferences AS p ON p.customer_id = c.id AND p.esco = c.esco
        CROSS JOIN LATERAL unnest(coalesce(p.channels, '{email}')) AS ch (channel)
        WHERE spec.audience = 'customer' AND (spec.essential OR NOT p_rule = ANY (coalesce(p.opted_out, '{}')))
        UNION ALL
        SELECT ev.esco, ev.key, NULL, ev.invoice_id, t.channel, ev.parameters, t.recipient, t.recipient,
               pg_catalog.now()
        FROM unnest(p_events) AS ev
        JOIN flows.notification_settings AS s ON s.esco = ev.esco
        CROSS JOIN LATERAL (SELECT 'email', x FROM unnest(s.operator_emails) AS x
                            UNION ALL
                            SELECT 'sms', x FROM unnest(s.operator_phones) AS x) AS t (channel, recipient)
        WHERE spec.audience = 'operators'
    ) AS d
    JOIN flows.escos AS e ON e.id = d.esco
    LEFT JOIN billing.esco_billing AS b ON b.esco = d.esco
    WHERE d.recipient IS NOT NULL
    ON CONFLICT (esco, dedupe_key) DO NOTHING;
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION flows.queue_notifications(text, flows.notification_event[]) IS
    'Queues the messages of a rule''s events for its audience (channels, opt-outs, quiet hours, recipients); '
    'returns how many were new (the dedupe key drops the rest).';


-- One pass of every enabled rule: each rule's events since its last run
-- (less its lookback; from active_since the first time) up to now, queued.
-- A rule another pass is running is skipped (its row is locked). A rule that
-- fails is recorded in last_error and returned with its error (the worker logs
-- it); its window is not advanced, so the next pass tries the same events
-- again; the other rules go on.
CREATE FUNCTION flows.run_notification_rules_v1()
RETURNS TABLE (rule text, queued integer, error text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    due flows.notification_rules;
    events flows.notification_event[];
BEGIN
    FOR due IN SELECT * FROM flows.notification_rules AS r WHERE r.enabled ORDER BY r.rule FOR UPDATE SKIP LOCKED LOOP
        rule := due.rule;
        queued := 0;
        error := NULL;
        BEGIN
            EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(e) FROM %s($1, $2) AS e', due.events::regproc)
                INTO events USING greatest(due.active_since, due.last_run_at - due.lookback), pg_catalog.now();
            queued := flows.queue_notifications(due.rule, coalesce(events, '{}'));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            error := SQLSTATE || ': ' || error;
        END;
        UPDATE flows.notification_rules AS r
        SET last_run_at = CASE WHEN error IS NULL THEN pg_catalog.now() ELSE r.last_run_at END,
            last_queued = queued, last_error = error
        WHERE r.rule = due.rule;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION flows.run_notification_rules_v1() IS
    'Runs every enabled notification rule on the window since its last run and queues the messages; returns per '
    'rule how many were queued, or its error (recorded in notification_rules.last_error).';

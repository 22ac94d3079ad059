-- 0012_notifications: notification rules, the outbox, an ESCO's settings and customers'
-- preferences, the senders' functions, the api views and RPCs, the exporter's backlog view
-- (docs/notifications.md).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/notifications/settings.sql ----
-- Notifications: who is told what, and how (docs/notifications.md).
-- The rules (rules.sql) turn what happened into messages in the outbox
-- (outbox.sql); the senders (workers/flows/notifications) deliver them.
-- This file: the registry of rules, an ESCO's settings and each customer's
-- preferences.

-- One row per rule: who it tells, whether a customer may opt out of it, and
-- the function that finds its events (SETOF flows.notification_event, from a
-- window start and now). Its template (templates/notifications/) has its name.
-- The run bookkeeping (last_*) is written by flows.run_notification_rules_v1.
CREATE TABLE flows.notification_rules (
    rule         text         PRIMARY KEY,
    audience     text         NOT NULL,
    essential    boolean      NOT NULL,
    description  text         NOT NULL,
    events       regprocedure NOT NULL,
    lookback     interval     NOT NULL DEFAULT '1 hour',
    enabled      boolean      NOT NULL DEFAULT true,
    active_since timestamptz  NOT NULL DEFAULT now(),
    last_run_at  timestamptz,
    last_queued  integer,
    last_error   text,
    CONSTRAINT notification_rules_rule_format CHECK (rule ~ '^[a-z][a-z0-9_]{2,40}$'),
    CONSTRAINT notification_rules_audience_valid CHECK (audience IN ('customer', 'operators')),
    -- staff may not opt out of what is sent to staff
    CONSTRAINT notification_rules_operators_essential CHECK (audience = 'customer' OR essential),
    CONSTRAINT notification_rules_lookback_range CHECK (lookback BETWEEN interval '0' AND interval '7 days')
);
COMMENT ON TABLE flows.notification_rules IS
    'Notification rules: audience (customer or the ESCO''s operators), essential (customers cannot opt out), the '
    'events function, and when each last ran. Template = rule name (templates/notifications/).';
COMMENT ON COLUMN flows.notification_rules.lookback IS
    'How far before its last run a rule looks again, for source rows committed late (the outbox''s dedupe key '
    'keeps what was already queued from being queued twice).';
COMMENT ON COLUMN flows.notification_rules.active_since IS
    'Nothing that happened before this is notified (set when the rule is created, so a deploy does not tell '
    'customers about last year''s statements).';


-- An address list: every element a plausible email address, or an E.164
-- phone number (+ then 7 to 15 digits).
CREATE FUNCTION flows.are_emails(addresses text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN NOT EXISTS (SELECT FROM unnest(addresses) AS a WHERE a !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$');

CREATE FUNCTION flows.are_phone_numbers(numbers text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN NOT EXISTS (SELECT FROM unnest(numbers) AS n WHERE n !~ '^\+[1-9][0-9]{6,14}$');

-- A UK phone number as customers write it (07700 900123, +44 7700 900123) in
-- E.164 (+447700900123), the form SMS gateways take; null when it is neither.
CREATE FUNCTION flows.phone_e164(phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT CASE WHEN d ~ '^\+[1-9][0-9]{6,14}$' THEN d
                    WHEN d ~ '^0[1-9][0-9]{8,9}$' THEN '+44' || substr(d, 2)
               END
        FROM (SELECT replace(phone, ' ', '') AS d) AS p);


-- Per ESCO: who its operators' messages go to, when a meter counts as
-- offline, and the quiet hours for texts to its customers. The low-balance
-- threshold is the ESCO's low_balance_threshold (flows.escos), the one the
-- meters_low_balance view and the dashboards use. A row per ESCO, made with it.
CREATE TABLE flows.notification_settings (
    esco            uuid        PRIMARY KEY REFERENCES flows.escos (id) ON DELETE CASCADE,
    operator_emails text[]      NOT NULL DEFAULT '{}',
    operator_phones text[]      NOT NULL DEFAULT '{}',
    offline_hours   integer     NOT NULL DEFAULT 6,
    sms_quiet_from  time        NOT NULL DEFAULT '21:00',
    sms_quiet_to    time        NOT NULL DEFAULT '08:00',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_settings_operator_emails_format CHECK (flows.are_emails(operator_emails)),
    CONSTRAINT notification_settings_operator_phones_format CHECK (flows.are_phone_numbers(operator_phones)),
    CONSTRAINT notification_settings_offline_hours_range CHECK (offline_hours BETWEEN 1 AND 720)
);
COMMENT ON TABLE flows.notification_settings IS
    'Per ESCO: operator recipients (emails, E.164 phones), hours without contact before a meter is reported '
    'offline, and the quiet hours (UK time) when no text goes to a customer.';

CREATE TRIGGER notification_settings_touch BEFORE UPDATE ON flows.notification_settings
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- A new ESCO gets its settings row (defaults), so operators PATCH it.
CREATE FUNCTION flows.create_notification_settings() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    INSERT INTO flows.notification_settings (esco) SELECT n.id FROM new_escos AS n;
    RETURN NULL;
END
$$;

CREATE TRIGGER escos_notification_settings AFTER INSERT ON flows.escos
    REFERENCING NEW TABLE AS new_escos
    FOR EACH STATEMENT EXECUTE FUNCTION flows.create_notification_settings();


-- A customer's choices: which channels, which messages they would rather not
-- get (only those that are not essential), and their own quiet hours for texts
-- (null: the ESCO's). No row: email only, everything, the ESCO's quiet hours.
CREATE TABLE flows.notification_preferences (
    customer_id    uuid        NOT NULL,
    esco           uuid        NOT NULL,
    channels       text[]      NOT NULL DEFAULT '{email}',
    opted_out      text[]      NOT NULL DEFAULT '{}',
    sms_quiet_from time,
    sms_quiet_to   time,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, esco),
    CONSTRAINT notification_preferences_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco) ON DELETE CASCADE,
    CONSTRAINT notification_preferences_channels_valid
        CHECK (channels <@ '{email,sms}' AND cardinality(channels) >= 1),
    CONSTRAINT notification_preferences_quiet_hours_both
        CHECK ((sms_quiet_from IS NULL) = (sms_quiet_to IS NULL))
);
COMMENT ON TABLE flows.notification_preferences IS
    'A customer''s notification choices: channels (email, sms), rules opted out of (not essential ones), quiet '
    'hours for texts (UK time; null: the ESCO''s).';

CREATE TRIGGER notification_preferences_touch BEFORE UPDATE ON flows.notification_preferences
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- Only customers' rules that are not essential can be opted out of.
CREATE FUNCTION flows.check_notification_preferences() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    refused text;
BEGIN
    SELECT string_agg(o.rule, ', ' ORDER BY o.rule) INTO refused
    FROM unnest(NEW.opted_out) AS o (rule)
    WHERE NOT EXISTS (SELECT FROM flows.notification_rules AS r
                      WHERE r.rule = o.rule AND r.audience = 'customer' AND NOT r.essential);
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'opted_out names % which cannot be opted out of', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'customers may opt out of: ' || coalesce((
                      SELECT string_agg(r.rule, ', ' ORDER BY r.rule) FROM flows.notification_rules AS r
                      WHERE r.audience = 'customer' AND NOT r.essential), 'nothing');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER notification_preferences_opt_outs BEFORE INSERT OR UPDATE OF opted_out
    ON flows.notification_preferences
    FOR EACH ROW EXECUTE FUNCTION flows.check_notification_preferences();

-- ---- schema/notifications/outbox.sql ----
-- The outbox: one row per message to one recipient on one channel, queued by
-- the rules (queueing.sql) and delivered by the senders (sending.sql): the
-- table is the queue, as for meter commands.
--
--   pending --claim--> sending --sent--> sent
--      ^                  | failed (attempts left): pending again at send_after + backoff
--      |                  | failed (refused, or the last attempt) --> dead (the dead letter)
--      +-- retry (rpc) ---+ lease ran out: claimed again (on the last attempt: dead)
--   pending --cancel (rpc)--> cancelled
--
-- dedupe_key names the message (rule, event, channel, and for staff the
-- recipient): unique per ESCO, so a message is queued once however often the
-- rules see its event, and delivered once except in the window between a
-- send and its record (docs/notifications.md).
CREATE TABLE flows.notification_outbox (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid        NOT NULL REFERENCES flows.escos (id),
    rule                text        NOT NULL REFERENCES flows.notification_rules (rule),
    channel             text        NOT NULL,
    recipient           text        NOT NULL,
    customer_id         uuid,
    template            text        NOT NULL,
    parameters          jsonb       NOT NULL DEFAULT '{}',
    invoice_id          uuid,
    dedupe_key          text        NOT NULL,
    status              text        NOT NULL DEFAULT 'pending',
    attempts            smallint    NOT NULL DEFAULT 0,
    max_attempts        smallint    NOT NULL DEFAULT 8,
    send_after          timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    provider_message_id text,
    lease_owner         text,
    lease_expires_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    claimed_at          timestamptz,
    sent_at             timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_outbox_id_esco_key UNIQUE (id, esco),
    CONSTRAINT notification_outbox_dedupe_key UNIQUE (esco, dedupe_key),
    CONSTRAINT notification_outbox_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT notification_outbox_invoice_esco_fkey
        FOREIGN KEY (invoice_id, esco) REFERENCES billing.invoices (id, esco),
    CONSTRAINT notification_outbox_channel_valid CHECK (channel IN ('email', 'sms')),
    CONSTRAINT notification_outbox_recipient_format
        CHECK (CASE channel WHEN 'email' THEN flows.are_emails(ARRAY[recipient])
                            ELSE flows.are_phone_numbers(ARRAY[recipient]) END),
    CONSTRAINT notification_outbox_status_valid CHECK (status IN ('pending', 'sending', 'sent', 'dead', 'cancelled')),
    CONSTRAINT notification_outbox_attempts_range CHECK (attempts BETWEEN 0 AND max_attempts AND max_attempts >= 1),
    CONSTRAINT notification_outbox_sent_when_sent CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    CONSTRAINT notification_outbox_leased_when_sending
        CHECK ((status = 'sending') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT notification_outbox_attachment_by_email CHECK (invoice_id IS NULL OR channel = 'email')
);
COMMENT ON TABLE flows.notification_outbox IS
    'Messages to send (email, sms): recipient, template and parameters, dedupe key (unique per ESCO), status '
    'pending/sending/sent/dead/cancelled, attempts, last error, the provider''s message id, when sent.';
COMMENT ON COLUMN flows.notification_outbox.invoice_id IS 'Attached: the PDF of this statement (invoice_documents).';
COMMENT ON COLUMN flows.notification_outbox.send_after IS
    'Not before: now, the end of the quiet hours for a text, or the next retry.';

-- The senders' claims: due messages of a channel, and leases that ran out.
CREATE INDEX notification_outbox_due_idx ON flows.notification_outbox (channel, send_after) WHERE status = 'pending';
CREATE INDEX notification_outbox_leased_idx ON flows.notification_outbox (channel, lease_expires_at)
    WHERE status = 'sending';
-- Operators' lists and the monitoring counts of what ended lately.
CREATE INDEX notification_outbox_esco_idx ON flows.notification_outbox (esco, created_at);
CREATE INDEX notification_outbox_ended_idx ON flows.notification_outbox (channel, updated_at)
    WHERE status IN ('sent', 'dead');
CREATE INDEX notification_outbox_customer_idx ON flows.notification_outbox (customer_id);
CREATE INDEX notification_outbox_invoice_idx ON flows.notification_outbox (invoice_id);

CREATE TRIGGER notification_outbox_touch BEFORE UPDATE ON flows.notification_outbox
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- The doorbell: new messages wake the senders at once (no payload: they claim
-- what is due; they also poll, and after a lost connection LISTEN again).
CREATE FUNCTION flows.ring_notification_senders() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('flows_notifications', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER notification_outbox_doorbell AFTER INSERT ON flows.notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION flows.ring_notification_senders();


-- When a text may go: ts itself, or (inside the quiet hours quiet_from to
-- quiet_to, UK local time, which may span midnight) the end of the quiet
-- hours. Equal or null bounds: no quiet hours.
CREATE FUNCTION flows.after_quiet_hours(ts timestamptz, quiet_from time, quiet_to time) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT CASE
        WHEN quiet_from IS NULL OR quiet_to IS NULL OR quiet_from = quiet_to THEN ts
        WHEN quiet_from < quiet_to AND l.t >= quiet_from AND l.t < quiet_to
            THEN (l.d + quiet_to) AT TIME ZONE 'Europe/London'
        WHEN quiet_from > quiet_to AND l.t >= quiet_from
            THEN (l.d + 1 + quiet_to) AT TIME ZONE 'Europe/London'
        WHEN quiet_from > quiet_to AND l.t < quiet_to
            THEN (l.d + quiet_to) AT TIME ZONE 'Europe/London'
        ELSE ts
    END
    FROM (SELECT (ts AT TIME ZONE 'Europe/London')::date AS d, (ts AT TIME ZONE 'Europe/London')::time AS t) AS l
$$;
COMMENT ON FUNCTION flows.after_quiet_hours(timestamptz, time, time) IS
    'ts, or the end of the quiet hours (UK local time, may span midnight) when ts falls inside them.';

-- ---- schema/notifications/queueing.sql ----
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

-- ---- schema/notifications/rules.sql ----
-- The rules: each is one function over the tables where its events happen,
-- returning flows.notification_event rows, and one row in
-- flows.notification_rules (at the end of this file). A rule that must
-- remember something between runs (a crossing, an outage) keeps it in a
-- table of its own here. Adding a rule: docs/notifications.md.

-- Who pays for a meter's supply at an instant: the occupier of its open
-- supply account then, else its owner (billing.payer_periods at one instant),
-- and the account's number. Plain SQL, no SET clause: inlined where it is used.
CREATE FUNCTION flows.meter_payer(p_meter_id uuid, p_at timestamptz)
RETURNS TABLE (customer_id uuid, account_number text)
LANGUAGE sql STABLE
AS $$
    SELECT ca.customer_id, a.account_number
    FROM billing.accounts AS a
    JOIN billing.customer_accounts AS ca ON ca.account_id = a.id AND ca.esco = a.esco
    WHERE a.meter_id = p_meter_id AND a.type = 'supply' AND a.status = 'open'
      AND ca.start_time <= p_at AND (ca.end_time IS NULL OR ca.end_time > p_at)
    ORDER BY ca.role = 'occupier' DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION flows.meter_payer(uuid, timestamptz) IS
    'The customer paying for a meter''s supply at an instant (occupier, else owner) and the account number.';


-- == low_balance: a prepay meter's balance fell below the ESCO's threshold ==
-- Once per crossing: each meter's last verdict (below or not) and how far
-- its recorded balances have been read. A crossing is a balance under the
-- threshold whose previous balance (or the last verdict) was not; a balance
-- at or over the threshold re-arms it. Balances come from
-- flows.meter_prepay_balance, as the worker records them; one recorded late,
-- older than what was already read, is not looked at.
CREATE TABLE flows.notification_balance_watch (
    meter_id         uuid        NOT NULL,
    esco             uuid        NOT NULL,
    below            boolean     NOT NULL,
    observed_through timestamptz NOT NULL,
    PRIMARY KEY (meter_id, esco),
    CONSTRAINT notification_balance_watch_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.notification_balance_watch IS
    'low_balance rule: per prepay meter, whether its last recorded balance was under the threshold, and the time '
    'of the last balance read.';

CREATE FUNCTION flows.low_balance_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH watched AS (  -- prepay meters with balances recorded since last read
        SELECT s.id AS meter_id, s.esco, e.low_balance_threshold AS threshold, w.below AS was_below,
               coalesce(w.observed_through, p_from) AS after
        FROM flows.meter_shadows AS s
        JOIN flows.meter_registry AS m ON m.id = s.id
        JOIN flows.escos AS e ON e.id = s.esco
        LEFT JOIN flows.notification_balance_watch AS w ON w.meter_id = s.id AND w.esco = s.esco
        WHERE m.prepay_enabled AND s.balance_updated_at > coalesce(w.observed_through, p_from)
    ),
    observed AS (
        SELECT x.meter_id, x.esco, x.threshold, b."timestamp" AS observed_at, b.balance, b.emergency_credit,
               b.balance < x.threshold AS below,
               coalesce(lag(b.balance < x.threshold) OVER (PARTITION BY x.meter_id ORDER BY b."timestamp"),
                        x.was_below, false) AS below_before,
               row_number() OVER (PARTITION BY x.meter_id ORDER BY b."timestamp" DESC) AS newest
        FROM watched AS x
        JOIN flows.meter_prepay_balance AS b
          ON b.meter_id = x.meter_id AND b."timestamp" > x.after AND b."timestamp" <= p_now
    ),
    noted AS (
        INSERT INTO flows.notification_balance_watch AS w (meter_id, esco, below, observed_through)
        SELECT o.meter_id, o.esco, o.below, o.observed_at FROM observed AS o WHERE o.newest = 1
        ON CONFLICT (meter_id, esco) DO UPDATE SET below = excluded.below, observed_through = excluded.observed_through
    )
    SELECT o.esco,
           o.meter_id::text || '/' || to_char(o.observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           p.customer_id,
           pg_catalog.jsonb_build_object(
               'meter_id', o.meter_id, 'serial', m.serial, 'meter_name', m.name, 'account_number', p.account_number,
               'balance', billing.round_half_up(o.balance, 2)::text, 'threshold', o.threshold::text,
               'emergency_credit', billing.round_half_up(o.emergency_credit, 2)::text,
               'observed_at', o.observed_at,
               'observed_at_uk', to_char(o.observed_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI')),
           NULL::uuid
    FROM observed AS o
    JOIN flows.meter_registry AS m ON m.id = o.meter_id
    CROSS JOIN LATERAL flows.meter_payer(o.meter_id, p_now) AS p
    WHERE o.below AND NOT o.below_before;
END
$$;
COMMENT ON FUNCTION flows.low_balance_events(timestamptz, timestamptz) IS
    'low_balance rule: each crossing under the ESCO''s low_balance_threshold recorded since the last run, for '
    'whoever pays for the meter now; remembers each meter''s verdict (notification_balance_watch).';


-- == statement_ready: a statement (or credit note) was issued and rendered ==
-- Its PDF (billing.invoice_documents) is attached to the email.
CREATE INDEX invoice_documents_rendered_idx ON billing.invoice_documents (rendered_at);

CREATE FUNCTION flows.statement_ready_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT i.esco, i.id::text, i.customer_id,
           pg_catalog.jsonb_build_object(
               'kind', i.kind, 'number', i.number, 'reference', e.code || '-' || lpad(i.number::text, 6, '0'),
               'account_number', a.account_number, 'period', to_char(i.period_start, 'FMMonth YYYY'),
               'issued_on', to_char(i.issued_at AT TIME ZONE 'Europe/London', 'FMDD FMMonth YYYY'),
               'total', i.total::text, 'prepay', i.prepay,
               'closing_balance', billing.round_half_up(i.closing_balance, 2)::text),
           i.id
    FROM billing.invoice_documents AS d
    JOIN billing.invoices AS i ON i.id = d.invoice_id AND i.esco = d.esco
    JOIN billing.accounts AS a ON a.id = i.account_id
    JOIN flows.escos AS e ON e.id = i.esco
    WHERE d.rendered_at >= p_from AND d.rendered_at <= p_now
      AND (i.status = 'final' OR i.kind = 'credit_note')
      AND NOT EXISTS (SELECT FROM flows.notification_outbox AS o
                      WHERE o.invoice_id = i.id AND o.rule = 'statement_ready')
$$;
COMMENT ON FUNCTION flows.statement_ready_events(timestamptz, timestamptz) IS
    'statement_ready rule: statements and credit notes whose PDF was stored in the window, for their payer, with '
    'the PDF attached.';


-- == meter_offline: meters not reached for the ESCO's offline_hours ==========
-- One message per ESCO and run, listing the meters newly offline; a meter is
-- reported once per outage (its last contact, remembered here), again only
-- after it has been reached and lost again.
CREATE TABLE flows.notification_offline_meters (
    meter_id        uuid        NOT NULL,
    esco            uuid        NOT NULL,
    last_healthy_at timestamptz,
    notified_at     timestamptz NOT NULL,
    PRIMARY KEY (meter_id, esco),
    CONSTRAINT notification_offline_meters_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.notification_offline_meters IS
    'meter_offline rule: meters reported offline, with the last contact they were reported for (null: never).';

CREATE FUNCTION flows.meter_offline_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH offline AS (  -- active meters in service, not reached for offline_hours (never: since registered)
        SELECT m.id, m.esco, m.serial, m.name, s.last_healthy_at, s.health_details, st.offline_hours
        FROM flows.meter_registry AS m
        JOIN flows.meter_shadows AS s ON s.id = m.id
        JOIN flows.notification_settings AS st ON st.esco = m.esco
        WHERE m.mode = 'active' AND coalesce(m.installation_status, 'installed') NOT IN ('planned', 'decommissioned')
          AND coalesce(s.last_healthy_at, m.created_at) < p_now - pg_catalog.make_interval(hours => st.offline_hours)
    ),
    reached AS (  -- reached again: forget them
        DELETE FROM flows.notification_offline_meters AS n
        WHERE NOT EXISTS (SELECT FROM offline AS f WHERE f.id = n.meter_id)
    ),
    fresh AS (  -- not yet reported for this outage
        SELECT f.* FROM offline AS f
        LEFT JOIN flows.notification_offline_meters AS n ON n.meter_id = f.id AND n.esco = f.esco
        WHERE n.meter_id IS NULL OR n.last_healthy_at IS DISTINCT FROM f.last_healthy_at
    ),
    noted AS (
        INSERT INTO flows.notification_offline_meters AS n (meter_id, esco, last_healthy_at, notified_at)
        SELECT f.id, f.esco, f.last_healthy_at, p_now FROM fresh AS f
        ON CONFLICT (meter_id, esco) DO UPDATE
            SET last_healthy_at = excluded.last_healthy_at, notified_at = excluded.notified_at
    )
    SELECT f.esco,
           md5(string_agg(f.id::text || '@' || coalesce(extract(epoch FROM f.last_healthy_at)::text, 'never'), ','
                          ORDER BY f.id)),
           NULL::uuid,
           pg_catalog.jsonb_build_object(
               'offline_hours', min(f.offline_hours), 'count', count(*),
               'meters', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'serial', f.serial, 'name', f.name, 'details', f.health_details,
                   'last_online', coalesce(to_char(f.last_healthy_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
                                           'never')) ORDER BY f.serial)),
           NULL::uuid
    FROM fresh AS f
    GROUP BY f.esco;
END
$$;
COMMENT ON FUNCTION flows.meter_offline_events(timestamptz, timestamptz) IS
    'meter_offline rule: per ESCO, the active meters newly not reached for its offline_hours, once per outage '
    '(notification_offline_meters).';


-- == tariff_rollout_failed: a rollout ended with meters that did not take it ==
-- Once all its commands have ended (none pending or running), if any failed.
CREATE FUNCTION flows.tariff_rollout_failed_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT c.esco, c.batch_id::text, NULL::uuid,
           pg_catalog.jsonb_build_object(
               'rollout_id', c.batch_id, 'meters', count(*),
               'confirmed', count(*) FILTER (WHERE c.status = 'done'),
               'failed', count(*) FILTER (WHERE c.status = 'failed'),
               'failures', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'serial', m.serial, 'name', m.name, 'error', c.last_error) ORDER BY m.serial)
                   FILTER (WHERE c.status = 'failed')),
           NULL::uuid
    FROM flows.meter_commands AS c
    JOIN flows.meter_registry AS m ON m.id = c.meter_id
    WHERE c.kind = 'set_future_tariff'
      AND c.batch_id IN (SELECT f.batch_id FROM flows.meter_commands AS f
                         WHERE f.finished_at >= p_from AND f.finished_at <= p_now
                           AND f.kind = 'set_future_tariff' AND f.batch_id IS NOT NULL)
    GROUP BY c.esco, c.batch_id
    HAVING count(*) FILTER (WHERE c.status IN ('pending', 'running')) = 0
       AND count(*) FILTER (WHERE c.status = 'failed') > 0
$$;
COMMENT ON FUNCTION flows.tariff_rollout_failed_events(timestamptz, timestamptz) IS
    'tariff_rollout_failed rule: rollouts (batches of set_future_tariff) that ended in the window with failures.';


-- == payment_due: a card or Direct Debit payment is taken tomorrow ==========
-- Payments to the processor (a wallet's regular payment, or one an operator
-- scheduled with api.schedule_payment) not yet submitted, due on the UK day
-- after the run's. That becomes true as the UK day before begins (payments
-- made ahead: wallets' up to 7 days), or when a payment for tomorrow is
-- scheduled during it: the event's time, in the window. Not for a payment
-- cancelled or already gone to the processor, nor one that will not be taken:
-- its account closed, its payment method revoked, a wallet's payer moved out.
CREATE FUNCTION flows.payment_due_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT p.esco, p.id::text, p.customer_id,
           pg_catalog.jsonb_build_object(
               'payment_id', p.id, 'amount', billing.round_half_up(p.amount, 2)::text,
               'due_on', to_char(p.scheduled_at AT TIME ZONE 'Europe/London', 'FMDay FMDD FMMonth YYYY'),
               'method', m.kind, 'method_label', m.label, 'timing', w.payment_timing,
               'account_number', a.account_number, 'serial', r.serial),
           NULL::uuid
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.wallets AS w ON w.id = p.wallet_id
    LEFT JOIN flows.meter_registry AS r ON r.id = a.meter_id
    WHERE p.provider = 'stripe' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND p.scheduled_at >= flows.uk_day_start(flows.uk_day(p_now) + 1)
      AND p.scheduled_at < flows.uk_day_start(flows.uk_day(p_now) + 2)
      AND greatest(p.created_at, flows.uk_day_start(flows.uk_day(p_now))) >= p_from
      AND greatest(p.created_at, flows.uk_day_start(flows.uk_day(p_now))) <= p_now
      AND a.status = 'open' AND m.status = 'active'
      AND (p.wallet_id IS NULL OR p.customer_id = billing.payer_at(a.id, p_now))
$$;
COMMENT ON FUNCTION flows.payment_due_events(timestamptz, timestamptz) IS
    'payment_due rule: card and Direct Debit payments not yet submitted that fall due on the next UK day, once '
    'that became so in the window (the day before began, or the payment was scheduled), for their payer.';


-- == payment_failed: a card or Direct Debit payment failed =================
-- The processor declined it (a card declined, a Direct Debit returned), or it
-- could not be made (no active payment method). Once per payment (its key);
-- one that fails, is retried at the processor and succeeds is told by
-- topup_applied next.
CREATE INDEX payments_failed_idx ON billing.payments (updated_at) WHERE status = 'failed';

CREATE FUNCTION flows.payment_failed_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT p.esco, p.id::text, coalesce(p.customer_id, billing.payer_at(p.account_id, p.updated_at)),
           pg_catalog.jsonb_build_object(
               'payment_id', p.id, 'amount', billing.round_half_up(p.amount, 2)::text,
               'method', coalesce(m.kind, 'online'), 'method_label', m.label, 'reason', p.failure_reason,
               'origin', p.origin, 'timing', w.payment_timing,
               'failed_at_uk', to_char(p.updated_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
               'account_number', a.account_number, 'serial', r.serial),
           NULL::uuid
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    LEFT JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.wallets AS w ON w.id = p.wallet_id
    LEFT JOIN flows.meter_registry AS r ON r.id = a.meter_id
    WHERE p.status = 'failed' AND p.provider = 'stripe' AND p.updated_at >= p_from AND p.updated_at <= p_now
$$;
COMMENT ON FUNCTION flows.payment_failed_events(timestamptz, timestamptz) IS
    'payment_failed rule: card and Direct Debit payments that failed in the window, for their payer, with the '
    'processor''s reason.';


-- == topup_applied: a top-up was credited on the meter ======================
-- Whatever funded it (a payment, a gift, solar credit, an adjustment), once
-- the meter took it (used_at): the amount, the meter, its balance just after
-- (when the worker read it) and the source. Told to whoever paid for the
-- account then (its occupier, else its owner). A deduction (a negative
-- adjustment) is in the books only, never on the meter: not told.
CREATE INDEX topups_credited_idx ON billing.topups (used_at) WHERE status = 'completed';

CREATE FUNCTION flows.topup_applied_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT t.esco, t.id::text, coalesce(billing.payer_at(t.account_id, t.used_at), t.customer_id),
           pg_catalog.jsonb_build_object(
               'topup_id', t.id, 'amount', billing.round_half_up(t.amount, 2)::text, 'source', t.source,
               'paid_by', CASE p.provider WHEN 'stripe' THEN coalesce(m.kind, 'online') ELSE p.provider END,
               'reason', coalesce(g.reason, to_char(s.month, 'FMMonth YYYY')),
               'balance_after', billing.round_half_up(t.balance_after, 2)::text,
               'credited_at_uk', to_char(t.used_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
               'serial', r.serial, 'meter_name', r.name, 'account_number', a.account_number),
           NULL::uuid
    FROM billing.topups AS t
    JOIN billing.accounts AS a ON a.id = t.account_id
    JOIN flows.meter_registry AS r ON r.id = t.meter_id
    LEFT JOIN billing.payments AS p ON p.id = t.payment_id
    LEFT JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.gifts AS g ON g.id = t.gift_id
    LEFT JOIN billing.solar_credits AS s ON s.id = t.solar_credit_id
    WHERE t.status = 'completed' AND t.used_at >= p_from AND t.used_at <= p_now
$$;
COMMENT ON FUNCTION flows.topup_applied_events(timestamptz, timestamptz) IS
    'topup_applied rule: top-ups credited on their meter in the window (payment, gift, solar credit, adjustment), '
    'for whoever paid for the account then, with the balance after when known.';


-- == The registry ============================================================
INSERT INTO flows.notification_rules (rule, audience, essential, description, events) VALUES
    ('low_balance', 'customer', false,
     'A prepay meter''s balance fell below the ESCO''s low_balance_threshold: once per crossing, again after it '
     'recovers and falls again.', 'flows.low_balance_events(timestamptz, timestamptz)'),
    ('statement_ready', 'customer', true,
     'A statement or credit note was issued; its PDF attached.', 'flows.statement_ready_events(timestamptz, timestamptz)'),
    ('payment_due', 'customer', false,
     'A card or Direct Debit payment is taken tomorrow (UK day): amount, method, date; once per payment.',
     'flows.payment_due_events(timestamptz, timestamptz)'),
    ('payment_failed', 'customer', true,
     'A card or Direct Debit payment failed: amount and the processor''s reason; once per payment.',
     'flows.payment_failed_events(timestamptz, timestamptz)'),
    ('topup_applied', 'customer', false,
     'A top-up (payment, gift, solar credit, adjustment) was credited on the meter: amount, new balance; once per '
     'top-up.', 'flows.topup_applied_events(timestamptz, timestamptz)'),
    ('meter_offline', 'operators', true,
     'Meters not reached for the ESCO''s offline_hours: one message listing the meters newly offline.',
     'flows.meter_offline_events(timestamptz, timestamptz)'),
    ('tariff_rollout_failed', 'operators', true,
     'A tariff rollout ended with meters that did not take the tariff.',
     'flows.tariff_rollout_failed_events(timestamptz, timestamptz)');

-- ---- schema/notifications/sending.sql ----
-- What the senders call (workers/flows/notifications/queries.py): claim due
-- messages of a channel under a lease, record each as sent or failed (fenced:
-- only the holder of the lease, on its attempt), hand back what they did not
-- start, and fetch an attachment. Versioned (_v1): running
-- workers call them (docs/database.md, "Versioned functions").

-- Claims up to p_limit due messages of a channel for a sender, leased for
-- p_lease: pending ones whose send_after has come, and those whose lease ran
-- out (their sender died; the message may have gone out: the send/record
-- window). One whose lease ran out on its last attempt is not tried again:
-- it is dead, saying it may have been sent.
CREATE FUNCTION flows.claim_notifications_v1(p_channel text, p_worker text, p_limit integer,
                                             p_lease interval DEFAULT '2 minutes')
RETURNS TABLE (
    id uuid, esco_code text, rule text, channel text, recipient text, template text, parameters jsonb,
    invoice_id uuid, attempt smallint, max_attempts smallint, created_at timestamptz, send_after timestamptz,
    lease_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.notification_outbox AS n
    SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
        last_error = pg_catalog.format('abandoned: the sender''s lease ran out on attempt %s of %s, after the send '
                                       'began; it may have been delivered (%s)', n.attempts, n.max_attempts,
                                       coalesce(n.last_error, 'no error recorded'))
    WHERE n.channel = p_channel AND n.status = 'sending' AND n.lease_expires_at < pg_catalog.now()
      AND n.attempts >= n.max_attempts;
    RETURN QUERY
    WITH chosen AS (
        SELECT n.id
        FROM flows.notification_outbox AS n
        WHERE n.channel = p_channel
          AND ((n.status = 'pending' AND n.send_after <= pg_catalog.now())
               OR (n.status = 'sending' AND n.lease_expires_at < pg_catalog.now()))
        ORDER BY n.send_after
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE flows.notification_outbox AS n
    SET status = 'sending', attempts = n.attempts + 1, lease_owner = p_worker,
        lease_expires_at = pg_catalog.now() + p_lease, claimed_at = coalesce(n.claimed_at, pg_catalog.now())
    FROM chosen AS c, flows.escos AS e
    WHERE n.id = c.id AND e.id = n.esco
    RETURNING n.id, e.code, n.rule, n.channel, n.recipient, n.template, n.parameters, n.invoice_id, n.attempts,
              n.max_attempts, n.created_at, n.send_after, n.lease_expires_at;
END
$$;
COMMENT ON FUNCTION flows.claim_notifications_v1(text, text, integer, interval) IS
    'Claims due messages of a channel (and those whose lease ran out) for a sender, under a lease.';


-- The fence: the message, locked, if p_worker still holds it on p_attempt;
-- SQLSTATE FL409 otherwise (its lease ran out and it was claimed again, or an
-- operator cancelled it): the caller records nothing.
CREATE FUNCTION flows.fence_notification(p_id uuid, p_worker text, p_attempt integer)
RETURNS flows.notification_outbox
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    message flows.notification_outbox;
BEGIN
    SELECT * INTO message FROM flows.notification_outbox AS n WHERE n.id = p_id FOR UPDATE;
    IF NOT FOUND OR message.status <> 'sending' OR message.lease_owner IS DISTINCT FROM p_worker
       OR message.attempts <> p_attempt THEN
        RAISE EXCEPTION 'notification % is no longer held by % on attempt %', p_id, p_worker, p_attempt
            USING ERRCODE = 'FL409', HINT = 'its lease ran out and another sender took it, or it was cancelled';
    END IF;
    RETURN message;
END
$$;

-- Sent: the provider accepted it (SMTP 250, the SMS gateway's 2xx) with its id.
CREATE FUNCTION flows.record_notification_sent_v1(p_id uuid, p_worker text, p_attempt integer,
                                                  p_provider_message_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.fence_notification(p_id, p_worker, p_attempt);
    UPDATE flows.notification_outbox AS n
    SET status = 'sent', sent_at = pg_catalog.now(), provider_message_id = p_provider_message_id,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE n.id = p_id;
END
$$;
COMMENT ON FUNCTION flows.record_notification_sent_v1(uuid, text, integer, text) IS
    'Records a message sent (fenced: FL409 if the sender no longer holds it).';

-- Failed: retried after the backoff (flows.retry_delay, doubling from
-- p_backoff) while attempts are left and the failure is not permanent (a
-- refused address, a template that does not render); else dead. Returns the
-- new status.
CREATE FUNCTION flows.record_notification_failed_v1(p_id uuid, p_worker text, p_attempt integer, p_error text,
                                                    p_permanent boolean, p_backoff interval DEFAULT '30 seconds')
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    message flows.notification_outbox := flows.fence_notification(p_id, p_worker, p_attempt);
    dead boolean := p_permanent OR message.attempts >= message.max_attempts;
BEGIN
    UPDATE flows.notification_outbox AS n
    SET status = CASE WHEN dead THEN 'dead' ELSE 'pending' END,
        last_error = CASE WHEN dead AND NOT p_permanent
                          THEN pg_catalog.format('gave up after %s attempts: %s', message.attempts, p_error)
                          ELSE p_error END,
        send_after = CASE WHEN dead THEN n.send_after
                          ELSE pg_catalog.now() + flows.retry_delay(message.attempts, p_backoff) END,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE n.id = p_id;
    RETURN CASE WHEN dead THEN 'dead' ELSE 'pending' END;
END
$$;
COMMENT ON FUNCTION flows.record_notification_failed_v1(uuid, text, integer, text, boolean, interval) IS
    'Records a failed send: pending again after the backoff, or dead (permanent, or the last attempt).';

-- A sender that stops hands back what it has not started: pending again,
-- the attempt not counted.
CREATE FUNCTION flows.release_notifications_v1(p_worker text, p_ids uuid[], p_attempts integer[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    released integer;
BEGIN
    UPDATE flows.notification_outbox AS n
    SET status = 'pending', attempts = n.attempts - 1, lease_owner = NULL, lease_expires_at = NULL
    FROM unnest(p_ids, p_attempts) AS h (id, attempt)
    WHERE n.id = h.id AND n.status = 'sending' AND n.lease_owner = p_worker AND n.attempts = h.attempt;
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN released;
END
$$;
COMMENT ON FUNCTION flows.release_notifications_v1(text, uuid[], integer[]) IS
    'Hands claimed messages back (pending, attempt not counted) when a sender stops before sending them.';

-- The attachment of a message: its statement's PDF, named by its reference.
CREATE FUNCTION flows.notification_attachment_v1(p_id uuid)
RETURNS TABLE (filename text, media_type text, content bytea)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT replace(i.kind, '_', '-') || '-' || e.code || '-' || lpad(i.number::text, 6, '0') || '.pdf',
           d.media_type, d.content
    FROM flows.notification_outbox AS n
    JOIN billing.invoices AS i ON i.id = n.invoice_id AND i.esco = n.esco
    JOIN billing.invoice_documents AS d ON d.invoice_id = i.id
    JOIN flows.escos AS e ON e.id = i.esco
    WHERE n.id = p_id
$$;
COMMENT ON FUNCTION flows.notification_attachment_v1(uuid) IS
    'The PDF attached to a message (its statement''s), with a file name; no row when it has none.';

-- ESCOs made before this migration get their settings row (new ones get it from the trigger).
INSERT INTO flows.notification_settings (esco) SELECT e.id FROM flows.escos AS e;

-- ---- schema/monitoring.sql ----
-- The notification outbox per channel: what waits (due or not), what is being
-- sent, how long the oldest due message has waited for a sender, and what
-- ended lately (sent in the last hour, dead letters in the last day).
CREATE VIEW monitoring.notifications AS
SELECT k.channel,
       count(n.id) FILTER (WHERE n.status = 'pending') AS pending,
       count(n.id) FILTER (WHERE n.status = 'pending' AND n.send_after <= now()) AS due,
       count(n.id) FILTER (WHERE n.status = 'sending') AS sending,
       coalesce(extract(epoch FROM now() - min(n.send_after) FILTER (WHERE n.status = 'pending'
                                                                         AND n.send_after <= now())), 0)
           AS oldest_due_seconds,
       (SELECT count(*) FROM flows.notification_outbox AS s
        WHERE s.channel = k.channel AND s.status = 'sent' AND s.updated_at > now() - interval '1 hour')
           AS sent_last_hour,
       (SELECT count(*) FROM flows.notification_outbox AS d
        WHERE d.channel = k.channel AND d.status = 'dead' AND d.updated_at > now() - interval '1 day')
           AS dead_last_day
FROM (VALUES ('email'), ('sms')) AS k (channel)
LEFT JOIN flows.notification_outbox AS n ON n.channel = k.channel AND n.status IN ('pending', 'sending')
GROUP BY k.channel;

-- ---- rpc/notifications.sql ----
-- Notifications over the API (docs/notifications.md): the outbox as operators
-- watch it, the ESCO's settings, customers' preferences, the rules, and the
-- two things an operator does to a message: send a dead letter again, or
-- cancel one not sent yet.

CREATE VIEW api.notifications WITH (security_invoker = true) AS
SELECT id, esco, rule, channel, recipient, customer_id, template, parameters, invoice_id, dedupe_key, status,
       attempts, max_attempts, send_after, last_error, provider_message_id, created_at, sent_at, updated_at
FROM flows.notification_outbox;
COMMENT ON VIEW api.notifications IS
    'Emails and texts queued by the notification rules: recipient, template and parameters, status '
    '(pending, sending, sent, dead: gave up, cancelled), attempts, last_error, the provider''s message id, '
    'sent_at. Dead letters: status=eq.dead; send one again with rpc/retry_notification.';

CREATE VIEW api.notification_settings WITH (security_invoker = true) AS
SELECT esco, operator_emails, operator_phones, offline_hours, sms_quiet_from, sms_quiet_to, updated_at
FROM flows.notification_settings;
COMMENT ON VIEW api.notification_settings IS
    'Per ESCO: operator_emails and operator_phones (E.164) for meter_offline and tariff_rollout_failed, '
    'offline_hours (1-720, default 6), the quiet hours for texts to customers (UK time, default 21:00-08:00). '
    'The low-balance threshold is low_balance_threshold on /escos. Operators PATCH their ESCO''s row.';

CREATE VIEW api.notification_preferences WITH (security_invoker = true) AS
SELECT customer_id, esco, channels, opted_out, sms_quiet_from, sms_quiet_to, updated_at
FROM flows.notification_preferences;
-- A customer posts their own (the token says who and which ESCO); an operator names the customer.
ALTER VIEW api.notification_preferences ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
ALTER VIEW api.notification_preferences ALTER COLUMN customer_id SET DEFAULT flows.current_customer_id();
COMMENT ON VIEW api.notification_preferences IS
    'A customer''s choices: channels (email, sms; default email), opted_out (rules that are not essential, '
    'see /notification_rules), sms_quiet_from/to (UK time; null: the ESCO''s). Customers write their own.';

CREATE VIEW api.notification_rules WITH (security_invoker = true) AS
SELECT rule, audience, essential, description, enabled, lookback, active_since, last_run_at, last_queued, last_error
FROM flows.notification_rules;
COMMENT ON VIEW api.notification_rules IS
    'What is notified: audience (customer or operators), essential (customers cannot opt out), when each rule '
    'last ran, how many messages it queued, its last error.';


-- A dead letter (or a cancelled message) is queued again, its attempts from zero.
CREATE FUNCTION api.retry_notification(id uuid) RETURNS SETOF api.notifications
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.notification_outbox AS n
    SET status = 'pending', attempts = 0, send_after = pg_catalog.now(),
        last_error = pg_catalog.format('retried by %s after: %s', flows.requester(), n.last_error)
    WHERE n.id = retry_notification.id AND n.status IN ('dead', 'cancelled');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only a dead or cancelled notification can be retried (this one is %)',
            coalesce((SELECT n.status FROM flows.notification_outbox AS n WHERE n.id = retry_notification.id),
                     'unknown')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a sent message is never sent again; list dead letters with GET /notifications?status=eq.dead';
    END IF;
    PERFORM pg_catalog.pg_notify('flows_notifications', '');
    RETURN QUERY SELECT * FROM api.notifications AS n WHERE n.id = retry_notification.id;
END
$$;
COMMENT ON FUNCTION api.retry_notification(uuid) IS
    'Queues a dead (or cancelled) notification again, its attempts from zero.';

CREATE FUNCTION api.cancel_notification(id uuid) RETURNS SETOF api.notifications
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.notification_outbox AS n
    SET status = 'cancelled', last_error = 'cancelled by ' || flows.requester()
    WHERE n.id = cancel_notification.id AND n.status = 'pending';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only a pending notification can be cancelled (this one is %)',
            coalesce((SELECT n.status FROM flows.notification_outbox AS n WHERE n.id = cancel_notification.id),
                     'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM api.notifications AS n WHERE n.id = cancel_notification.id;
END
$$;
COMMENT ON FUNCTION api.cancel_notification(uuid) IS 'Cancels a notification not sent yet (pending).';

-- ---- schema/audit_registry.sql ----
-- Who is told what: an ESCO's notification settings, customers' preferences (their consent trail).
CALL flows.audit('flows.notification_settings');
CALL flows.audit('flows.notification_preferences');

-- ---- rls/privileges.sql ----
-- == Notifications: rules, outbox, settings, preferences ====================
-- The rules run and the senders send as the workers (flows_service); operators
-- watch their ESCO's outbox, retry dead letters and cancel what is not sent,
-- and set their ESCO's settings and their customers' preferences; customers
-- set their own preferences; everyone signed in reads the rules.

GRANT EXECUTE ON FUNCTION
    flows.are_emails(text[]),
    flows.are_phone_numbers(text[]),
    flows.phone_e164(text),
    flows.after_quiet_hours(timestamptz, time, time)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT SELECT ON flows.notification_rules, api.notification_rules
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (enabled, lookback) ON flows.notification_rules, api.notification_rules TO flows_admin;
GRANT UPDATE (last_run_at, last_queued, last_error) ON flows.notification_rules TO flows_service, flows_admin;

GRANT SELECT ON flows.notification_settings, api.notification_settings
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT UPDATE (operator_emails, operator_phones, offline_hours, sms_quiet_from, sms_quiet_to)
    ON flows.notification_settings, api.notification_settings TO flows_admin, flows_operator;
-- (a new ESCO's row is made by its creator, an admin: flows.create_notification_settings)
GRANT INSERT ON flows.notification_settings TO flows_admin;

GRANT SELECT ON flows.notification_preferences, api.notification_preferences
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT, UPDATE, DELETE ON flows.notification_preferences, api.notification_preferences
    TO flows_admin, flows_operator, flows_customer;

GRANT SELECT ON flows.notification_outbox, api.notifications
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON flows.notification_outbox TO flows_service, flows_admin;
GRANT UPDATE (status, attempts, send_after, last_error) ON flows.notification_outbox TO flows_operator;
GRANT EXECUTE ON FUNCTION api.retry_notification(uuid), api.cancel_notification(uuid)
    TO flows_admin, flows_operator;

-- The rules' memory: the workers (and admins) only.
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.notification_balance_watch, flows.notification_offline_meters
    TO flows_service, flows_admin;

-- Running the rules and sending (the workers).
GRANT EXECUTE ON FUNCTION
    flows.meter_payer(uuid, timestamptz),
    flows.low_balance_events(timestamptz, timestamptz),
    flows.statement_ready_events(timestamptz, timestamptz),
    flows.meter_offline_events(timestamptz, timestamptz),
    flows.tariff_rollout_failed_events(timestamptz, timestamptz),
    flows.payment_due_events(timestamptz, timestamptz),
    flows.payment_failed_events(timestamptz, timestamptz),
    flows.topup_applied_events(timestamptz, timestamptz),
    flows.queue_notifications(text, flows.notification_event[]),
    flows.run_notification_rules_v1(),
    flows.claim_notifications_v1(text, text, integer, interval),
    flows.fence_notification(uuid, text, integer),
    flows.record_notification_sent_v1(uuid, text, integer, text),
    flows.record_notification_failed_v1(uuid, text, integer, text, boolean, interval),
    flows.release_notifications_v1(text, uuid[], integer[]),
    flows.notification_attachment_v1(uuid)
TO flows_service, flows_admin;

GRANT SELECT ON monitoring.notifications TO flows_monitor;

-- ---- rls/policies.sql ----
-- == Notifications: rules, outbox, settings, preferences ====================
-- Tenant = ESCO, as above; customers read and write their own preferences.

-- The rules: shared by every ESCO, read by everyone signed in.
ALTER TABLE flows.notification_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_rules_read ON flows.notification_rules FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (true);
CREATE POLICY notification_rules_all ON flows.notification_rules TO flows_admin, flows_service
    USING (true);

ALTER TABLE flows.notification_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_settings_all ON flows.notification_settings TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_settings_own_esco ON flows.notification_settings TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.notification_preferences ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_preferences_all ON flows.notification_preferences TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_preferences_own_esco ON flows.notification_preferences TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY notification_preferences_self ON flows.notification_preferences TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.notification_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_outbox_all ON flows.notification_outbox TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_outbox_own_esco ON flows.notification_outbox TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- The rules' memory: the workers and admins.
ALTER TABLE flows.notification_balance_watch ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_balance_watch_all ON flows.notification_balance_watch TO flows_admin, flows_service
    USING (true);
ALTER TABLE flows.notification_offline_meters ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_offline_meters_all ON flows.notification_offline_meters TO flows_admin, flows_service
    USING (true);

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

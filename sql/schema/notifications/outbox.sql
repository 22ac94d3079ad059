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
-- Only for a statement that inserted some: passes that find nothing to send
-- ring nobody.
CREATE FUNCTION flows.ring_notification_senders() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_rows) THEN
        PERFORM pg_catalog.pg_notify('flows_notifications', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notification_outbox_doorbell AFTER INSERT ON flows.notification_outbox REFERENCING NEW TABLE AS new_rows
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

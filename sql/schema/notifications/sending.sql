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

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

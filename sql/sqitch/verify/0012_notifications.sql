-- Verify flows:0012_notifications
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, rule, channel, recipient, customer_id, template, parameters, invoice_id, dedupe_key, status,
            attempts, max_attempts, send_after, last_error, provider_message_id, lease_owner, lease_expires_at,
            created_at, claimed_at, sent_at, updated_at
    FROM flows.notification_outbox WHERE false;
    PERFORM esco, operator_emails, operator_phones, offline_hours, sms_quiet_from, sms_quiet_to
    FROM api.notification_settings WHERE false;
    PERFORM customer_id, esco, channels, opted_out, sms_quiet_from, sms_quiet_to FROM api.notification_preferences
    WHERE false;
    PERFORM id, status, dedupe_key FROM api.notifications WHERE false;
    PERFORM channel, pending, due, sending, oldest_due_seconds, sent_last_hour, dead_last_day
    FROM monitoring.notifications;
    ASSERT (SELECT array_agg(rule ORDER BY rule) FROM flows.notification_rules)
           = ARRAY['low_balance', 'meter_offline', 'payment_due', 'payment_failed', 'statement_ready',
                   'tariff_rollout_failed', 'topup_applied'],
        'the seven rules are registered';
    ASSERT NOT (SELECT essential FROM flows.notification_rules WHERE rule = 'payment_due')
           AND NOT (SELECT essential FROM flows.notification_rules WHERE rule = 'topup_applied'),
        'customers can opt out of payment_due and topup_applied';
    ASSERT pg_catalog.has_function_privilege('flows_service',
        'flows.topup_applied_events(timestamptz, timestamptz)', 'EXECUTE'), 'the workers cannot run topup_applied';
    ASSERT NOT EXISTS (SELECT FROM flows.escos AS e
                       WHERE NOT EXISTS (SELECT FROM flows.notification_settings AS s WHERE s.esco = e.id)),
        'every ESCO has its notification settings';
    ASSERT flows.after_quiet_hours('2026-07-01 21:30+01', '21:00', '08:00') = '2026-07-02 08:00+01',
        'a text in the quiet hours waits for their end (UK time)';
    ASSERT flows.phone_e164('07700 900123') = '+447700900123', 'UK numbers become E.164';
    ASSERT pg_catalog.has_function_privilege('flows_service', 'flows.run_notification_rules_v1()', 'EXECUTE'),
        'the workers cannot run the rules';
    ASSERT pg_catalog.has_function_privilege('flows_service',
        'flows.claim_notifications_v1(text, text, integer, interval)', 'EXECUTE'), 'the workers cannot claim messages';
    ASSERT NOT pg_catalog.has_function_privilege('flows_customer', 'api.retry_notification(uuid)', 'EXECUTE'),
        'customers can retry notifications';
    ASSERT pg_catalog.has_table_privilege('flows_monitor', 'monitoring.notifications', 'SELECT'),
        'the exporter cannot count the outbox';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'flows.notification_outbox'::regclass),
        'the outbox has no row-level security';
END
$$;
ROLLBACK;

-- Rollback of 0012_notifications.
SET LOCAL ROLE flows_owner;
DROP FUNCTION api.retry_notification(uuid), api.cancel_notification(uuid);
DROP VIEW api.notifications, api.notification_settings, api.notification_preferences, api.notification_rules;
DROP VIEW monitoring.notifications;
DROP FUNCTION flows.notification_attachment_v1(uuid),
              flows.release_notifications_v1(text, uuid[], integer[]),
              flows.record_notification_failed_v1(uuid, text, integer, text, boolean, interval),
              flows.record_notification_sent_v1(uuid, text, integer, text),
              flows.fence_notification(uuid, text, integer),
              flows.claim_notifications_v1(text, text, integer, interval),
              flows.run_notification_rules_v1(),
              flows.queue_notifications(text, flows.notification_event[]);
DROP TABLE flows.notification_outbox, flows.notification_offline_meters, flows.notification_balance_watch,
           flows.notification_preferences, flows.notification_settings, flows.notification_rules;
DROP FUNCTION flows.topup_applied_events(timestamptz, timestamptz),
              flows.payment_failed_events(timestamptz, timestamptz),
              flows.payment_due_events(timestamptz, timestamptz),
              flows.tariff_rollout_failed_events(timestamptz, timestamptz),
              flows.meter_offline_events(timestamptz, timestamptz),
              flows.statement_ready_events(timestamptz, timestamptz),
              flows.low_balance_events(timestamptz, timestamptz),
              flows.meter_payer(uuid, timestamptz);
DROP INDEX billing.invoice_documents_rendered_idx, billing.payments_failed_idx, billing.topups_credited_idx;
DROP TYPE flows.notification_event;
DROP FUNCTION flows.after_quiet_hours(timestamptz, time, time), flows.ring_notification_senders();
DROP TRIGGER escos_notification_settings ON flows.escos;
DROP FUNCTION flows.create_notification_settings(), flows.check_notification_preferences();
DROP FUNCTION flows.phone_e164(text), flows.are_phone_numbers(text[]), flows.are_emails(text[]);

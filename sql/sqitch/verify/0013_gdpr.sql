-- Verify flows:0013_gdpr
BEGIN;
DO $$
BEGIN
    PERFORM relation, subject, retention, retain_until, omit FROM gdpr.personal_data WHERE false;
    PERFORM relation, column_name, path, erase, note FROM gdpr.personal_columns WHERE false;
    PERFORM id, esco, customer_id, purpose, given, recorded_at, recorded_by, source, in_force
    FROM api.consents WHERE false;
    PERFORM customer_id, esco, relation, rows, retain_until, retention FROM api.data_retention WHERE false;
    PERFORM id, esco, customer_id, pseudonym, reference, requested_by, erased_at, summary FROM api.erasures WHERE false;
    ASSERT NOT EXISTS (SELECT FROM gdpr.unregistered_personal_columns),
        'columns that look like personal data are not in the registry';
    ASSERT (SELECT count(*) FROM gdpr.personal_data WHERE relation IN ('billing.customers', 'billing.invoices')) = 2,
        'customers and statements are not registered';
    ASSERT (SELECT count(*) FROM gdpr.erasure_checks) >= 5, 'erasure has no checks';
    ASSERT (SELECT count(*) FROM gdpr.personal_data WHERE relation IN ('billing.payments', 'billing.processor_events',
            'billing.topups', 'billing.journals', 'flows.notification_outbox')) = 5,
        'payments, processor events, top-ups, the ledger and the outbox are not registered';
    ASSERT (SELECT count(*) FROM gdpr.erasure_checks WHERE name IN ('money_owed', 'credit_held', 'payment_in_flight',
            'refund_in_flight', 'topup_unfinished')) = 5, 'erasure does not check money';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgname = 'processor_events_erased_payer'
                   AND tgrelid = 'billing.processor_events'::regclass), 'late processor events are not erased';
    ASSERT gdpr.pseudonym('3f9c0e0d-0000-4000-8000-000000000000') = 'Erased customer 3f9c0e0d', 'pseudonym';
    ASSERT gdpr.scrub('Dear Olive Owner,', gdpr.identity_pattern('{Olive Owner}'), 'X') = 'Dear X,', 'scrub';
    ASSERT NOT gdpr.erasing('00000000-0000-4000-8000-000000000000'), 'an erasure outside an erasing transaction';
    ASSERT pg_catalog.has_function_privilege('flows_customer', 'api.customer_data_export(uuid)', 'EXECUTE'),
        'customers cannot export their data';
    ASSERT NOT pg_catalog.has_function_privilege('flows_customer', 'api.erase_customer(uuid, text)', 'EXECUTE'),
        'customers can erase';
    ASSERT pg_catalog.has_column_privilege('flows_owner', 'flows.audit_log', 'after', 'UPDATE')
           AND NOT pg_catalog.has_column_privilege('flows_owner', 'flows.audit_log', 'relation', 'UPDATE'),
        'erasure cannot pseudonymise audit copies, or may change more than them';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polname = 'register_interval_hh_customer'),
        'half hours are not behind consent';
END
$$;
ROLLBACK;

-- Verify flows:0011_payments
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, account_id, amount, status, provider, origin, provider_reference, scheduled_at, submitted_at,
            received_at, receipt_url, refunded_amount FROM billing.payments WHERE false;
    PERFORM id, payment_id, amount, status, provider_reference FROM billing.refunds WHERE false;
    PERFORM provider, event_id, type, outcome, payload FROM billing.processor_events WHERE false;
    PERFORM id, meter_id, amount, source, status, token, acquired_at, used_at, command_id, transaction_count,
            waiting_reason FROM billing.topups WHERE false;
    PERFORM id, amount, reason, scheduled_at, status FROM billing.gifts WHERE false;
    PERFORM id, target_balance, minimum_balance, auto_top_up, payment_timing FROM billing.wallets WHERE false;
    PERFORM id, mcs_certificate, declared_net_capacity_kwp FROM billing.solar_installations WHERE false;
    PERFORM id, ratio FROM billing.solar_allocations WHERE false;
    PERFORM id, month, amount, status FROM billing.solar_credits WHERE false;
    PERFORM id, kind, memo FROM billing.journals WHERE false;
    PERFORM id, journal_id, ledger_account, amount FROM billing.journal_entries WHERE false;
    PERFORM account_id, customer_credit, credit_on_meters FROM api.account_balances WHERE false;
    PERFORM esco, ledger_account, balance FROM api.esco_books WHERE false;
    ASSERT (SELECT count(*) FROM billing.ledger_accounts) = 9, 'the chart of accounts is incomplete';
    ASSERT flows.lock_key('money_pass') = 2054, 'the money pass lock is not registered';
    ASSERT NOT pg_catalog.has_table_privilege('flows_owner', 'billing.journal_entries', 'UPDATE, DELETE, TRUNCATE')
           AND NOT pg_catalog.has_table_privilege('flows_owner', 'billing.journals', 'DELETE, TRUNCATE'),
        'the ledger can be changed by its owner';
    ASSERT NOT pg_catalog.has_table_privilege('flows_operator', 'billing.journal_entries', 'UPDATE, DELETE'),
        'operators can change ledger entries';
    ASSERT pg_catalog.has_function_privilege('flows_service', 'billing.apply_processor_event_v1(text, jsonb)',
                                             'EXECUTE'), 'the gateway cannot apply processor events';
    ASSERT pg_catalog.has_function_privilege('flows_customer',
        'api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid)', 'EXECUTE'),
        'customers cannot change their wallet';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname = 'meter_commands_topups') = 1,
        'top-ups do not mirror their commands';
    ASSERT EXISTS (SELECT FROM flows.realtime_relations WHERE relation = 'topups'), 'top-ups cannot be followed';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname = 'audit_insert'
            AND tgrelid = 'billing.payments'::regclass) = 1, 'payments are not audited';
    ASSERT billing.token_failure_kind('ReplyTimeout: no answer') = 'unreachable', 'offline meters are not recognised';
END
$$;
ROLLBACK;

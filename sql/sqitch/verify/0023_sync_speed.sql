-- Verify flows:0023_sync_speed
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT p.prosrc LIKE '%flows.append_to_meter_ledger_days(%' FROM pg_catalog.pg_proc AS p
            WHERE p.oid = 'flows.meter_ledger_days_follow_balances()'::regprocedure),
        'the balance trigger recomputes every inserted observation''s day';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger AS t
            WHERE t.tgname IN ('payments_notify', 'refunds_notify', 'notification_outbox_doorbell')
              AND t.tgnewtable = 'new_rows') = 3,
        'a job is woken by statements that inserted nothing';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid = 'flows.meter_commands'::regclass AND t.tgname LIKE 'audit_%'
              AND t.tgfoid = 'flows.audit_statement()'::regprocedure) = 3,
        'commands are audited row by row';
    ASSERT flows.append_to_meter_ledger_days('{}', '{}', '{}') IS NULL, 'nothing to append appended something';
END
$$;
ROLLBACK;

-- Rollback of 0015_reconciliation.
SET LOCAL ROLE flows_owner;
REVOKE EXECUTE ON FUNCTION billing.topup_problem(billing.accounts, boolean) FROM flows_analyst;
DROP FUNCTION api.reconciliation(text, date), api.decide_reconciliation_exception(text, text, text, text);
DROP VIEW api.reconciliation_exceptions, api.reconciliation_days, api.shadow_ledger_days, api.reconciliation_settings,
          api.prepay_debts;
DROP FUNCTION billing.reconciliation_summary(uuid, date, date), billing.reconciliation_exceptions(uuid, date, date),
              billing.shadow_ledger(uuid, date, date),
              billing.shadow_ledger_intervals(uuid, date, date, uuid[]), billing.prepay_daily_charges(uuid, date, date);
DROP VIEW billing.meter_tariff_periods;
DROP TABLE billing.reconciliation_decisions, billing.prepay_debts, billing.reconciliation_settings;
UPDATE flows.meter_event_log_type SET name = 'unknown_48' WHERE id = 48;
DELETE FROM flows.meter_event_log_type AS t WHERE t.id = 48 AND NOT EXISTS (SELECT FROM flows.meter_event_log AS e WHERE e.event_type = 48);

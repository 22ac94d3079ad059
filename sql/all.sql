-- The readable source of the Flows database, in load order:
--   psql -v ON_ERROR_STOP=1 -f sql/all.sql
-- Migrations (sql/migrations) must produce exactly this schema; a test compares
-- the two (tests/test_migrations.py).
--
-- Roles and schemas are created by the connecting (administrative) user;
-- everything else by, and owned by, flows_owner.
\ir rls/roles.sql
\ir schema/schemas.sql
SET ROLE flows_owner;

-- what is stored
\ir schema/common.sql
\ir schema/advisory_locks.sql
\ir schema/escos.sql
\ir schema/sites.sql
\ir schema/network.sql
\ir schema/tariffs.sql
\ir schema/hardware_kinds.sql
\ir schema/meters.sql
\ir schema/circuits.sql
\ir schema/meter_metrics.sql
\ir schema/timeseries.sql
\ir schema/readings.sql
\ir schema/meter_history.sql
-- recording what meters report: checks, then each writer
\ir schema/recording/guards.sql
\ir schema/recording/ledger_days.sql
\ir schema/recording/interval_rollups.sql
\ir schema/recording/half_hours.sql
\ir schema/recording/register_reads.sql
\ir schema/recording/estimates.sql
\ir schema/recording/meter_states.sql
\ir schema/recording/meter_events.sql
\ir schema/energy_parts.sql
\ir schema/workers.sql
\ir schema/commands.sql
\ir schema/emop_sessions.sql
\ir schema/scheduling.sql
\ir schema/api_keys.sql
\ir schema/audit.sql

-- what is stored: money (the billing schema)
\ir schema/billing/money.sql
\ir schema/billing/customers.sql
\ir schema/billing/tariffs.sql
\ir schema/billing/statements.sql
\ir schema/billing/billing_run.sql
-- money in: payments, top-ups, gifts, solar credit, wallets, the ledger
\ir schema/billing/wallets.sql
\ir schema/billing/payments.sql
\ir schema/billing/gifts.sql
\ir schema/billing/solar.sql
\ir schema/billing/topups.sql
\ir schema/billing/ledger.sql
\ir schema/billing/money_pass.sql

-- what is stored: notifications (rules, outbox, senders' functions)
\ir schema/notifications/settings.sql
\ir schema/notifications/outbox.sql
\ir schema/notifications/queueing.sql
\ir schema/notifications/rules.sql
\ir schema/notifications/sending.sql
-- bank statements and matching
\ir schema/billing/bank.sql
-- reconciliation: payments <-> top-ups <-> credit on the meter, the shadow prepay ledger
\ir schema/billing/reconciliation.sql
-- what the Prometheus exporter reads (counts, after every table it counts)
\ir schema/monitoring.sql
\ir schema/realtime.sql
\ir schema/realtime_relations.sql

-- who is asking
\ir rls/claims.sql
\ir rls/request_checks.sql

-- personal data (GDPR): who may ask, consents, export and erasure (after the claims they read)
\ir schema/gdpr/registry.sql
\ir schema/gdpr/access.sql
\ir schema/gdpr/consents.sql
\ir schema/gdpr/erasure.sql
-- (after erasure.sql: bank entries are found by the identities it defines)
\ir schema/gdpr/subjects.sql
\ir schema/gdpr/export.sql

-- what is offered
\ir rpc/health.sql
\ir rpc/escos.sql
\ir rpc/sites.sql
\ir rpc/network.sql
\ir rpc/circuits.sql
\ir rpc/meters.sql
\ir rpc/register_meter.sql
\ir rpc/get_meters_for_cli.sql
\ir rpc/readings.sql
\ir rpc/meter_history.sql
\ir rpc/record_meter_state.sql
\ir rpc/monitoring.sql
\ir rpc/aggregates.sql
\ir rpc/commands.sql
\ir rpc/workers.sql
\ir rpc/api_keys.sql
\ir rpc/audit_log.sql
\ir rpc/billing/customers.sql
\ir rpc/billing/tariffs.sql
\ir rpc/billing/statements.sql
\ir rpc/billing/payments.sql
\ir rpc/billing/topups.sql
\ir rpc/billing/solar.sql
\ir rpc/billing/wallets.sql
\ir rpc/billing/ledger.sql
\ir rpc/notifications.sql
\ir rpc/gdpr.sql
\ir rpc/billing/bank.sql
\ir rpc/billing/reconciliation.sql

-- who changed what, and where personal data lives (after every table)
\ir schema/audit_registry.sql
\ir schema/gdpr/personal_data.sql

-- who may
\ir rls/privileges.sql
\ir rls/policies.sql

RESET ROLE;

-- Which tables are audited: one line per table (flows.audit, schema/audit.sql).
-- Loaded after every table; a new table of configuration or money adds its
-- line here (and the same line in its migration).

-- Tenants, configuration and topology.
CALL flows.audit('flows.escos', esco_column => 'id');
CALL flows.audit('flows.sites');
CALL flows.audit('flows.properties');
CALL flows.audit('flows.feeder_registry');
CALL flows.audit('flows.service_head_registry');
CALL flows.audit('flows.properties_service_head');
CALL flows.audit('flows.service_head_meter');
CALL flows.audit('flows.circuits');
CALL flows.audit('flows.circuit_register');
CALL flows.audit('flows.meter_registry');
CALL flows.audit('flows.meter_registers');
CALL flows.audit('flows.meter_metrics', esco_column => NULL);

-- Customers and what they pay (the invitation token is a credential: never copied).
CALL flows.audit('billing.esco_billing', ignored_columns => '{last_account_number,last_invoice_number}');
CALL flows.audit('billing.customers', ignored_columns => '{updated_at,invite_token}');
CALL flows.audit('billing.accounts');
CALL flows.audit('billing.customer_accounts');
CALL flows.audit('billing.contracts');
CALL flows.audit('billing.benchmark_tariffs', esco_column => NULL);
CALL flows.audit('billing.microgrid_tariffs');
CALL flows.audit('billing.customer_tariffs');

-- Money in: payments and refunds (the job's leases are not audited), top-ups
-- (their status as they go), gifts, wallets, payment methods, solar credit.
-- The ledger and the processor's events are records themselves, never changed.
CALL flows.audit('billing.payment_methods');
CALL flows.audit('billing.wallets');
CALL flows.audit('billing.payments', ignored_columns => '{updated_at,lease_owner,lease_expires_at}');
CALL flows.audit('billing.refunds', ignored_columns => '{updated_at,lease_owner,lease_expires_at}');
CALL flows.audit('billing.gifts');
CALL flows.audit('billing.topups');
CALL flows.audit('billing.solar_rates');
CALL flows.audit('billing.solar_installations');
CALL flows.audit('billing.solar_allocations');
CALL flows.audit('billing.solar_credits');

-- Requested commands: top-ups (money), tariffs, syncs and clock settings people
-- asked for, and how each went (status changes); the scheduler's own syncs and
-- lease renewals are not audited.
CALL flows.audit('flows.meter_commands', ignored_columns => '{updated_at,lease_expires_at}', per_statement => true,
                 only_rows => '{row}.requested_by <> ''scheduler''');

-- Logins and credentials.
CALL flows.audit('flows.sql_login_claims', esco_column => NULL);
CALL flows.audit('flows.api_keys');

-- Who is told what: an ESCO's notification settings, customers' preferences (their consent trail).
CALL flows.audit('flows.notification_settings');
CALL flows.audit('flows.notification_preferences');
-- Erasures of customers' personal data (who erased whom, when, why).
CALL flows.audit('gdpr.erasures');
-- Bank statements: the accounts (configuration), each entry's decision (the
-- status it moves to; entries are inserted unmatched and not audited then)
-- and the decisions log itself.
CALL flows.audit('billing.bank_accounts');
CALL flows.audit('billing.bank_transactions', ignored_columns => '{queue_reason}',
                 only_rows => '{row}.status <> ''unmatched''');
CALL flows.audit('billing.bank_decisions');
-- Reconciliation: the settings, the debts meters were loaded with, the operators' decisions on exceptions.
CALL flows.audit('billing.reconciliation_settings', ignored_columns => '{updated_at}');
CALL flows.audit('billing.prepay_debts');
CALL flows.audit('billing.reconciliation_decisions');

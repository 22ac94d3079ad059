-- Row-level security on every flows table: which rows each role sees and may
-- write (privileges.sql says which operations). The rules:
--   admin, service        every row
--   operator, analyst     rows of the ESCO in their "esco" claim
--   customer              their properties (claim "properties"), the meters
--                         behind them, and those meters' state and readings
--   anon                  nothing
-- Rows hanging off a meter or register are visible exactly when that meter or
-- register is: the subquery runs under the caller's own policies.
-- (SELECT f()) makes PostgreSQL evaluate a helper once per statement.
-- The customer's chain (properties -> service heads -> meters -> shadows) is
-- written `key = ANY (ARRAY(SELECT ...))`, not `key IN (SELECT ...)`: the same
-- rows, but each level becomes a once-per-statement set (a few ids) probed
-- through the key's index, where an IN subquery in a policy is hashed over
-- the whole table at every level (a customer's read of one meter cost 2.9 ms
-- of CPU at 3,000 meters instead of 0.8 ms; docs/realtime.md, Measured).

-- == Foundation: schemas, identity, ESCOs ==================================

ALTER TABLE flows.escos ENABLE ROW LEVEL SECURITY;
CREATE POLICY escos_all ON flows.escos TO flows_admin, flows_service
    USING (true);
CREATE POLICY escos_own ON flows.escos TO flows_operator, flows_analyst, flows_customer
    USING (code = (SELECT flows.jwt_claims() ->> 'esco'));

-- Claims of SQL logins: no policy, so only its owner (flows.jwt_claims) reads it.
ALTER TABLE flows.sql_login_claims ENABLE ROW LEVEL SECURITY;


-- == Topology and meters ===================================================
-- Configuration and topology: every row carries its ESCO.
ALTER TABLE flows.sites ENABLE ROW LEVEL SECURITY;
CREATE POLICY sites_all ON flows.sites TO flows_admin, flows_service
    USING (true);
CREATE POLICY sites_own_esco ON flows.sites TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.properties ENABLE ROW LEVEL SECURITY;
CREATE POLICY properties_all ON flows.properties TO flows_admin, flows_service
    USING (true);
CREATE POLICY properties_own_esco ON flows.properties TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY properties_customer ON flows.properties FOR SELECT TO flows_customer
    USING (id = ANY ((SELECT flows.customer_property_ids())::uuid[]) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.feeder_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY feeder_registry_all ON flows.feeder_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY feeder_registry_own_esco ON flows.feeder_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.service_head_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY service_head_registry_all ON flows.service_head_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY service_head_registry_own_esco ON flows.service_head_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.properties_service_head ENABLE ROW LEVEL SECURITY;
CREATE POLICY properties_service_head_all ON flows.properties_service_head TO flows_admin, flows_service
    USING (true);
CREATE POLICY properties_service_head_own_esco ON flows.properties_service_head TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY properties_service_head_customer ON flows.properties_service_head FOR SELECT TO flows_customer
    USING (property = ANY (ARRAY(SELECT p.id FROM flows.properties AS p)));

ALTER TABLE flows.service_head_meter ENABLE ROW LEVEL SECURITY;
CREATE POLICY service_head_meter_all ON flows.service_head_meter TO flows_admin, flows_service
    USING (true);
CREATE POLICY service_head_meter_own_esco ON flows.service_head_meter TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY service_head_meter_customer ON flows.service_head_meter FOR SELECT TO flows_customer
    USING (service_head = ANY (ARRAY(SELECT psh.service_head FROM flows.properties_service_head AS psh)));

ALTER TABLE flows.circuits ENABLE ROW LEVEL SECURITY;
CREATE POLICY circuits_all ON flows.circuits TO flows_admin, flows_service
    USING (true);
CREATE POLICY circuits_own_esco ON flows.circuits TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.circuit_register ENABLE ROW LEVEL SECURITY;
CREATE POLICY circuit_register_all ON flows.circuit_register TO flows_admin, flows_service
    USING (true);
CREATE POLICY circuit_register_own_esco ON flows.circuit_register TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.meter_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_registry_all ON flows.meter_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registry_own_esco ON flows.meter_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_registry_customer ON flows.meter_registry FOR SELECT TO flows_customer
    USING (id = ANY (ARRAY(SELECT shm.meter FROM flows.service_head_meter AS shm)));

ALTER TABLE flows.meter_registers ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_registers_all ON flows.meter_registers TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registers_own_esco ON flows.meter_registers TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_registers_customer ON flows.meter_registers FOR SELECT TO flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));


-- The digital twin: visible with the meter (it carries the meter's ESCO, so an
-- ESCO's twins are one index scan away).
ALTER TABLE flows.meter_shadows ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_shadows_all ON flows.meter_shadows TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_shadows_own_esco ON flows.meter_shadows FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_shadows_customer ON flows.meter_shadows FOR SELECT TO flows_customer
    USING (id = ANY (ARRAY(SELECT m.id FROM flows.meter_registry AS m)));

-- Hardware kinds: reference data shared by every ESCO, changed by migrations only.
ALTER TABLE flows.hardware_kinds ENABLE ROW LEVEL SECURITY;
CREATE POLICY hardware_kinds_read ON flows.hardware_kinds FOR SELECT
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer
    USING (true);

-- Sync cadence: shared by every ESCO.
ALTER TABLE flows.meter_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_metrics_read ON flows.meter_metrics FOR SELECT
    TO flows_operator, flows_analyst, flows_service
    USING (true);
CREATE POLICY meter_metrics_admin ON flows.meter_metrics TO flows_admin
    USING (true);


-- == Readings and meter history ============================================

-- Meter history: visible with the meter.
ALTER TABLE flows.meter_prepay_balance ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_prepay_balance_all ON flows.meter_prepay_balance TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_prepay_balance_visible_meter ON flows.meter_prepay_balance FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

-- The shadow ledger's days (kept by triggers and the rollups' writers, read by
-- the ledger's invoker functions): visible with the meter, to those who see
-- the reconciliation.
ALTER TABLE flows.meter_ledger_days ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_ledger_days_all ON flows.meter_ledger_days FOR SELECT TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_ledger_days_visible_meter ON flows.meter_ledger_days FOR SELECT
    TO flows_operator, flows_analyst
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_csq ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_csq_all ON flows.meter_csq TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_csq_visible_meter ON flows.meter_csq FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_voltage ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_voltage_all ON flows.meter_voltage TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_voltage_visible_meter ON flows.meter_voltage FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_3p_voltage ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_3p_voltage_all ON flows.meter_3p_voltage TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_3p_voltage_visible_meter ON flows.meter_3p_voltage FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_health_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_health_history_all ON flows.meter_health_history TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_health_history_visible_meter ON flows.meter_health_history FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_clock_drift ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_clock_drift_all ON flows.meter_clock_drift TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_clock_drift_visible_meter ON flows.meter_clock_drift FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_tariff_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_tariff_history_all ON flows.meter_tariff_history TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_tariff_history_visible_meter ON flows.meter_tariff_history FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));

ALTER TABLE flows.meter_event_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_event_log_all ON flows.meter_event_log TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_event_log_visible_meter ON flows.meter_event_log FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));


-- New reads waiting for estimation: internal, no policy (only definer functions use it).
ALTER TABLE flows.reads_to_estimate ENABLE ROW LEVEL SECURITY;

-- Readings: visible with the register. Customers see the daily and monthly
-- figures so; half hours and the reads behind them only with their consent
-- (the GDPR section below).
ALTER TABLE flows.register_import ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_import_all ON flows.register_import TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_import_visible_register ON flows.register_import FOR SELECT
    TO flows_operator, flows_analyst
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_export ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_export_all ON flows.register_export TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_export_visible_register ON flows.register_export FOR SELECT
    TO flows_operator, flows_analyst
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_interval_hh ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_interval_hh_all ON flows.register_interval_hh TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_interval_hh_visible_register ON flows.register_interval_hh FOR SELECT
    TO flows_operator, flows_analyst
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_interval_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_interval_daily_all ON flows.register_interval_daily TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_interval_daily_visible_register ON flows.register_interval_daily FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_interval_monthly ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_interval_monthly_all ON flows.register_interval_monthly TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_interval_monthly_visible_register ON flows.register_interval_monthly FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

-- Event names: shared by every ESCO; workers add ids no one has named yet.
ALTER TABLE flows.meter_event_log_type ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_event_log_type_read ON flows.meter_event_log_type FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (true);
CREATE POLICY meter_event_log_type_all ON flows.meter_event_log_type TO flows_admin, flows_service
    USING (true);



-- == Commands and scheduling ===============================================

ALTER TABLE flows.meter_commands ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_commands_all ON flows.meter_commands TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_commands_own_esco ON flows.meter_commands TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.meter_metric_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_metric_runs_all ON flows.meter_metric_runs TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_metric_runs_visible_meter ON flows.meter_metric_runs FOR SELECT
    TO flows_operator, flows_analyst
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));


-- == Billing: customers, accounts, tariffs, statements ======================
-- Tenant = ESCO, as above; a customer (claim "customer") sees their own
-- customer row, the accounts they are or were linked to, their links,
-- contracts, tariffs and issued statements.

ALTER TABLE billing.esco_billing ENABLE ROW LEVEL SECURITY;
CREATE POLICY esco_billing_all ON billing.esco_billing TO flows_admin, flows_service
    USING (true);
CREATE POLICY esco_billing_own_esco ON billing.esco_billing TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY customers_all ON billing.customers TO flows_admin, flows_service
    USING (true);
CREATE POLICY customers_own_esco ON billing.customers TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customers_self ON billing.customers FOR SELECT TO flows_customer
    USING (id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.customer_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY customer_accounts_all ON billing.customer_accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY customer_accounts_own_esco ON billing.customer_accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customer_accounts_self ON billing.customer_accounts FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_all ON billing.accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY accounts_own_esco ON billing.accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY accounts_customer ON billing.accounts FOR SELECT TO flows_customer
    USING (id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca));

ALTER TABLE billing.contracts ENABLE ROW LEVEL SECURITY;
CREATE POLICY contracts_all ON billing.contracts TO flows_admin, flows_service
    USING (true);
CREATE POLICY contracts_own_esco ON billing.contracts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY contracts_self ON billing.contracts FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

-- The price cap: public reference data, entered by admins.
ALTER TABLE billing.benchmark_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY benchmark_tariffs_read ON billing.benchmark_tariffs FOR SELECT
    TO flows_operator, flows_analyst, flows_service, flows_customer
    USING (true);
CREATE POLICY benchmark_tariffs_admin ON billing.benchmark_tariffs TO flows_admin
    USING (true);

ALTER TABLE billing.microgrid_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY microgrid_tariffs_all ON billing.microgrid_tariffs TO flows_admin, flows_service
    USING (true);
CREATE POLICY microgrid_tariffs_own_esco ON billing.microgrid_tariffs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
-- (customers read the quarters behind their own tariffs, for monthly_costs)
CREATE POLICY microgrid_tariffs_customer ON billing.microgrid_tariffs FOR SELECT TO flows_customer
    USING (id IN (SELECT t.microgrid_tariff_id FROM billing.customer_tariffs AS t));

ALTER TABLE billing.customer_tariffs ENABLE ROW LEVEL SECURITY;
CREATE POLICY customer_tariffs_all ON billing.customer_tariffs TO flows_admin, flows_service
    USING (true);
CREATE POLICY customer_tariffs_own_esco ON billing.customer_tariffs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY customer_tariffs_self ON billing.customer_tariffs FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.billing_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY billing_runs_all ON billing.billing_runs TO flows_admin, flows_service
    USING (true);
CREATE POLICY billing_runs_own_esco ON billing.billing_runs TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoices_all ON billing.invoices TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoices_own_esco ON billing.invoices TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoices_self ON billing.invoices FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id())
           AND status <> 'draft');

ALTER TABLE billing.invoice_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoice_lines_all ON billing.invoice_lines TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoice_lines_own_esco ON billing.invoice_lines TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoice_lines_customer ON billing.invoice_lines FOR SELECT TO flows_customer
    USING (invoice_id IN (SELECT i.id FROM billing.invoices AS i));

ALTER TABLE billing.invoice_documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoice_documents_all ON billing.invoice_documents TO flows_admin, flows_service
    USING (true);
CREATE POLICY invoice_documents_own_esco ON billing.invoice_documents FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY invoice_documents_customer ON billing.invoice_documents FOR SELECT TO flows_customer
    USING (invoice_id IN (SELECT i.id FROM billing.invoices AS i));


-- == Realtime ===============================================================

-- The registry of followed relations: the gateway reads it.
ALTER TABLE flows.realtime_relations ENABLE ROW LEVEL SECURITY;
CREATE POLICY realtime_relations_gateway ON flows.realtime_relations FOR SELECT TO flows_authenticator
    USING (true);

-- The change log and its sources: no policy, only the SECURITY DEFINER
-- capture and reading functions (owned by flows_owner) touch them.
ALTER TABLE flows.realtime_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE flows.realtime_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE flows.realtime_commits ENABLE ROW LEVEL SECURITY;
ALTER TABLE flows.realtime_state ENABLE ROW LEVEL SECURITY;


-- == Operations: audit trail, API keys =====================================

-- The audit trail: admins read every ESCO's, operators their own ESCO's.
ALTER TABLE flows.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_admin ON flows.audit_log FOR SELECT TO flows_admin
    USING (true);
CREATE POLICY audit_log_own_esco ON flows.audit_log FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_keys_admin ON flows.api_keys TO flows_admin
    USING (true);
CREATE POLICY api_keys_own_esco ON flows.api_keys FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY api_keys_revoke_own_esco ON flows.api_keys FOR UPDATE TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));


-- == Meter operations: workers ==============================================

-- Workers: platform processes, seen by administrators and written by the workers themselves.
ALTER TABLE flows.workers ENABLE ROW LEVEL SECURITY;
CREATE POLICY workers_all ON flows.workers TO flows_admin, flows_service
    USING (true);


-- == Money in: payments, top-ups, gifts, solar credit, wallets, the ledger ==
-- Tenant = ESCO as above. A customer sees the payments they made and the
-- top-ups made for them, and the wallet of the home they occupy now (which
-- they may change: api.set_wallet); nothing else of the money side.

ALTER TABLE billing.payment_methods ENABLE ROW LEVEL SECURITY;
CREATE POLICY payment_methods_all ON billing.payment_methods TO flows_admin, flows_service
    USING (true);
CREATE POLICY payment_methods_own_esco ON billing.payment_methods TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.wallets ENABLE ROW LEVEL SECURITY;
CREATE POLICY wallets_all ON billing.wallets TO flows_admin, flows_service
    USING (true);
CREATE POLICY wallets_own_esco ON billing.wallets TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY wallets_occupier ON billing.wallets TO flows_customer
    USING (esco = (SELECT flows.current_esco_id())
           AND account_id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca
                              WHERE ca.role = 'occupier' AND ca.start_time <= now()
                                AND (ca.end_time IS NULL OR ca.end_time > now())));

ALTER TABLE billing.payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY payments_all ON billing.payments TO flows_admin, flows_service
    USING (true);
CREATE POLICY payments_own_esco ON billing.payments TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY payments_payer ON billing.payments FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.refunds ENABLE ROW LEVEL SECURITY;
CREATE POLICY refunds_all ON billing.refunds TO flows_admin, flows_service
    USING (true);
CREATE POLICY refunds_own_esco ON billing.refunds TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- Processor events: the webhook (flows_service) writes them; operators read their ESCO's once matched.
ALTER TABLE billing.processor_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_events_all ON billing.processor_events TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_events_own_esco ON billing.processor_events FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.gifts ENABLE ROW LEVEL SECURITY;
CREATE POLICY gifts_all ON billing.gifts TO flows_admin, flows_service
    USING (true);
CREATE POLICY gifts_own_esco ON billing.gifts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.topups ENABLE ROW LEVEL SECURITY;
CREATE POLICY topups_all ON billing.topups TO flows_admin, flows_service
    USING (true);
CREATE POLICY topups_own_esco ON billing.topups TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY topups_customer ON billing.topups FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_rates ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_rates_all ON billing.solar_rates TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_rates_own_esco ON billing.solar_rates TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_installations ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_installations_all ON billing.solar_installations TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_installations_own_esco ON billing.solar_installations TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_allocations ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_allocations_all ON billing.solar_allocations TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_allocations_own_esco ON billing.solar_allocations TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_credits ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_credits_all ON billing.solar_credits TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_credits_own_esco ON billing.solar_credits TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- The chart of accounts: reference data, read by all but customers.
ALTER TABLE billing.ledger_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY ledger_accounts_read ON billing.ledger_accounts FOR SELECT
    TO flows_admin, flows_operator, flows_analyst, flows_service
    USING (true);

ALTER TABLE billing.journals ENABLE ROW LEVEL SECURITY;
CREATE POLICY journals_all ON billing.journals TO flows_admin, flows_service
    USING (true);
CREATE POLICY journals_own_esco ON billing.journals TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.journal_entries ENABLE ROW LEVEL SECURITY;
CREATE POLICY journal_entries_all ON billing.journal_entries TO flows_admin, flows_service
    USING (true);
CREATE POLICY journal_entries_own_esco ON billing.journal_entries TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
-- == Notifications: rules, outbox, settings, preferences ====================
-- Tenant = ESCO, as above; customers read and write their own preferences.

-- The rules: shared by every ESCO, read by everyone signed in.
ALTER TABLE flows.notification_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_rules_read ON flows.notification_rules FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (true);
CREATE POLICY notification_rules_all ON flows.notification_rules TO flows_admin, flows_service
    USING (true);

ALTER TABLE flows.notification_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_settings_all ON flows.notification_settings TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_settings_own_esco ON flows.notification_settings TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.notification_preferences ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_preferences_all ON flows.notification_preferences TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_preferences_own_esco ON flows.notification_preferences TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY notification_preferences_self ON flows.notification_preferences TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.notification_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_outbox_all ON flows.notification_outbox TO flows_admin, flows_service
    USING (true);
CREATE POLICY notification_outbox_own_esco ON flows.notification_outbox TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- The rules' memory: the workers and admins.
ALTER TABLE flows.notification_balance_watch ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_balance_watch_all ON flows.notification_balance_watch TO flows_admin, flows_service
    USING (true);
ALTER TABLE flows.notification_offline_meters ENABLE ROW LEVEL SECURITY;
CREATE POLICY notification_offline_meters_all ON flows.notification_offline_meters TO flows_admin, flows_service
    USING (true);
-- == Personal data (GDPR) ===================================================

-- A customer's half hours, and the cumulative reads they are derived from:
-- their own meters', for the times they occupied the home, while their
-- half-hourly consent is in force (gdpr.half_hourly_periods, evaluated once
-- per statement). Daily and monthly figures stay visible without it.
CREATE POLICY register_interval_hh_customer ON flows.register_interval_hh FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));
CREATE POLICY register_import_customer ON flows.register_import FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));
CREATE POLICY register_export_customer ON flows.register_export FOR SELECT TO flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r)
           AND "timestamp" <@ (SELECT gdpr.half_hourly_periods()));

-- Consents: recorded by the customer themself or an operator of their ESCO
-- (rpc/record_consent), never changed.
ALTER TABLE gdpr.consents ENABLE ROW LEVEL SECURITY;
CREATE POLICY consents_all ON gdpr.consents TO flows_admin, flows_service
    USING (true);
CREATE POLICY consents_own_esco ON gdpr.consents TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY consents_self ON gdpr.consents TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

-- Erasures: admins read every ESCO's, operators their own (written by gdpr.erase_customer only).
ALTER TABLE gdpr.erasures ENABLE ROW LEVEL SECURITY;
CREATE POLICY erasures_admin ON gdpr.erasures FOR SELECT TO flows_admin
    USING (true);
CREATE POLICY erasures_own_esco ON gdpr.erasures FOR SELECT TO flows_operator
    USING (esco = (SELECT flows.current_esco_id()));

-- The registry and the erasure checks: no policy, only the SECURITY DEFINER
-- export, erasure and retention functions (owned by flows_owner) read them.
ALTER TABLE gdpr.personal_data ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.personal_columns ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.not_personal ENABLE ROW LEVEL SECURITY;
ALTER TABLE gdpr.erasure_checks ENABLE ROW LEVEL SECURITY;


-- == Bank statements and matching ==========================================
-- Tenant = ESCO as above; customers see none of it.
ALTER TABLE billing.bank_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_accounts_all ON billing.bank_accounts TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_accounts_own_esco ON billing.bank_accounts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_statements ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_statements_all ON billing.bank_statements TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_statements_own_esco ON billing.bank_statements TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_transactions ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_transactions_all ON billing.bank_transactions TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_transactions_own_esco ON billing.bank_transactions TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.processor_payouts ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_payouts_all ON billing.processor_payouts TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_payouts_own_esco ON billing.processor_payouts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.processor_payout_payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_payout_payments_all ON billing.processor_payout_payments TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_payout_payments_own_esco ON billing.processor_payout_payments TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_decisions_all ON billing.bank_decisions TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_decisions_own_esco ON billing.bank_decisions TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.bank_matches ENABLE ROW LEVEL SECURITY;
CREATE POLICY bank_matches_all ON billing.bank_matches TO flows_admin, flows_service
    USING (true);
CREATE POLICY bank_matches_own_esco ON billing.bank_matches TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));


-- == Reconciliation ==========================================================
-- Tenant = ESCO. Operators and analysts read their ESCO's settings, debts and
-- decisions; operators write them (analysts only read). Customers see none of it.
ALTER TABLE billing.reconciliation_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY reconciliation_settings_all ON billing.reconciliation_settings TO flows_admin, flows_service
    USING (true);
CREATE POLICY reconciliation_settings_own_esco ON billing.reconciliation_settings TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.prepay_debts ENABLE ROW LEVEL SECURITY;
CREATE POLICY prepay_debts_all ON billing.prepay_debts TO flows_admin, flows_service
    USING (true);
CREATE POLICY prepay_debts_own_esco ON billing.prepay_debts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.reconciliation_decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY reconciliation_decisions_all ON billing.reconciliation_decisions TO flows_admin, flows_service
    USING (true);
CREATE POLICY reconciliation_decisions_own_esco ON billing.reconciliation_decisions TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

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
    USING (id IN (SELECT unnest(flows.customer_property_ids())) AND esco = (SELECT flows.current_esco_id()));

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
    USING (property IN (SELECT p.id FROM flows.properties AS p));

ALTER TABLE flows.service_head_meter ENABLE ROW LEVEL SECURITY;
CREATE POLICY service_head_meter_all ON flows.service_head_meter TO flows_admin, flows_service
    USING (true);
CREATE POLICY service_head_meter_own_esco ON flows.service_head_meter TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY service_head_meter_customer ON flows.service_head_meter FOR SELECT TO flows_customer
    USING (service_head IN (SELECT psh.service_head FROM flows.properties_service_head AS psh));

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
    USING (id IN (SELECT shm.meter FROM flows.service_head_meter AS shm));

ALTER TABLE flows.meter_registers ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_registers_all ON flows.meter_registers TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registers_own_esco ON flows.meter_registers TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_registers_customer ON flows.meter_registers FOR SELECT TO flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));


-- The digital twin: visible with the meter.
ALTER TABLE flows.meter_shadows ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_shadows_all ON flows.meter_shadows TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_shadows_visible_meter ON flows.meter_shadows FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (id IN (SELECT m.id FROM flows.meter_registry AS m));

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

-- Readings: visible with the register.
ALTER TABLE flows.register_import ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_import_all ON flows.register_import TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_import_visible_register ON flows.register_import FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_export ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_export_all ON flows.register_export TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_export_visible_register ON flows.register_export FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (register_id IN (SELECT r.register_id FROM flows.meter_registers AS r));

ALTER TABLE flows.register_interval_hh ENABLE ROW LEVEL SECURITY;
CREATE POLICY register_interval_hh_all ON flows.register_interval_hh TO flows_admin, flows_service
    USING (true);
CREATE POLICY register_interval_hh_visible_register ON flows.register_interval_hh FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
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

-- Workers: platform processes, seen by administrators and written by the workers themselves.
ALTER TABLE flows.workers ENABLE ROW LEVEL SECURITY;
CREATE POLICY workers_all ON flows.workers TO flows_admin, flows_service
    USING (true);

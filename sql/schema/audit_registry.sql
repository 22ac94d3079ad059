-- Which tables are audited: one line per table (flows.audit, schema/audit.sql).
-- Loaded after every table; a new table of configuration or money adds its
-- line here (and the same line in its migration).

-- Tenants, configuration and topology.
SELECT flows.audit('flows.escos', esco_column => 'id');
SELECT flows.audit('flows.sites');
SELECT flows.audit('flows.properties');
SELECT flows.audit('flows.feeder_registry');
SELECT flows.audit('flows.service_head_registry');
SELECT flows.audit('flows.properties_service_head');
SELECT flows.audit('flows.service_head_meter');
SELECT flows.audit('flows.circuits');
SELECT flows.audit('flows.circuit_register');
SELECT flows.audit('flows.meter_registry');
SELECT flows.audit('flows.meter_registers');
SELECT flows.audit('flows.meter_metrics', esco_column => NULL);

-- Requested commands: top-ups (money), tariffs, syncs and clock settings people
-- asked for, and how each went (status changes); the scheduler's own syncs and
-- lease renewals are not audited.
SELECT flows.audit('flows.meter_commands', ignored_columns => '{updated_at,lease_expires_at}',
                   only_rows => '{row}.requested_by <> ''scheduler''');

-- Logins and credentials.
SELECT flows.audit('flows.sql_login_claims', esco_column => NULL);
SELECT flows.audit('flows.api_keys');

-- Rollback of 0009_operations. The flows_monitor role stays (roles are cluster-wide).
SET LOCAL ROLE flows_owner;
DO $$
DECLARE
    audited regclass;
BEGIN
    FOR audited IN SELECT DISTINCT t.tgrelid::regclass FROM pg_catalog.pg_trigger AS t
                   WHERE t.tgname IN ('audit_insert', 'audit_update', 'audit_delete') LOOP
        EXECUTE format('DROP TRIGGER audit_insert ON %1$s; DROP TRIGGER audit_update ON %1$s; '
                       'DROP TRIGGER audit_delete ON %1$s', audited);
    END LOOP;
END
$$;
DROP FUNCTION api.revoke_api_key(uuid), flows.create_api_key(text, text, text, timestamptz);
DROP VIEW api.api_keys, api.audit_log;
DROP FUNCTION flows.check_request();
DROP VIEW monitoring.command_queue, monitoring.fleet, monitoring.command_outcomes, monitoring.tariff_rollouts;
DROP INDEX flows.meter_commands_finished_idx;
DROP PROCEDURE flows.audit(regclass, text, text[], text);
DROP TABLE flows.audit_log;
DROP FUNCTION flows.audit_row(), flows.refuse_audit_change();
DROP TABLE flows.api_keys;
DROP POLICY meter_shadows_own_esco ON flows.meter_shadows;
DROP POLICY meter_shadows_customer ON flows.meter_shadows;
CREATE POLICY meter_shadows_visible_meter ON flows.meter_shadows FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (id IN (SELECT m.id FROM flows.meter_registry AS m));
CREATE OR REPLACE FUNCTION flows.create_meter_shadow() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO flows.meter_shadows (id, prepay_enabled) VALUES (NEW.id, NEW.prepay_enabled);
    RETURN NULL;
END
$$;
DROP INDEX flows.meter_shadows_esco_idx;
ALTER TABLE flows.meter_shadows DROP CONSTRAINT meter_shadows_meter_esco_fkey;
ALTER TABLE flows.meter_shadows DROP COLUMN esco;
RESET ROLE;
DROP SCHEMA monitoring;
REVOKE USAGE ON SCHEMA flows FROM flows_anon;

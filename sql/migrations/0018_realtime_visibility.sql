-- 0018_realtime_visibility: a customer's row-level security chain (properties -> service heads ->
-- meters -> shadows) as index probes instead of whole-table hashes, and flows.customer_property_ids
-- in PL/pgSQL (its plan kept per session). The same rows for every role; a customer's read of one
-- meter costs a third of the CPU, which is what the realtime gateway does for every change a
-- customer sees (docs/realtime.md, Measured; sql/rls/policies.sql says why).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- rls/claims.sql ----
CREATE OR REPLACE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT coalesce(array_agg(DISTINCT a.property), '{}')
            FROM billing.customer_accounts AS ca
            JOIN billing.accounts AS a ON a.id = ca.account_id
            WHERE ca.customer_id = flows.current_customer_id()
              AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()));
END
$$;

-- ---- rls/policies.sql ----
ALTER POLICY properties_customer ON flows.properties
    USING (id = ANY ((SELECT flows.customer_property_ids())::uuid[]) AND esco = (SELECT flows.current_esco_id()));
ALTER POLICY properties_service_head_customer ON flows.properties_service_head
    USING (property = ANY (ARRAY(SELECT p.id FROM flows.properties AS p)));
ALTER POLICY service_head_meter_customer ON flows.service_head_meter
    USING (service_head = ANY (ARRAY(SELECT psh.service_head FROM flows.properties_service_head AS psh)));
ALTER POLICY meter_registry_customer ON flows.meter_registry
    USING (id = ANY (ARRAY(SELECT shm.meter FROM flows.service_head_meter AS shm)));
ALTER POLICY meter_shadows_customer ON flows.meter_shadows
    USING (id = ANY (ARRAY(SELECT m.id FROM flows.meter_registry AS m)));

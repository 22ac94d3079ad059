-- Rollback of 0018_realtime_visibility.
SET LOCAL ROLE flows_owner;
ALTER POLICY meter_shadows_customer ON flows.meter_shadows
    USING (id IN (SELECT m.id FROM flows.meter_registry AS m));
ALTER POLICY meter_registry_customer ON flows.meter_registry
    USING (id IN (SELECT shm.meter FROM flows.service_head_meter AS shm));
ALTER POLICY service_head_meter_customer ON flows.service_head_meter
    USING (service_head IN (SELECT psh.service_head FROM flows.properties_service_head AS psh));
ALTER POLICY properties_service_head_customer ON flows.properties_service_head
    USING (property IN (SELECT p.id FROM flows.properties AS p));
ALTER POLICY properties_customer ON flows.properties
    USING (id IN (SELECT unnest(flows.customer_property_ids())) AND esco = (SELECT flows.current_esco_id()));
CREATE OR REPLACE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(array_agg(DISTINCT a.property), '{}')
    FROM billing.customer_accounts AS ca
    JOIN billing.accounts AS a ON a.id = ca.account_id
    WHERE ca.customer_id = flows.current_customer_id()
      AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now())
$$;

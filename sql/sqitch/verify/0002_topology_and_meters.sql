-- Verify flows:0002_topology_and_meters
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, code, name, location, capacity_kw FROM flows.sites WHERE false;
    PERFORM id, esco, site, plot, address, type FROM flows.properties WHERE false;
    PERFORM id, esco, name, substation, rating_amps FROM flows.feeder_registry WHERE false;
    PERFORM id, esco, name, phase, fuse_rating, type, feeder FROM flows.service_head_registry WHERE false;
    PERFORM property, service_head FROM flows.properties_service_head WHERE false;
    PERFORM service_head, meter FROM flows.service_head_meter WHERE false;
    PERFORM id, site, type, name, rating_amps FROM flows.circuits WHERE false;
    PERFORM circuit, register, start_time, end_time FROM flows.circuit_register WHERE false;
    PERFORM id, serial, ip_address, emop_port, hardware, mode, esco, site FROM flows.meter_registry WHERE false;
    PERFORM register_id, meter_id, element, nature, status, direction_reversed FROM flows.meter_registers WHERE false;
    PERFORM id, balance, tariffs_active, csq, health, last_healthy_at FROM flows.meter_shadows WHERE false;
    ASSERT (SELECT count(*) FROM flows.meter_metrics) > 0, 'meter_metrics has no defaults';
    PERFORM * FROM api.get_meters_for_cli(NULL, NULL) WHERE false;
    PERFORM id FROM api.sites_new WHERE false;
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'flows.meter_registry'::regclass),
        'meter_registry without RLS';
END
$$;
ROLLBACK;

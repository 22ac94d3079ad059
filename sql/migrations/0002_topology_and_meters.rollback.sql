-- Rollback of 0002_topology_and_meters (grants and policies go with their objects).
DROP FUNCTION api.get_meters_for_cli(text, text);
DROP FUNCTION api.register_meter(text, text, inet, text, integer, uuid, text, boolean, boolean, boolean, text,
                                 text, uuid, jsonb);
DROP VIEW api.meter_metrics, api.meter_shadows_tariffs, api.meter_shadows, api.meter_registers,
          api.meter_registry, api.circuit_register, api.circuits, api.service_head_meter,
          api.properties_service_head, api.service_head_registry, api.feeder_registry, api.properties,
          api.sites_new, api.sites;
DROP FUNCTION flows.is_three_phase(flows.meter_registry);
DROP TABLE flows.meter_metrics, flows.circuit_register, flows.circuits, flows.service_head_meter,
           flows.meter_shadows, flows.meter_registers, flows.meter_registry, flows.properties_service_head,
           flows.service_head_registry, flows.feeder_registry, flows.properties, flows.sites;
DROP FUNCTION flows.create_meter_shadow(), flows.check_register_elements(),
              flows.tariff_is_valid(jsonb, boolean), flows.tariff_field_limit(text);

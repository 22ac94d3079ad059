-- Rollback of 0008_realtime.
SET LOCAL ROLE flows_owner;
DROP TRIGGER meter_shadows_realtime_insert ON flows.meter_shadows;
DROP TRIGGER meter_shadows_realtime_update ON flows.meter_shadows;
DROP TRIGGER meter_shadows_realtime_delete ON flows.meter_shadows;
DROP TRIGGER meter_commands_realtime_insert ON flows.meter_commands;
DROP TRIGGER meter_commands_realtime_update ON flows.meter_commands;
DROP TRIGGER meter_commands_realtime_delete ON flows.meter_commands;
DROP TRIGGER meter_registry_realtime_insert ON flows.meter_registry;
DROP TRIGGER meter_registry_realtime_update ON flows.meter_registry;
DROP TRIGGER meter_registry_realtime_delete ON flows.meter_registry;
DROP TRIGGER service_head_meter_realtime_insert ON flows.service_head_meter;
DROP TRIGGER service_head_meter_realtime_update ON flows.service_head_meter;
DROP TRIGGER service_head_meter_realtime_delete ON flows.service_head_meter;
DROP TRIGGER properties_service_head_realtime_insert ON flows.properties_service_head;
DROP TRIGGER properties_service_head_realtime_update ON flows.properties_service_head;
DROP TRIGGER properties_service_head_realtime_delete ON flows.properties_service_head;
DROP FUNCTION flows.prune_realtime_events(interval), flows.realtime_visible_escos(jsonb, uuid[]),
              flows.realtime_snapshot(text, jsonb, jsonb, integer), flows.realtime_query(text, jsonb, boolean),
              flows.realtime_condition(text, jsonb, text[]), flows.realtime_column_type(text, text),
              flows.realtime_changes(bigint, bigint),
              flows.realtime_pruned_through(), flows.realtime_head();
DROP PROCEDURE flows.follow_realtime(text, regclass, text, text, text), flows.capture_realtime(regclass);
DROP TABLE flows.realtime_state, flows.realtime_commits, flows.realtime_events, flows.realtime_sources,
           flows.realtime_relations;
DROP FUNCTION flows.number_realtime_commit(), flows.capture_realtime_changes();
DROP SEQUENCE flows.realtime_position;
REVOKE USAGE ON SCHEMA flows FROM flows_authenticator;

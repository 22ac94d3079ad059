CREATE VIEW api.feeder_registry WITH (security_invoker = true) AS
SELECT id, esco, name, substation, rating_amps, created_at
FROM flows.feeder_registry;
ALTER VIEW api.feeder_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.feeder_registry IS 'Low-voltage feeders; name unique within the ESCO.';

CREATE VIEW api.service_head_registry WITH (security_invoker = true) AS
SELECT id, esco, name, phase, fuse_rating, type, feeder, created_at
FROM flows.service_head_registry;
ALTER VIEW api.service_head_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.service_head_registry IS 'Service heads: where properties connect to the network.';
COMMENT ON COLUMN api.service_head_registry.phase IS 'Network phase the head is on: 1, 2 or 3.';
COMMENT ON COLUMN api.service_head_registry.fuse_rating IS 'Amps.';
COMMENT ON COLUMN api.service_head_registry.type IS 'customer_owned or network_owned.';

CREATE VIEW api.properties_service_head WITH (security_invoker = true) AS
SELECT property, service_head, esco, created_at
FROM flows.properties_service_head;
ALTER VIEW api.properties_service_head ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.properties_service_head IS
    'Links properties and service heads (many to many). POST to link, DELETE to unlink.';

CREATE VIEW api.service_head_meter WITH (security_invoker = true) AS
SELECT service_head, meter, esco, created_at
FROM flows.service_head_meter;
ALTER VIEW api.service_head_meter ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.service_head_meter IS 'Links service heads and meters. POST to link, DELETE to unlink.';

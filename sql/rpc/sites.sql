CREATE VIEW api.sites WITH (security_invoker = true) AS
SELECT id, esco, code, name, location, capacity_kw, created_at
FROM flows.sites;
ALTER VIEW api.sites ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.sites IS 'Sites: a group of properties behind one boundary settlement meter.';
COMMENT ON COLUMN api.sites.esco IS 'Owning ESCO (id); defaults to the caller''s ESCO.';
COMMENT ON COLUMN api.sites.code IS 'Short code, unique within the ESCO.';
COMMENT ON COLUMN api.sites.capacity_kw IS 'Connection capacity, kW.';

-- The production table was called sites_new; existing clients still use the name.
CREATE VIEW api.sites_new WITH (security_invoker = true) AS
SELECT id, esco, code, name, location, capacity_kw, created_at
FROM api.sites;
COMMENT ON VIEW api.sites_new IS 'Alias of sites, for clients written against the old sites_new table.';

CREATE VIEW api.properties WITH (security_invoker = true) AS
SELECT id, esco, site, plot, address, type, created_at
FROM flows.properties;
ALTER VIEW api.properties ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.properties IS 'Homes and businesses on a site.';
COMMENT ON COLUMN api.properties.plot IS 'Plot name, unique within the site (e.g. WL-01).';
COMMENT ON COLUMN api.properties.type IS 'residential or commercial.';

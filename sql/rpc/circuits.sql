CREATE VIEW api.circuits WITH (security_invoker = true) AS
SELECT id, esco, site, type, name, rating_amps, created_at
FROM flows.circuits;
ALTER VIEW api.circuits ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.circuits IS 'Circuits on a site: power, heat or solar.';

CREATE VIEW api.circuit_register WITH (security_invoker = true) AS
SELECT id, circuit, register, esco, start_time, end_time, notes
FROM flows.circuit_register;
ALTER VIEW api.circuit_register ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.circuit_register IS
    'Which register measures a circuit from start_time until end_time (null: still). '
    'A register''s ranges may not overlap; PATCH end_time to move it to another circuit.';

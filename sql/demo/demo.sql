-- Demo data for the embedded stack (`flows up`; skipped with --no-demo).
-- Idempotent: running it again changes nothing.
INSERT INTO flows.escos (code, name)
VALUES ('DEMO', 'Demo Community Energy')
ON CONFLICT (code) DO NOTHING;

INSERT INTO flows.meter_registry (serial, name, ip_address, hardware, esco, mode)
SELECT m.serial, m.name, m.ip::inet, m.hardware, e.id, 'active'
FROM (VALUES
    ('EML2137580001', 'Plot 1 supply', '127.0.0.1', 'C1.w'),
    ('EML2137580002', 'Plot 2 supply', '127.0.0.2', 'B1.w'),
    ('EML2137580003', 'Plot 3 supply', '127.0.0.3', 'B1.w')
) AS m (serial, name, ip, hardware)
CROSS JOIN flows.escos AS e
WHERE e.code = 'DEMO'
ON CONFLICT (serial) DO NOTHING;

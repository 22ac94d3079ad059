CREATE VIEW api.escos WITH (security_invoker = true) AS
SELECT id, code, name, low_balance_threshold, created_at, max_running_commands
FROM flows.escos;

COMMENT ON VIEW api.escos IS 'Energy service companies (ESCOs). Operators see their own; admins all.';
COMMENT ON COLUMN api.escos.code IS 'Short unique code, e.g. WLCE; the "esco" claim of JWTs.';
COMMENT ON COLUMN api.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';
COMMENT ON COLUMN api.escos.max_running_commands IS
    'How many of this ESCO''s meter commands may run at once across all workers (1-10000, default 50); admins set it.';

-- API keys: long-lived credentials for service integrations (a portal backend,
-- a billing system). Each is a JWT whose "api_key" claim names a row here; the
-- request check (rls/request_checks.sql) refuses it once the row is revoked or
-- expired, at once, on every API instance. Scoped to one ESCO, as an operator
-- (writes) or an analyst (reads). `flows api-key create` mints them; the secret
-- is the JWT itself and is never stored.
CREATE TABLE flows.api_keys (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco       uuid        NOT NULL REFERENCES flows.escos (id),
    name       text        NOT NULL,
    role       text        NOT NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    CONSTRAINT api_keys_role_valid CHECK (role IN ('flows_operator', 'flows_analyst')),
    CONSTRAINT api_keys_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT api_keys_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT api_keys_revoked_by_whom CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
COMMENT ON TABLE flows.api_keys IS
    'Long-lived API credentials for integrations, one ESCO each; revoked_at set = refused from then on.';
-- One live key per name and ESCO (a revoked name may be reused).
CREATE UNIQUE INDEX api_keys_live_name_key ON flows.api_keys (esco, name) WHERE revoked_at IS NULL;

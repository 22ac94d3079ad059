-- ESCOs (energy service companies): the tenant boundary. Every row in Flows
-- belongs to exactly one ESCO, directly or through its parents.
CREATE TABLE flows.escos (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code       text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT escos_code_key UNIQUE (code),
    CONSTRAINT escos_code_format CHECK (code ~ '^[A-Z][A-Z0-9]{1,15}$'),
    CONSTRAINT escos_name_not_blank CHECK (btrim(name) <> '')
);
COMMENT ON TABLE flows.escos IS 'Energy service companies; the tenant boundary.';

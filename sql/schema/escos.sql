-- ESCOs (energy service companies): the tenant boundary. Every configuration
-- row carries its ESCO; composite foreign keys (parent id, esco) make it
-- impossible to link rows of two ESCOs together.
CREATE TABLE flows.escos (
    id                    uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text          NOT NULL,
    name                  text          NOT NULL,
    low_balance_threshold numeric(8, 2) NOT NULL DEFAULT 15.00,
    created_at            timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT escos_code_key UNIQUE (code),
    CONSTRAINT escos_code_format CHECK (code ~ '^[A-Z][A-Z0-9]{1,15}$'),
    CONSTRAINT escos_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT escos_low_balance_threshold_range CHECK (low_balance_threshold BETWEEN 0 AND 1000)
);
COMMENT ON TABLE flows.escos IS 'Energy service companies; the tenant boundary.';
COMMENT ON COLUMN flows.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';

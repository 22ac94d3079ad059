-- ESCOs (energy service companies): the tenant boundary. Every configuration
-- row carries its ESCO; composite foreign keys (parent id, esco) make it
-- impossible to link rows of two ESCOs together.
CREATE TABLE flows.escos (
    id                    uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text          NOT NULL,
    name                  text          NOT NULL,
    low_balance_threshold numeric(8, 2) NOT NULL DEFAULT 15.00,
    created_at            timestamptz   NOT NULL DEFAULT now(),
    max_running_commands  integer       NOT NULL DEFAULT 50,  -- last: added by 0005 (a new column goes at the end)
    CONSTRAINT escos_code_key UNIQUE (code),
    CONSTRAINT escos_code_format CHECK (code ~ '^[A-Z][A-Z0-9]{1,15}$'),
    CONSTRAINT escos_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT escos_low_balance_threshold_range CHECK (low_balance_threshold BETWEEN 0 AND 1000),
    CONSTRAINT escos_max_running_commands_range CHECK (max_running_commands BETWEEN 1 AND 10000)
);
COMMENT ON TABLE flows.escos IS 'Energy service companies; the tenant boundary.';
COMMENT ON COLUMN flows.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';
COMMENT ON COLUMN flows.escos.max_running_commands IS 'Commands of this ESCO that may run at once, across all workers.';

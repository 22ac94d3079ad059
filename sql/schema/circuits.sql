-- Circuits: logical groups of load on a site (power, heat, solar), and which
-- registers measure them when. A register moves between circuits over time;
-- its ranges never overlap. Aggregates honour the ranges.
CREATE TABLE flows.circuits (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL,
    site        uuid        NOT NULL,
    type        text        NOT NULL,
    name        text        NOT NULL,
    rating_amps integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT circuits_id_esco_key UNIQUE (id, esco),
    CONSTRAINT circuits_site_name_key UNIQUE (site, name, esco),
    CONSTRAINT circuits_site_esco_fkey FOREIGN KEY (site, esco) REFERENCES flows.sites (id, esco),
    CONSTRAINT circuits_type_valid CHECK (type IN ('power', 'heat', 'solar')),
    CONSTRAINT circuits_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT circuits_rating_amps_positive CHECK (rating_amps > 0)
);
COMMENT ON TABLE flows.circuits IS 'Logical groupings of load on a site: power, heat or solar.';

CREATE TABLE flows.circuit_register (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    circuit    uuid        NOT NULL,
    register   uuid        NOT NULL,
    esco       uuid        NOT NULL,
    start_time timestamptz NOT NULL,
    end_time   timestamptz,
    notes      text,
    CONSTRAINT circuit_register_circuit_esco_fkey
        FOREIGN KEY (circuit, esco) REFERENCES flows.circuits (id, esco) ON DELETE CASCADE,
    CONSTRAINT circuit_register_register_esco_fkey
        FOREIGN KEY (register, esco) REFERENCES flows.meter_registers (register_id, esco) ON DELETE CASCADE,
    CONSTRAINT circuit_register_end_after_start CHECK (end_time > start_time),
    CONSTRAINT circuit_register_register_time_overlap
        EXCLUDE USING gist (register WITH =, esco WITH =, tstzrange(start_time, end_time) WITH &&)
);
COMMENT ON TABLE flows.circuit_register IS
    'Which register measures which circuit, from start_time until end_time (null: still).';
CREATE INDEX circuit_register_circuit_idx ON flows.circuit_register (circuit);

-- The electrical network: feeders, service heads, and what they connect.
CREATE TABLE flows.feeder_registry (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL REFERENCES flows.escos (id),
    name        text        NOT NULL,
    substation  text,
    rating_amps integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feeder_registry_id_esco_key UNIQUE (id, esco),
    CONSTRAINT feeder_registry_esco_name_key UNIQUE (esco, name),
    CONSTRAINT feeder_registry_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT feeder_registry_rating_amps_positive CHECK (rating_amps > 0)
);
COMMENT ON TABLE flows.feeder_registry IS 'Low-voltage feeders out of a substation.';

CREATE TABLE flows.service_head_registry (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL REFERENCES flows.escos (id),
    name        text        NOT NULL,
    phase       smallint,
    fuse_rating integer,
    type        text        NOT NULL DEFAULT 'network_owned',
    feeder      uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT service_head_registry_id_esco_key UNIQUE (id, esco),
    CONSTRAINT service_head_registry_esco_name_key UNIQUE (esco, name),
    CONSTRAINT service_head_registry_feeder_esco_fkey
        FOREIGN KEY (feeder, esco) REFERENCES flows.feeder_registry (id, esco),
    CONSTRAINT service_head_registry_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT service_head_registry_phase_valid CHECK (phase BETWEEN 1 AND 3),
    CONSTRAINT service_head_registry_fuse_rating_positive CHECK (fuse_rating > 0),
    CONSTRAINT service_head_registry_type_valid CHECK (type IN ('customer_owned', 'network_owned'))
);
COMMENT ON TABLE flows.service_head_registry IS 'Service heads: where a property connects to the network.';
COMMENT ON COLUMN flows.service_head_registry.phase IS 'Phase of the network the head is connected to (1, 2 or 3).';
COMMENT ON COLUMN flows.service_head_registry.fuse_rating IS 'Amps.';

CREATE INDEX service_head_registry_feeder_idx ON flows.service_head_registry (feeder);

-- One head can feed several properties; a property can have several heads
-- (e.g. a supply meter and a solar meter).
CREATE TABLE flows.properties_service_head (
    property     uuid        NOT NULL,
    service_head uuid        NOT NULL,
    esco         uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (property, service_head, esco),
    CONSTRAINT properties_service_head_property_esco_fkey
        FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco) ON DELETE CASCADE,
    CONSTRAINT properties_service_head_service_head_esco_fkey
        FOREIGN KEY (service_head, esco) REFERENCES flows.service_head_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.properties_service_head IS 'Which service heads supply which properties.';
CREATE INDEX properties_service_head_service_head_idx ON flows.properties_service_head (service_head);

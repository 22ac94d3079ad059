-- Sites and the properties on them.
CREATE TABLE flows.sites (
    id          uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid           NOT NULL REFERENCES flows.escos (id),
    code        text           NOT NULL,
    name        text           NOT NULL,
    location    text,
    capacity_kw numeric(10, 2),
    created_at  timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT sites_id_esco_key UNIQUE (id, esco),
    CONSTRAINT sites_esco_code_key UNIQUE (esco, code),
    CONSTRAINT sites_code_format CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'),
    CONSTRAINT sites_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT sites_capacity_kw_positive CHECK (capacity_kw > 0)
);
COMMENT ON TABLE flows.sites IS 'A site groups meters under one boundary settlement meter.';

CREATE TABLE flows.properties (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco       uuid        NOT NULL,
    site       uuid        NOT NULL,
    plot       text        NOT NULL,
    address    text,
    type       text        NOT NULL DEFAULT 'residential',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT properties_id_esco_key UNIQUE (id, esco),
    CONSTRAINT properties_site_plot_key UNIQUE (site, plot, esco),
    CONSTRAINT properties_site_esco_fkey FOREIGN KEY (site, esco) REFERENCES flows.sites (id, esco),
    CONSTRAINT properties_plot_not_blank CHECK (btrim(plot) <> ''),
    CONSTRAINT properties_type_valid CHECK (type IN ('residential', 'commercial'))
);
COMMENT ON TABLE flows.properties IS 'Homes and businesses; plot is unique per site (e.g. WL-01).';

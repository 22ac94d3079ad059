-- Tariffs for customers: the regulator's price cap per region and quarter
-- (benchmark_tariffs), each ESCO's quarter (microgrid_tariffs: its discount
-- and the meters' prepayment settings) and each customer's rates
-- (customer_tariffs). Rates are GBP including 5% VAT, 5 decimals, derived by
-- billing.discounted_rate and never typed in.

CREATE TABLE billing.benchmark_tariffs (
    region          text           NOT NULL,
    period_start    date           NOT NULL,
    unit_rate       numeric(10, 5) NOT NULL,
    standing_charge numeric(10, 5) NOT NULL,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (region, period_start),
    CONSTRAINT benchmark_tariffs_region_valid CHECK (region IN (
        'north_west', 'north_east', 'yorkshire', 'east_midlands', 'west_midlands', 'eastern', 'london',
        'south_east', 'southern', 'south_west', 'north_wales_mersey', 'south_wales', 'north_scotland',
        'south_scotland')),
    CONSTRAINT benchmark_tariffs_quarter_start CHECK (period_start = billing.quarter_start(period_start)),
    CONSTRAINT benchmark_tariffs_unit_rate_range CHECK (unit_rate > 0 AND unit_rate <= 1),
    CONSTRAINT benchmark_tariffs_standing_charge_range CHECK (standing_charge >= 0 AND standing_charge <= 2)
);
COMMENT ON TABLE billing.benchmark_tariffs IS
    'The price cap per Ofgem region and quarter: unit rate GBP/kWh and standing charge GBP/day, incl. 5% VAT.';


CREATE TABLE billing.microgrid_tariffs (
    id                   uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                 uuid           NOT NULL REFERENCES flows.escos (id),
    period_start         date           NOT NULL,
    region               text           NOT NULL,
    discount             numeric(5, 2)  NOT NULL DEFAULT 25,
    emergency_credit     numeric(8, 2)  NOT NULL DEFAULT 15,
    ecredit_availability numeric(8, 2)  NOT NULL DEFAULT 10,
    debt_recovery_rate   numeric(8, 5)  NOT NULL DEFAULT 0.25,
    created_at           timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT microgrid_tariffs_id_esco_key UNIQUE (id, esco),
    CONSTRAINT microgrid_tariffs_esco_period_key UNIQUE (esco, period_start),
    CONSTRAINT microgrid_tariffs_benchmark_fkey
        FOREIGN KEY (region, period_start) REFERENCES billing.benchmark_tariffs (region, period_start),
    CONSTRAINT microgrid_tariffs_discount_range CHECK (discount >= 0 AND discount <= 100),
    CONSTRAINT microgrid_tariffs_prepayment_range
        CHECK (emergency_credit BETWEEN 0 AND 500 AND ecredit_availability BETWEEN 0 AND 500
               AND debt_recovery_rate BETWEEN 0 AND 20)
);
COMMENT ON TABLE billing.microgrid_tariffs IS
    'An ESCO''s quarter: its region''s price cap, the default discount (percent) and the meters'' prepayment '
    'settings (emergency credit, when it is available, debt recovery per day; GBP).';
COMMENT ON COLUMN billing.microgrid_tariffs.discount IS
    'Percent off the price cap (production misnamed it basis points): 25 means 25%.';


CREATE TABLE billing.customer_tariffs (
    id                  uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid           NOT NULL,
    customer_id         uuid           NOT NULL,
    microgrid_tariff_id uuid           NOT NULL,
    period_start        date           NOT NULL,
    effective_from      timestamptz    NOT NULL,
    effective_to        timestamptz    NOT NULL,
    discount            numeric(5, 2)  NOT NULL,
    unit_rate           numeric(10, 5) NOT NULL,
    standing_charge     numeric(10, 5) NOT NULL,
    created_at          timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT customer_tariffs_id_esco_key UNIQUE (id, esco),
    CONSTRAINT customer_tariffs_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT customer_tariffs_microgrid_esco_fkey
        FOREIGN KEY (microgrid_tariff_id, esco) REFERENCES billing.microgrid_tariffs (id, esco),
    CONSTRAINT customer_tariffs_discount_range CHECK (discount >= 0 AND discount <= 100),
    CONSTRAINT customer_tariffs_in_quarter
        CHECK (effective_to > effective_from
               AND effective_from >= flows.uk_day_start(period_start)
               AND effective_to <= flows.uk_day_start((period_start + interval '3 months')::date)),
    CONSTRAINT customer_tariffs_half_hours
        CHECK (date_bin('30 minutes', effective_from, 'epoch') = effective_from
               AND date_bin('30 minutes', effective_to, 'epoch') = effective_to),
    CONSTRAINT customer_tariffs_overlap
        EXCLUDE USING gist (customer_id WITH =, tstzrange(effective_from, effective_to) WITH &&)
);
COMMENT ON TABLE billing.customer_tariffs IS
    'A customer''s rates (GBP incl. VAT) from effective_from to effective_to, within one quarter: '
    'the price cap x (1 - discount/100), half-up to 5 decimals (billing.discounted_rate).';
CREATE INDEX customer_tariffs_microgrid_idx ON billing.customer_tariffs (microgrid_tariff_id);
CREATE INDEX customer_tariffs_customer_idx ON billing.customer_tariffs (customer_id, effective_from);

-- Rates are derived, never entered: from the quarter's price cap and the discount.
CREATE FUNCTION billing.derive_customer_rates() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    cap record;
BEGIN
    SELECT b.unit_rate, b.standing_charge, m.period_start INTO cap
    FROM billing.microgrid_tariffs AS m
    JOIN billing.benchmark_tariffs AS b ON b.region = m.region AND b.period_start = m.period_start
    WHERE m.id = NEW.microgrid_tariff_id;
    NEW.period_start := cap.period_start;
    NEW.unit_rate := billing.discounted_rate(cap.unit_rate, NEW.discount);
    NEW.standing_charge := billing.discounted_rate(cap.standing_charge, NEW.discount);
    RETURN NEW;
END
$$;

CREATE TRIGGER customer_tariffs_rates BEFORE INSERT OR UPDATE ON billing.customer_tariffs
    FOR EACH ROW EXECUTE FUNCTION billing.derive_customer_rates();

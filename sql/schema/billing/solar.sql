-- Solar credit: an installation (a roof's panels, MCS certified, declared net
-- capacity in kWp) earns its ESCO's rate in pence per kWp per year; per day,
-- the yearly amount / the days of that year. It is shared across properties by
-- allocation ratios (at most 1 in all) and paid monthly as a top-up to whoever
-- occupied each property's supply account that day, for the days they had a
-- solar contract in force (never under an ended one). The month's credits are
-- made once per property, month and payee (api.generate_solar_credits).

CREATE TABLE billing.solar_rates (
    id                 uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco               uuid          NOT NULL REFERENCES flows.escos (id),
    effective_from     date          NOT NULL,
    pence_per_kwp_year numeric(8, 2) NOT NULL,
    created_at         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_rates_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_rates_esco_effective_from_key UNIQUE (esco, effective_from),
    CONSTRAINT solar_rates_range CHECK (pence_per_kwp_year > 0 AND pence_per_kwp_year <= 100000)
);
COMMENT ON TABLE billing.solar_rates IS
    'An ESCO''s solar credit rate in pence per kWp per year (e.g. 7,800-8,500), from effective_from on.';

CREATE TABLE billing.solar_installations (
    id                       uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                     uuid          NOT NULL,
    property                 uuid          NOT NULL,
    mcs_certificate          text          NOT NULL,
    declared_net_capacity_kwp numeric(7, 3) NOT NULL,
    commissioned_on          date          NOT NULL,
    decommissioned_on        date,
    created_at               timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_installations_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_installations_esco_certificate_key UNIQUE (esco, mcs_certificate),
    CONSTRAINT solar_installations_property_esco_fkey
        FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_installations_certificate_format CHECK (mcs_certificate ~ '^[A-Za-z0-9][A-Za-z0-9/ -]{3,39}$'),
    CONSTRAINT solar_installations_capacity_range
        CHECK (declared_net_capacity_kwp > 0 AND declared_net_capacity_kwp <= 1000),
    CONSTRAINT solar_installations_decommissioned_after CHECK (decommissioned_on > commissioned_on)
);
COMMENT ON TABLE billing.solar_installations IS
    'Solar panels on a property: MCS certificate, declared net capacity (kWp), commissioned (and decommissioned) on.';

CREATE TABLE billing.solar_allocations (
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    esco            uuid         NOT NULL,
    installation_id uuid         NOT NULL,
    property        uuid         NOT NULL,
    ratio           numeric(5, 4) NOT NULL,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT solar_allocations_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_allocations_esco_installation_property_key UNIQUE (esco, installation_id, property),
    CONSTRAINT solar_allocations_installation_esco_fkey
        FOREIGN KEY (installation_id, esco) REFERENCES billing.solar_installations (id, esco),
    CONSTRAINT solar_allocations_property_esco_fkey FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_allocations_ratio_range CHECK (ratio > 0 AND ratio <= 1)
);
COMMENT ON TABLE billing.solar_allocations IS
    'Which properties share an installation''s credit, and how much each (ratio); an installation''s ratios add '
    'up to at most 1.';

-- An installation's ratios add up to at most 1: checked at commit (so ratios
-- can be moved between properties in one transaction), with the installation
-- row locked, so two transactions adding allocations at once cannot both pass.
CREATE FUNCTION billing.check_solar_allocations() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    total numeric;
BEGIN
    PERFORM FROM billing.solar_installations AS i WHERE i.id = NEW.installation_id FOR UPDATE;
    SELECT sum(a.ratio) INTO total FROM billing.solar_allocations AS a WHERE a.installation_id = NEW.installation_id;
    IF total > 1 THEN
        RAISE EXCEPTION 'the allocations of solar installation % add up to %, more than 1', NEW.installation_id, total
            USING ERRCODE = 'check_violation', HINT = 'lower the other properties'' ratios first (in one transaction)';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER solar_allocations_at_most_one AFTER INSERT OR UPDATE ON billing.solar_allocations
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing.check_solar_allocations();


-- A month's solar credit of one property for one payee.
CREATE TABLE billing.solar_credits (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid          NOT NULL,
    property    uuid          NOT NULL,
    month       date          NOT NULL,
    customer_id uuid          NOT NULL,
    account_id  uuid          NOT NULL,
    amount      numeric(8, 2) NOT NULL,
    status      text          NOT NULL,
    details     jsonb         NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_credits_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_credits_once_per_month UNIQUE (esco, property, month, customer_id),
    CONSTRAINT solar_credits_property_esco_fkey FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_credits_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT solar_credits_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT solar_credits_month_start CHECK (extract(day FROM month) = 1),
    CONSTRAINT solar_credits_amount_not_negative CHECK (amount >= 0),
    CONSTRAINT solar_credits_status_valid CHECK (status IN ('paid', 'held', 'not_paid', 'cancelled'))
);
COMMENT ON TABLE billing.solar_credits IS
    'A month''s solar credit of a property for one occupier: paid (a top-up on the supply meter), held (owed '
    'but not paid to a meter: the payee moved out, or the meter takes no tokens), not_paid (no solar contract in '
    'force those days, or nothing earned), cancelled (its top-up was). details: days, pence, why.';
CREATE INDEX solar_credits_month_idx ON billing.solar_credits (esco, month);

-- Makes an ESCO's solar credits of a month that is over (once per property,
-- month and payee: running it again adds only what is missing), and pays each
-- as a top-up. Per UK day: each allocated installation in service earns
-- kWp x ratio x the rate in force / the days of the year; the day goes to the
-- occupier of the property's supply account at noon, paid if they had a solar
-- contract in force that day. Refused when an installation earns on a day no
-- rate is in force (never paying silently less). Returns the credits made.
CREATE FUNCTION billing.generate_solar_credits(p_esco uuid, p_month date) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    made integer := 0;
    unrated date;
    credit record;
BEGIN
    IF p_month IS NULL OR extract(day FROM p_month) <> 1 OR p_month + interval '1 month' > flows.uk_day(pg_catalog.now()) THEN
        RAISE EXCEPTION 'month must be the first day of a month that is over, got %', p_month
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(d.day) INTO unrated
    FROM billing.solar_installations AS i
    JOIN billing.solar_allocations AS a ON a.installation_id = i.id
    CROSS JOIN LATERAL (SELECT x::date AS day FROM generate_series(p_month, p_month + interval '1 month' - interval '1 day',
                                                                  interval '1 day') AS x) AS d
    WHERE i.esco = p_esco AND d.day >= i.commissioned_on AND (i.decommissioned_on IS NULL OR d.day < i.decommissioned_on)
      AND NOT EXISTS (SELECT FROM billing.solar_rates AS r WHERE r.esco = p_esco AND r.effective_from <= d.day);
    IF unrated IS NOT NULL THEN
        RAISE EXCEPTION 'no solar rate in force on %: solar installations earn that day', unrated
            USING ERRCODE = 'invalid_parameter_value', HINT = 'add a solar rate (solar_rates) from that day or earlier';
    END IF;
    FOR credit IN
        WITH days AS (
            SELECT x::date AS day, (x::date + time '12:00') AT TIME ZONE 'Europe/London' AS noon,
                   (pg_catalog.make_date(extract(year FROM x)::integer + 1, 1, 1)
                    - pg_catalog.make_date(extract(year FROM x)::integer, 1, 1)) AS year_days
            FROM generate_series(p_month, p_month + interval '1 month' - interval '1 day', interval '1 day') AS x
        ),
        earned AS (  -- pence per property and day, unrounded
            SELECT a.property, d.day, d.noon,
                   sum(i.declared_net_capacity_kwp * a.ratio * r.pence_per_kwp_year / d.year_days) AS pence
            FROM billing.solar_installations AS i
            JOIN billing.solar_allocations AS a ON a.installation_id = i.id
            JOIN days AS d ON d.day >= i.commissioned_on AND (i.decommissioned_on IS NULL OR d.day < i.decommissioned_on)
            CROSS JOIN LATERAL (SELECT s.pence_per_kwp_year FROM billing.solar_rates AS s
                                WHERE s.esco = i.esco AND s.effective_from <= d.day
                                ORDER BY s.effective_from DESC LIMIT 1) AS r
            WHERE i.esco = p_esco
            GROUP BY a.property, d.day, d.noon
        ),
        payees AS (  -- the occupier of the property's supply account at noon, and their solar contract
            SELECT e.property, e.day, e.pence, ac.id AS account_id, ca.customer_id,
                   EXISTS (SELECT FROM billing.contracts AS c
                           WHERE c.customer_id = ca.customer_id AND c.type = 'solar' AND c.signed_at IS NOT NULL
                             AND c.effective_date <= e.day AND (c.end_date IS NULL OR c.end_date > e.day)) AS contracted
            FROM earned AS e
            JOIN billing.accounts AS ac ON ac.property = e.property AND ac.type = 'supply'
             AND ac.opened_at <= e.noon AND (ac.closed_at IS NULL OR ac.closed_at > e.noon)
            JOIN billing.customer_accounts AS ca ON ca.account_id = ac.id AND ca.role = 'occupier'
             AND ca.start_time <= e.noon AND (ca.end_time IS NULL OR ca.end_time > e.noon)
        ),
        credits AS (
            SELECT p.property, p.customer_id, (array_agg(p.account_id ORDER BY p.day DESC))[1] AS account_id,
                   billing.round_half_up(coalesce(sum(p.pence) FILTER (WHERE p.contracted), 0) / 100, 2) AS amount,
                   pg_catalog.jsonb_build_object(
                       'days_paid', count(*) FILTER (WHERE p.contracted),
                       'days_without_solar_contract', count(*) FILTER (WHERE NOT p.contracted),
                       'pence_earned', billing.round_half_up(sum(p.pence), 5),
                       'pence_not_paid', billing.round_half_up(coalesce(sum(p.pence) FILTER (WHERE NOT p.contracted), 0), 5))
                       AS details
            FROM payees AS p
            GROUP BY p.property, p.customer_id
        ),
        judged AS (
            SELECT c.*, ac.meter_id,
                   CASE WHEN c.amount = 0 THEN 'not_paid'
                        WHEN c.amount > 1000 OR billing.topup_problem(ac) IS NOT NULL
                             OR NOT EXISTS (SELECT FROM billing.customer_accounts AS ca
                                            WHERE ca.account_id = c.account_id AND ca.customer_id = c.customer_id
                                              AND ca.role = 'occupier' AND ca.start_time <= pg_catalog.now()
                                              AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()))
                             THEN 'held'
                        ELSE 'paid' END AS status,
                   CASE WHEN c.amount = 0 THEN 'no solar contract in force, or nothing earned'
                        WHEN c.amount > 1000 THEN 'over the top-up limit of 1000 GBP'
                        ELSE coalesce(billing.topup_problem(ac), 'the occupier has moved out') END AS why
            FROM credits AS c JOIN billing.accounts AS ac ON ac.id = c.account_id
        )
        INSERT INTO billing.solar_credits (esco, property, month, customer_id, account_id, amount, status, details)
        SELECT p_esco, j.property, p_month, j.customer_id, j.account_id, j.amount, j.status,
               j.details || CASE WHEN j.status = 'paid' THEN '{}'::jsonb
                                 ELSE pg_catalog.jsonb_build_object('why', j.why) END
        FROM judged AS j
        ON CONFLICT ON CONSTRAINT solar_credits_once_per_month DO NOTHING
        RETURNING id, account_id, customer_id, amount, status
    LOOP
        made := made + 1;
        IF credit.status = 'paid' THEN
            PERFORM billing.create_topup(p_esco, credit.account_id,
                                         (SELECT a.meter_id FROM billing.accounts AS a WHERE a.id = credit.account_id),
                                         credit.amount, 'solar_credit', credit.customer_id, p_solar_credit => credit.id,
                                         p_notes => pg_catalog.format('solar credit %s', pg_catalog.to_char(p_month, 'YYYY-MM')));
        END IF;
    END LOOP;
    RETURN made;
END
$$;
COMMENT ON FUNCTION billing.generate_solar_credits(uuid, date) IS
    'Makes (once) and pays an ESCO''s solar credits for a month that is over; returns how many were made.';

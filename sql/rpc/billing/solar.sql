-- Solar credit over HTTP: the ESCO's rate, installations and how they are
-- shared (operators write these views directly), and each month's credits.

CREATE VIEW api.solar_rates WITH (security_invoker = true) AS
SELECT id, esco, effective_from, pence_per_kwp_year, created_at
FROM billing.solar_rates;
ALTER VIEW api.solar_rates ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.solar_rates IS 'The ESCO''s solar credit rate, pence per kWp per year, from effective_from on.';

CREATE VIEW api.solar_installations WITH (security_invoker = true) AS
SELECT id, esco, property, mcs_certificate, declared_net_capacity_kwp, commissioned_on, decommissioned_on, created_at
FROM billing.solar_installations;
ALTER VIEW api.solar_installations ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.solar_installations IS
    'Solar installations: property, MCS certificate, declared net capacity (kWp), commissioned on.';

CREATE VIEW api.solar_allocations WITH (security_invoker = true) AS
SELECT id, esco, installation_id, property, ratio, created_at
FROM billing.solar_allocations;
ALTER VIEW api.solar_allocations ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.solar_allocations IS
    'How an installation''s credit is shared across properties: ratios adding up to at most 1 (checked at commit).';

CREATE VIEW api.solar_credits WITH (security_invoker = true) AS
SELECT id, esco, property, month, customer_id, account_id, amount, status, details, created_at
FROM billing.solar_credits;
COMMENT ON VIEW api.solar_credits IS
    'Solar credit per property, month and occupier: paid (a top-up), held (the occupier moved out, or the meter '
    'takes no tokens), not_paid (no solar contract in force), cancelled. details: days and pence, and why.';


CREATE FUNCTION api.generate_solar_credits(esco_code text, month date) RETURNS SETOF api.solar_credits
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(generate_solar_credits.esco_code);
BEGIN
    PERFORM billing.generate_solar_credits(esco_id, generate_solar_credits.month);
    RETURN QUERY SELECT * FROM api.solar_credits AS s
                 WHERE s.esco = esco_id AND s.month = generate_solar_credits.month
                 ORDER BY s.property, s.customer_id;
END
$$;
COMMENT ON FUNCTION api.generate_solar_credits(text, date) IS
    'Makes and pays the ESCO''s solar credits for a month that is over (month: its first day), once per property, '
    'month and occupier: running it again adds only what is missing. Returns the month''s credits.';

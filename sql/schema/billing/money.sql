-- Money: GBP as numeric, never float, and ONE rounding rule (docs/billing.md).
--
--   Rates (GBP per kWh, GBP per day) have 5 decimals (the meters' 0.00001 GBP).
--   Amounts are pence (2 decimals).
--   Rounding is half-up: a half rounds away from zero, so a credit note is the
--   exact mirror of the statement it cancels (PostgreSQL's numeric round()).
--   A statement is rounded once, per invoice (HMRC allows per line or per
--   invoice): its net is the exact sum of quantity x rate (VAT-inclusive
--   prices), divided by 1.05 once and rounded to the penny; VAT is the rounded net x the VAT rate, rounded to the penny; the
--   lines show the net shared out to the penny so that they add up to it
--   exactly (largest remainder). Splitting a period never changes the total.
-- Every rounding in billing goes through billing.round_half_up.

CREATE FUNCTION billing.round_half_up(amount numeric, places integer) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN round(amount, places);
COMMENT ON FUNCTION billing.round_half_up(numeric, integer) IS
    'The one rounding rule of billing: half-up (a half rounds away from zero) to the given decimal places.';

-- The VAT rate prices include: the price cap and the meters' tariffs are
-- quoted with 5% VAT (domestic energy).
CREATE FUNCTION billing.included_vat_rate() RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 0.05;

-- Net of VAT, unrounded, of an amount at VAT-inclusive prices. Not STRICT
-- (NULL gives NULL all the same) so that the planner inlines it: it never
-- inlines a strict function whose body calls a non-strict one
-- (included_vat_rate), and a billing run calls it for every line.
CREATE FUNCTION billing.net_of_vat(gross numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN gross / (1 + billing.included_vat_rate());

-- A customer rate from a benchmark (price-cap) rate and a discount in percent:
-- benchmark x (1 - discount / 100), rounded half-up to 5 decimals.
CREATE FUNCTION billing.discounted_rate(benchmark numeric, discount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN billing.round_half_up(benchmark * (1 - discount / 100), 5);
COMMENT ON FUNCTION billing.discounted_rate(numeric, numeric) IS
    'benchmark x (1 - discount/100), half-up to 5 decimals: how every customer and microgrid rate is derived.';

-- VAT rate of a statement: 5% for homes; a business (commercial property)
-- above the de-minimis 33 kWh a day pays the standard 20%.
CREATE FUNCTION billing.vat_rate(property_type text, kwh numeric, days numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN property_type = 'commercial' AND days > 0 AND kwh / days > 33 THEN 0.20 ELSE 0.05 END;

-- UK days (Europe/London) between two instants, counting part-days by the
-- share of that day's length (23, 24 or 25 hours) they cover: a standing
-- charge per day is pro rata to the time billed.
CREATE FUNCTION billing.uk_day_fraction(ts timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN extract(epoch FROM ts - flows.uk_day_start(flows.uk_day(ts)))
     / extract(epoch FROM flows.uk_day_start(flows.uk_day(ts) + 1) - flows.uk_day_start(flows.uk_day(ts)));

CREATE FUNCTION billing.uk_days(from_time timestamptz, to_time timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN billing.round_half_up((flows.uk_day(to_time) - flows.uk_day(from_time))
                             + billing.uk_day_fraction(to_time) - billing.uk_day_fraction(from_time), 5);
COMMENT ON FUNCTION billing.uk_days(timestamptz, timestamptz) IS
    'UK days between two instants, part-days pro rata to the day''s length, half-up to 5 decimals.';

-- First day of the quarter a day falls in (price caps change quarterly).
CREATE FUNCTION billing.quarter_start(day date) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN date_trunc('quarter', day::timestamp)::date;

-- Small helpers shared by many tables and views.

-- Keeps updated_at honest on every table that has one.
CREATE FUNCTION flows.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

-- UK local time. Storage is UTC; days and months for reports and billing are
-- UK days (00:00 Europe/London), which have 46 or 50 half hours when the
-- clocks change. Plain SQL, no SET clause, so the planner can inline them.
CREATE FUNCTION flows.uk_day(ts timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (ts AT TIME ZONE 'Europe/London')::date;
COMMENT ON FUNCTION flows.uk_day(timestamptz) IS 'The UK calendar day a UTC instant falls on.';

CREATE FUNCTION flows.uk_day_start(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN day::timestamp AT TIME ZONE 'Europe/London';
COMMENT ON FUNCTION flows.uk_day_start(date) IS 'The UTC instant a UK calendar day starts (00:00 Europe/London).';

CREATE FUNCTION flows.uk_month(day date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc('month', day::timestamp)::date;
COMMENT ON FUNCTION flows.uk_month(date) IS 'First day of the month of a UK calendar day.';

-- An ISO 8601 time with an explicit offset ('2026-11-21T10:00:00Z', '...+01:00'):
-- the only unambiguous way to pass an instant as text.
CREATE FUNCTION flows.is_iso_time(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN value ~ '^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:?\d\d)?)$';

-- Customers and their accounts over HTTP: the production endpoint names
-- (customers, accounts, customer_accounts, contracts) and the operator
-- workflows: onboard a customer to a property, move out, move in.

CREATE VIEW api.customers WITH (security_invoker = true) AS
SELECT id, esco, fullname, email, phone, status, details_confirmed_at, payment_method, invite_expires_at,
       invite_expires_at < now() AS invite_expired, created_at, updated_at
FROM billing.customers;
ALTER VIEW api.customers ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.customers IS
    'Customers (people who pay). status: pending (invited) -> onboarding -> live -> exiting -> archived; live needs '
    'confirmed details, a payment method and a signed contract. Onboard with rpc/onboard_customer.';
COMMENT ON COLUMN api.customers.invite_expired IS 'The invitation (7 days) ran out before it was accepted.';

CREATE VIEW api.accounts WITH (security_invoker = true) AS
SELECT id, esco, account_number, type, status, property, meter_id, opened_at, closed_at, created_at
FROM billing.accounts;
COMMENT ON VIEW api.accounts IS
    'What is billed: supply, solar or ev account of a property and the meter it is billed for. account_number '
    'is printed on statements and is the bank-transfer reference.';

CREATE VIEW api.customer_accounts WITH (security_invoker = true) AS
SELECT id, esco, customer_id, account_id, role, start_time, end_time, move_in_reads, move_out_reads, created_at
FROM billing.customer_accounts;
COMMENT ON VIEW api.customer_accounts IS
    'Who stands behind an account when: owner or occupier from start_time (move in) to end_time (move out). '
    'Occupiers pay while they occupy; the owner pays while nobody does.';

CREATE VIEW api.contracts WITH (security_invoker = true) AS
SELECT id, esco, customer_id, account_id, type, terms_version, signed_at, effective_date, end_date, created_at
FROM billing.contracts;
ALTER VIEW api.contracts ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.contracts IS 'Contracts of customers: terms version, type, signed, effective and end date.';

CREATE VIEW api.esco_billing WITH (security_invoker = true) AS
SELECT esco, legal_name, address, email, phone, website, vat_number, last_account_number, last_invoice_number
FROM billing.esco_billing;
COMMENT ON VIEW api.esco_billing IS
    'What statements print about the ESCO (legal name, address, contact, VAT number) and its counters.';


-- Cumulative reads of a meter's registers at a time, as recorded: the last
-- read at or before it, estimated when over an hour older than the moment.
CREATE FUNCTION billing.reads_at(p_meter uuid, p_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
               'read', x.read, 'timestamp', x."timestamp", 'estimated', x."timestamp" < p_at - interval '1 hour')), '{}')
    FROM flows.meter_registers AS r
    JOIN LATERAL (SELECT i.read, i."timestamp" FROM flows.register_import AS i
                  WHERE i.register_id = r.register_id AND i."timestamp" <= p_at
                  ORDER BY i."timestamp" DESC LIMIT 1) AS x ON true
    WHERE r.meter_id = p_meter AND tstzrange(r.start_time, r.end_time) @> p_at
$$;

-- A move time: a whole half hour, not more than a year away.
CREATE FUNCTION billing.check_move_time(p_what text, p_at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_at IS NULL OR date_bin('30 minutes', p_at, 'epoch') <> p_at THEN
        RAISE EXCEPTION '% must be a whole half hour (:00 or :30), got %', p_what, p_at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'statements split at half hours';
    END IF;
    RETURN p_at;
END
$$;

-- Links a customer to an account from p_at, refusing overlaps with a message
-- that names who is there.
CREATE FUNCTION billing.link_customer(p_account uuid, p_customer uuid, p_role text, p_at timestamptz)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    clash text;
    added uuid;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_account FOR UPDATE;
    IF account.id IS NULL THEN
        RAISE EXCEPTION 'no account %', p_account USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_role NOT IN ('owner', 'occupier') THEN
        RAISE EXCEPTION 'role must be owner or occupier, got %', p_role USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.format('%s from %s%s', c.fullname, ca.start_time,
                             coalesce(' until ' || ca.end_time, ' (not moved out)'))
    INTO clash
    FROM billing.customer_accounts AS ca
    JOIN billing.customers AS c ON c.id = ca.customer_id
    WHERE ca.account_id = p_account AND ca.role = p_role AND tstzrange(ca.start_time, ca.end_time) @> p_at
       OR (ca.account_id = p_account AND ca.role = p_role AND ca.start_time > p_at)
    ORDER BY ca.start_time LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'account % already has an % at %: %', account.account_number, p_role, p_at, clash
            USING ERRCODE = 'exclusion_violation',
                  HINT = CASE p_role WHEN 'occupier' THEN 'move them out first (rpc/move_out)'
                                     ELSE 'end the other owner''s link first' END;
    END IF;
    INSERT INTO billing.customer_accounts (esco, customer_id, account_id, role, start_time, move_in_reads)
    VALUES (account.esco, p_customer, p_account, p_role, p_at,
            CASE WHEN p_role = 'occupier' THEN billing.reads_at(account.meter_id, p_at) END)
    RETURNING id INTO added;
    RETURN added;
END
$$;


CREATE FUNCTION api.onboard_customer(
    property    uuid,
    fullname    text,
    email       text DEFAULT NULL,
    phone       text DEFAULT NULL,
    role        text DEFAULT 'owner_occupier',
    move_in     timestamptz DEFAULT NULL,
    customer_id uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    home flows.properties;
    supply_meter uuid;
    customer billing.customers;
    account billing.accounts;
    at timestamptz := billing.check_move_time('move_in',
                          coalesce(move_in, date_bin('30 minutes', pg_catalog.now(), 'epoch')));
    links uuid[] := ARRAY[]::uuid[];
BEGIN
    IF role NOT IN ('owner_occupier', 'occupier', 'owner') THEN
        RAISE EXCEPTION 'role must be owner_occupier, occupier (a tenant) or owner (a landlord), got %', role
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO home FROM flows.properties AS p WHERE p.id = onboard_customer.property;
    IF home.id IS NULL THEN
        RAISE EXCEPTION 'no property %', onboard_customer.property USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The supply meter: the prepay (else any) meter behind the property's service heads.
    SELECT m.id INTO supply_meter
    FROM flows.properties_service_head AS psh
    JOIN flows.service_head_meter AS shm ON shm.service_head = psh.service_head
    JOIN flows.meter_registry AS m ON m.id = shm.meter
    WHERE psh.property = home.id
    ORDER BY m.prepay_enabled DESC, NOT flows.is_three_phase(m) DESC, m.serial
    LIMIT 1;
    IF supply_meter IS NULL THEN
        RAISE EXCEPTION 'property % has no meter behind its service heads', home.plot
            USING ERRCODE = 'invalid_parameter_value', HINT = 'connect its supply meter first (service_head_meter)';
    END IF;

    IF customer_id IS NULL THEN
        INSERT INTO billing.customers (esco, fullname, email, phone, invite_token, invite_expires_at)
        VALUES (home.esco, onboard_customer.fullname, onboard_customer.email, onboard_customer.phone,
                replace(gen_random_uuid()::text, '-', ''), pg_catalog.now() + interval '7 days')
        RETURNING * INTO customer;
    ELSE
        SELECT * INTO customer FROM billing.customers AS c WHERE c.id = onboard_customer.customer_id;
        IF customer.id IS NULL OR customer.esco <> home.esco THEN
            RAISE EXCEPTION 'no customer % in the property''s ESCO', onboard_customer.customer_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    SELECT * INTO account FROM billing.accounts AS a
    WHERE a.property = home.id AND a.type = 'supply' AND a.status <> 'closed';
    IF account.id IS NULL THEN
        INSERT INTO billing.accounts (esco, account_number, type, status, property, meter_id, opened_at)
        VALUES (home.esco, billing.take_numbers(home.esco, 'account', 1)::text, 'supply', 'open', home.id,
                supply_meter, at)
        RETURNING * INTO account;
    END IF;
    IF role IN ('owner_occupier', 'owner') THEN
        links := links || billing.link_customer(account.id, customer.id, 'owner', at);
    END IF;
    IF role IN ('owner_occupier', 'occupier') THEN
        links := links || billing.link_customer(account.id, customer.id, 'occupier', at);
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'customer', (SELECT pg_catalog.to_jsonb(c) FROM api.customers AS c WHERE c.id = customer.id),
        'invite_token', customer.invite_token,
        'accounts', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(a)) FROM api.accounts AS a WHERE a.id = account.id),
        'customer_accounts', (SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(l) ORDER BY l.role)
                              FROM api.customer_accounts AS l WHERE l.id = ANY (links)));
END
$$;
COMMENT ON FUNCTION api.onboard_customer(uuid, text, text, text, text, timestamptz, uuid) IS
    'Onboards a customer to a property: creates the customer (invited for 7 days; or give customer_id of an '
    'existing one, e.g. a landlord), the property''s supply account on its meter if it has none, and the links '
    'from move_in (a half hour; default now): owner_occupier, occupier (tenant) or owner (landlord).';


CREATE FUNCTION api.move_out(account_id uuid, move_out timestamptz, final_reads jsonb DEFAULT NULL)
RETURNS SETOF api.customer_accounts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    link billing.customer_accounts;
    account billing.accounts;
    at timestamptz := billing.check_move_time('move_out', move_out);
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = move_out.account_id FOR UPDATE;
    SELECT * INTO link FROM billing.customer_accounts AS ca
    WHERE ca.account_id = move_out.account_id AND ca.role = 'occupier'
      AND ca.start_time < at AND (ca.end_time IS NULL OR ca.end_time >= at)
    ORDER BY ca.start_time DESC LIMIT 1;
    IF link.id IS NULL THEN
        RAISE EXCEPTION 'account % has no occupier at %', coalesce(account.account_number, move_out.account_id::text), at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the move-out must fall after the move-in';
    END IF;
    IF final_reads IS NOT NULL AND pg_catalog.jsonb_typeof(final_reads) <> 'object' THEN
        RAISE EXCEPTION 'final_reads must be an object of reads per element, e.g. {"A": 1234.5}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE billing.customer_accounts AS ca
    SET end_time = at,
        move_out_reads = coalesce((SELECT pg_catalog.jsonb_object_agg(r.key, pg_catalog.jsonb_build_object(
                                       'read', r.value, 'timestamp', at, 'estimated', false))
                                   FROM pg_catalog.jsonb_each(final_reads) AS r),
                                  billing.reads_at(account.meter_id, at))
    WHERE ca.id = link.id;
    -- An owner-occupier moving out has sold the home: their ownership ends too.
    UPDATE billing.customer_accounts AS ca SET end_time = at
    WHERE ca.account_id = move_out.account_id AND ca.role = 'owner' AND ca.customer_id = link.customer_id
      AND ca.start_time < at AND (ca.end_time IS NULL OR ca.end_time > at);
    RETURN QUERY SELECT * FROM api.customer_accounts AS l
                 WHERE l.account_id = move_out.account_id AND l.end_time = at;
END
$$;
COMMENT ON FUNCTION api.move_out(uuid, timestamptz, jsonb) IS
    'Ends the occupancy of an account at move_out (a half hour) and records the final reads (given per element, '
    'or the last recorded ones). An owner-occupier''s ownership ends too; a landlord pays while nobody occupies.';


CREATE FUNCTION api.move_in(account_id uuid, customer_id uuid, move_in timestamptz, role text DEFAULT 'occupier')
RETURNS SETOF api.customer_accounts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    added uuid := billing.link_customer(move_in.account_id, move_in.customer_id, move_in.role,
                                        billing.check_move_time('move_in', move_in.move_in));
BEGIN
    RETURN QUERY SELECT * FROM api.customer_accounts AS l WHERE l.id = added;
END
$$;
COMMENT ON FUNCTION api.move_in(uuid, uuid, timestamptz, text) IS
    'Links a customer to an account from move_in (a half hour) as occupier (default) or owner; refused (23P01) '
    'while someone else holds that role then.';

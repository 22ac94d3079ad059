-- Who may ask for a customer's data. The export, erasure and retention
-- functions are SECURITY DEFINER (they read the audit trail, which customers
-- cannot, and erasure changes frozen rows), so they check the caller
-- themselves, by the rules the policies of billing.customers apply:
--   export   admins and workers every customer, operators their ESCO's, a customer themself
--   read     the same, and analysts their ESCO's (retention dates)
--   erase    admins, and operators their ESCO's
-- A superuser (the `flows gdpr` CLI on the embedded stack) may do all three.

-- The caller of a definer function: the role PostgREST (or a SQL session)
-- switched to, else the login. current_user is the definer's owner.
CREATE FUNCTION gdpr.caller() RETURNS name
LANGUAGE sql STABLE
RETURN CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role')::name END;
COMMENT ON FUNCTION gdpr.caller() IS 'The role calling a SECURITY DEFINER function (its SET ROLE, else the login).';

CREATE FUNCTION gdpr.caller_may(p_customer billing.customers, p_action text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    caller name := gdpr.caller();
BEGIN
    IF p_action NOT IN ('export', 'read', 'erase') THEN
        RAISE EXCEPTION 'unknown action %', p_action USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = caller)
       OR pg_catalog.pg_has_role(caller, 'flows_admin', 'USAGE') THEN
        RETURN true;
    END IF;
    IF p_action <> 'erase' AND pg_catalog.pg_has_role(caller, 'flows_service', 'USAGE') THEN
        RETURN true;
    END IF;
    IF pg_catalog.pg_has_role(caller, 'flows_operator', 'USAGE')
       OR (p_action = 'read' AND pg_catalog.pg_has_role(caller, 'flows_analyst', 'USAGE')) THEN
        RETURN p_customer.esco = flows.current_esco_id();
    END IF;
    IF p_action <> 'erase' AND pg_catalog.pg_has_role(caller, 'flows_customer', 'USAGE') THEN
        RETURN p_customer.id = flows.current_customer_id() AND p_customer.esco = flows.current_esco_id();
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION gdpr.caller_may(billing.customers, text) IS
    'Whether the caller may export (export), see the retention of (read) or erase (erase) a customer''s data.';

-- The customer, if the caller may act on them; otherwise the same refusal as
-- for an id that exists nowhere (PT404), so nobody learns another ESCO's ids.
CREATE FUNCTION gdpr.customer_for(p_customer uuid, p_action text) RETURNS billing.customers
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    found billing.customers;
BEGIN
    SELECT * INTO found FROM billing.customers AS c WHERE c.id = p_customer;
    IF found.id IS NULL OR NOT gdpr.caller_may(found, p_action) THEN
        RAISE EXCEPTION 'no customer %', coalesce(p_customer::text, 'null')
            USING ERRCODE = 'PT404', HINT = 'customer ids are listed at /customers';
    END IF;
    RETURN found;
END
$$;
COMMENT ON FUNCTION gdpr.customer_for(uuid, text) IS
    'The customer row when the caller may act on it, else PT404 (as for an id that exists nowhere).';

-- Who to record as having asked: the token's subject or email, else the caller.
CREATE FUNCTION gdpr.requester() RETURNS text
LANGUAGE sql STABLE
RETURN coalesce(flows.jwt_claims() ->> 'sub', flows.jwt_claims() ->> 'email', gdpr.caller()::text);
COMMENT ON FUNCTION gdpr.requester() IS 'Who asked: the token''s sub or email, else the calling role.';

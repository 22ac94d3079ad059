-- Every advisory lock the database takes, in one registry, so that no two
-- uses ever share a key by accident. Locks are transaction-scoped
-- (pg_advisory_xact_lock) and use the two-key form: the first key names the
-- use (below), the second narrows it (0 when the use is one lock).
--
--   name             key   second key              taken by                      so that
--   register_writes  2051  hashtext(register id)   flows.lock_known_registers    writers of the same registers'
--                                                  (every reading writer)        half hours take turns (exact rollups)
--   command_claims   2052  0                       flows.claim_meter_commands_v2 claims are serialised: per-meter,
--                                                  flows.hold_emop_session       per-ESCO and global limits are exact
--   scheduler        2053  0 (try: never waits)    flows.run_scheduler_v1        one scheduler pass at a time
--   money_pass       2054  0 (try: never waits)    billing.run_money_pass_v1     one money pass at a time (gifts,
--                                                                                top-ups resumed, payments created)
--
-- The one-key (bigint) form is left to table oids: flows.ensure_partitions
-- locks the table it adds a partition to.
--
-- To add a lock: a name and the next free key here, then call
-- pg_advisory_xact_lock(flows.lock_key('name'), ...). The key is folded into a
-- constant when the calling statement is planned (the function is IMMUTABLE),
-- so naming it costs nothing at run time.
CREATE FUNCTION flows.lock_key(p_name text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    key integer := CASE p_name
        WHEN 'register_writes' THEN 2051
        WHEN 'command_claims' THEN 2052
        WHEN 'scheduler' THEN 2053
        WHEN 'money_pass' THEN 2054
    END;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'no advisory lock named %', coalesce(pg_catalog.quote_literal(p_name), 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'add it to sql/schema/advisory_locks.sql';
    END IF;
    RETURN key;
END
$$;
COMMENT ON FUNCTION flows.lock_key(text) IS
    'The first key of a named advisory lock (registry: sql/schema/advisory_locks.sql); raises for an unknown name.';

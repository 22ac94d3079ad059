-- What a customer's supply was: the helpers the registry's conditions use to
-- find the meter data about a customer (sql/schema/gdpr/personal_data.sql).

-- The registers a customer paid for, and when: their payer periods
-- (billing.payer_periods: an occupier while they occupy, an owner while
-- nobody does) on the account's meter, within each register's life. The meter
-- data of those registers in those periods is the customer's consumption.
CREATE FUNCTION gdpr.supply_registers(p_customer uuid)
RETURNS TABLE (register_id uuid, meter_id uuid, period tstzrange)
LANGUAGE sql STABLE ROWS 4
AS $$
    SELECT r.register_id, a.meter_id, p.period * tstzrange(r.start_time, r.end_time)
    FROM billing.payer_periods AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    JOIN flows.meter_registers AS r ON r.meter_id = a.meter_id
    WHERE p.customer_id = p_customer AND p.period && tstzrange(r.start_time, r.end_time)
$$;
COMMENT ON FUNCTION gdpr.supply_registers(uuid) IS
    'Registers of the meters a customer paid for, with the periods they paid (payer periods within register life).';

-- The same per meter (prepay balances, top-ups).
CREATE FUNCTION gdpr.supply_meters(p_customer uuid) RETURNS TABLE (meter_id uuid, period tstzrange)
LANGUAGE sql STABLE ROWS 2
AS $$
    SELECT a.meter_id, p.period
    FROM billing.payer_periods AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    WHERE p.customer_id = p_customer AND a.meter_id IS NOT NULL
$$;
COMMENT ON FUNCTION gdpr.supply_meters(uuid) IS 'Meters a customer paid for, with the periods they paid.';

-- The customer's journals in the ledger: those of their payments, refunds,
-- top-ups and statements (a reversal carries the ids of the journal it
-- reverses). The ledger is kept per account, and an account outlives its
-- occupants: these, not the account's, are the customer's money.
CREATE FUNCTION gdpr.customer_journals(p_customer uuid) RETURNS TABLE (journal_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT j.id
    FROM billing.journals AS j
    WHERE j.payment_id IN (SELECT p.id FROM billing.payments AS p WHERE p.customer_id = p_customer)
       OR j.refund_id IN (SELECT r.id FROM billing.refunds AS r JOIN billing.payments AS p ON p.id = r.payment_id
                          WHERE p.customer_id = p_customer)
       OR j.topup_id IN (SELECT t.id FROM billing.topups AS t WHERE t.customer_id = p_customer)
       OR j.invoice_id IN (SELECT i.id FROM billing.invoices AS i WHERE i.customer_id = p_customer)
$$;
COMMENT ON FUNCTION gdpr.customer_journals(uuid) IS
    'Ledger journals about a customer: of their payments, refunds, top-ups and statements (and their reversals).';

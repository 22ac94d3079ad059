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

-- The bank entries about a customer: those that paid their payments (a bank
-- transfer matched to their account, or to a payment recorded for them), and
-- those that paid nobody (dismissed: money paid back to them, a transfer
-- returned; or still in the queue) whose counterparty, reference or
-- remittance names them (one of their identities as a whole token,
-- gdpr.identity_pattern). An entry that paid another customer's payment or a
-- processor payout is not theirs, whatever it says. (After their erasure the
-- entries that only named them are no longer found: their name is gone.)
CREATE FUNCTION gdpr.customer_bank_transactions(p_customer uuid) RETURNS TABLE (transaction_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT m.transaction_id
    FROM billing.bank_matches AS m JOIN billing.payments AS p ON p.id = m.payment_id
    WHERE p.customer_id = p_customer
    UNION
    SELECT t.id
    FROM billing.bank_transactions AS t
    WHERE t.esco = (SELECT c.esco FROM billing.customers AS c WHERE c.id = p_customer) AND t.status <> 'matched'
      AND pg_catalog.concat_ws(' ', t.counterparty, t.bank_reference, t.remittance)
          ~* (SELECT gdpr.identity_pattern(gdpr.identities(p_customer)))
$$;
COMMENT ON FUNCTION gdpr.customer_bank_transactions(uuid) IS
    'Bank entries about a customer: those that paid their payments, and those that paid nobody but name them.';

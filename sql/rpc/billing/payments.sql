-- Payments over HTTP: what came in and went back, the processor's events, the
-- customers' saved payment methods, and the operator workflows: record a cash
-- or bank payment, request a card / Direct Debit payment, cancel one not yet
-- submitted, refund.

CREATE VIEW api.payment_methods WITH (security_invoker = true) AS
SELECT id, esco, customer_id, provider, kind, processor_customer, processor_method, label, status, created_at
FROM billing.payment_methods;
ALTER VIEW api.payment_methods ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.payment_methods IS
    'Customers'' saved ways to pay at the processor (card, direct_debit): references only (cus_..., pm_...). '
    'Operators add them (as the portal saves them) and revoke them (status revoked).';

CREATE VIEW api.payments WITH (security_invoker = true) AS
SELECT id, esco, account_id, customer_id, amount, currency, status, provider, origin, provider_reference,
       payment_method_id, wallet_id, description, receipt_url, scheduled_at, submitted_at, received_at, failure_reason,
       refunded_amount, submission_attempts, next_attempt_at, requested_by, created_at, updated_at
FROM billing.payments;
COMMENT ON VIEW api.payments IS
    'Money in per account: status pending (scheduled_at) -> created/processing -> succeeded | failed | cancelled, '
    'refunded; provider stripe | bank_transfer | cash | manual. A customer sees the payments they made.';
COMMENT ON COLUMN api.payments.submitted_at IS
    'When it was first submitted to the processor; a payment submitted once is never submitted again.';

CREATE VIEW api.refunds WITH (security_invoker = true) AS
SELECT id, esco, payment_id, amount, reason, status, provider_reference, submitted_at, succeeded_at, failure_reason,
       submission_attempts, requested_by, created_at, updated_at
FROM billing.refunds;
COMMENT ON VIEW api.refunds IS 'Money back on a payment: pending -> submitted -> succeeded | failed.';

CREATE VIEW api.processor_events WITH (security_invoker = true) AS
SELECT provider, event_id, esco, type, object_id, occurred_at, received_at, outcome, detail, payment_id, refund_id,
       payload
FROM billing.processor_events;
COMMENT ON VIEW api.processor_events IS
    'Events the processor sent (POST /webhooks/stripe on the gateway), each once, and what they did: applied, '
    'stale (out of order), ignored, unmatched, conflict.';


-- An account that may be paid now (visible to the caller, open), else 22023 naming the field.
CREATE FUNCTION billing.payable_account(p_account uuid) RETURNS billing.accounts
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_account;
    IF account.id IS NULL THEN
        RAISE EXCEPTION 'account_id names no account (%)', coalesce(p_account::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF account.status = 'closed' THEN
        RAISE EXCEPTION 'account_id names account %, which is closed: no payments for a closed account',
            account.account_number USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN account;
END
$$;


CREATE FUNCTION api.record_payment(account_id uuid, amount numeric, provider text DEFAULT 'cash',
                                   reference text DEFAULT NULL, received_at timestamptz DEFAULT NULL,
                                   description text DEFAULT NULL)
RETURNS SETOF api.payments
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    payment billing.payments;
    received timestamptz := coalesce(record_payment.received_at, pg_catalog.now());
BEGIN
    PERFORM billing.check_amount('amount', record_payment.amount, 0.01, 500);
    IF record_payment.provider IS NULL OR record_payment.provider NOT IN ('cash', 'bank_transfer', 'manual') THEN
        RAISE EXCEPTION 'provider must be cash, bank_transfer or manual, got %', coalesce(record_payment.provider, 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'card and Direct Debit payments come from the processor';
    END IF;
    IF received > pg_catalog.now() + interval '5 minutes' OR received < pg_catalog.now() - interval '1 year' THEN
        RAISE EXCEPTION 'received_at must be within the last year and not in the future, got %', received
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    account := billing.payable_account(record_payment.account_id);
    INSERT INTO billing.payments (esco, account_id, customer_id, amount, status, provider, origin, provider_reference,
                                  description, scheduled_at, received_at, requested_by)
    VALUES (account.esco, account.id, billing.payer_at(account.id, received), record_payment.amount, 'succeeded',
            record_payment.provider, 'operator', record_payment.reference, record_payment.description, received,
            received, flows.requester())
    RETURNING * INTO payment;
    PERFORM billing.payment_received(payment);
    RETURN QUERY SELECT * FROM api.payments AS p WHERE p.id = payment.id;
END
$$;
COMMENT ON FUNCTION api.record_payment(uuid, numeric, text, text, timestamptz, text) IS
    'Records money received for an account in cash, by bank transfer or otherwise (provider cash, bank_transfer, '
    'manual; 0.01-500 GBP): posted to the ledger and, for a prepay meter, put on it as a top-up.';


CREATE FUNCTION api.schedule_payment(account_id uuid, amount numeric, scheduled_at timestamptz DEFAULT NULL,
                                     description text DEFAULT NULL, payment_method_id uuid DEFAULT NULL)
RETURNS SETOF api.payments
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    payer uuid;
    method billing.payment_methods;
    due timestamptz := coalesce(schedule_payment.scheduled_at, pg_catalog.now());
    made uuid;
BEGIN
    PERFORM billing.check_amount('amount', schedule_payment.amount, 0.01, 500);
    IF due < pg_catalog.now() - interval '1 minute' OR due > pg_catalog.now() + interval '1 year' THEN
        RAISE EXCEPTION 'scheduled_at must be from now to a year ahead, got %', due
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    account := billing.payable_account(schedule_payment.account_id);
    payer := billing.payer_at(account.id, pg_catalog.now());
    IF payer IS NULL THEN
        RAISE EXCEPTION 'account_id names account %, which nobody pays now', account.account_number
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO method FROM billing.payment_methods AS m
    WHERE m.id = coalesce(schedule_payment.payment_method_id,
                          (SELECT w.payment_method_id FROM billing.wallets AS w WHERE w.account_id = account.id),
                          billing.default_payment_method(payer))
      AND m.customer_id = payer AND m.status = 'active';
    IF method.id IS NULL THEN
        RAISE EXCEPTION 'payment_method_id: the account''s payer has no such active payment method'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'add one (POST /payment_methods) or name another';
    END IF;
    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, payment_method_id,
                                  scheduled_at, description, requested_by)
    VALUES (account.esco, account.id, payer, schedule_payment.amount, 'stripe', 'operator', method.id, due,
            schedule_payment.description, flows.requester())
    RETURNING id INTO made;
    RETURN QUERY SELECT * FROM api.payments AS p WHERE p.id = made;
END
$$;
COMMENT ON FUNCTION api.schedule_payment(uuid, numeric, timestamptz, text, uuid) IS
    'Asks the processor for a payment from the account''s payer (their saved card or Direct Debit), at '
    'scheduled_at (default now): the payments job submits it once.';


CREATE FUNCTION api.cancel_payment(payment_id uuid, reason text) RETURNS SETOF api.payments
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    payment billing.payments;
BEGIN
    IF cancel_payment.reason IS NULL OR btrim(cancel_payment.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the payment is cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO payment FROM billing.payments AS p WHERE p.id = cancel_payment.payment_id FOR UPDATE;
    IF payment.id IS NULL THEN
        RAISE EXCEPTION 'payment_id names no payment (%)', cancel_payment.payment_id
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF payment.status <> 'pending' OR payment.submitted_at IS NOT NULL THEN
        RAISE EXCEPTION 'payment % is % (submitted %): only a payment not yet submitted can be cancelled', payment.id,
            payment.status, coalesce(payment.submitted_at::text, 'never')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'refund it once it has succeeded';
    END IF;
    UPDATE billing.payments AS p
    SET status = 'cancelled', failure_reason = pg_catalog.format('cancelled by %s: %s', flows.requester(),
                                                                 cancel_payment.reason)
    WHERE p.id = payment.id;
    RETURN QUERY SELECT * FROM api.payments AS p WHERE p.id = payment.id;
END
$$;
COMMENT ON FUNCTION api.cancel_payment(uuid, text) IS 'Cancels a payment that has not been submitted to the processor.';


CREATE FUNCTION api.refund_payment(payment_id uuid, reason text, amount numeric DEFAULT NULL)
RETURNS SETOF api.refunds
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    payment billing.payments;
    open_refunds numeric;
    made uuid;
BEGIN
    IF refund_payment.reason IS NULL OR btrim(refund_payment.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the money goes back' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO payment FROM billing.payments AS p WHERE p.id = refund_payment.payment_id FOR UPDATE;
    IF payment.id IS NULL THEN
        RAISE EXCEPTION 'payment_id names no payment (%)', refund_payment.payment_id
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF payment.status <> 'succeeded' THEN
        RAISE EXCEPTION 'payment % is %: only a payment that succeeded can be refunded', payment.id, payment.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(sum(r.amount), 0) INTO open_refunds FROM billing.refunds AS r
    WHERE r.payment_id = payment.id AND r.status IN ('pending', 'submitted');
    IF payment.amount - payment.refunded_amount - open_refunds <= 0 THEN
        RAISE EXCEPTION 'payment % has nothing left to refund (% GBP refunded, % GBP on its way)', payment.id,
            payment.refunded_amount, open_refunds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing.check_amount('amount', coalesce(refund_payment.amount, payment.amount - payment.refunded_amount - open_refunds),
                                 0.01, payment.amount - payment.refunded_amount - open_refunds);
    INSERT INTO billing.refunds (esco, payment_id, amount, reason, requested_by)
    VALUES (payment.esco, payment.id,
            coalesce(refund_payment.amount, payment.amount - payment.refunded_amount - open_refunds),
            refund_payment.reason, flows.requester())
    RETURNING id INTO made;
    IF payment.provider <> 'stripe' THEN  -- cash or bank: handed back when recorded
        PERFORM billing.refund_succeeded(made);
    END IF;
    RETURN QUERY SELECT * FROM api.refunds AS r WHERE r.id = made;
END
$$;
COMMENT ON FUNCTION api.refund_payment(uuid, text, numeric) IS
    'Refunds a payment that succeeded, in full (default) or in part: a processor payment is refunded through '
    'the processor by the payments job; a cash or bank payment is recorded as paid back at once.';

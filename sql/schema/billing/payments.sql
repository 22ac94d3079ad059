-- Money in: payments (card or Direct Debit through the processor, bank
-- transfers, cash), their refunds, and the processor's events.
--
--   pending ──claim, create at the processor──► created ──confirm──► processing ──► succeeded ──► refunded
--      │  (scheduled_at; the processor's id is stored before it is confirmed)    └──► failed       (refunds)
--      └──► cancelled (before submission: by an operator, account closed, payer moved out)
--
-- A payment is bound to one account, so to one meter (never "the customer's
-- first meter"). Received money posts a journal (ledger.sql) and, for a prepay
-- meter, creates its top-up (topups.sql) in the same transaction.
--
-- Never charged twice: the job stores submitted_at (committed) before it calls
-- the processor, creates the payment there with the payment id as idempotency
-- key and confirms only a payment whose processor id is stored. A later attempt
-- that finds no stored id looks the payment up at the processor (by its
-- payment_id metadata) before creating anything, so an expired idempotency key
-- (24 hours at Stripe) can never make a second charge (docs/payments.md).

-- Amounts people and processors give: whole pence within limits, naming the field.
CREATE FUNCTION billing.check_amount(p_field text, p_amount numeric, p_least numeric, p_most numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_amount IS NULL OR p_amount < p_least OR p_amount > p_most OR p_amount <> round(p_amount, 2) THEN
        RAISE EXCEPTION '% must be between % and % GBP, in whole pence; got %', p_field, p_least, p_most,
            coalesce(p_amount::text, 'nothing')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_amount;
END
$$;
COMMENT ON FUNCTION billing.check_amount(text, numeric, numeric, numeric) IS
    'An amount in GBP, whole pence, between the limits; otherwise 22023 naming the field.';


CREATE TABLE billing.payments (
    id                  uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid          NOT NULL,
    account_id          uuid          NOT NULL,
    customer_id         uuid,
    amount              numeric(8, 2) NOT NULL,
    currency            text          NOT NULL DEFAULT 'GBP',
    status              text          NOT NULL DEFAULT 'pending',
    provider            text          NOT NULL,
    origin              text          NOT NULL,
    provider_reference  text,
    payment_method_id   uuid,
    wallet_id           uuid,
    description         text,
    receipt_url         text,
    scheduled_at        timestamptz   NOT NULL DEFAULT now(),
    submitted_at        timestamptz,
    received_at         timestamptz,
    failure_reason      text,
    refunded_amount     numeric(8, 2) NOT NULL DEFAULT 0,
    submission_attempts smallint      NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    lease_owner         text,
    lease_expires_at    timestamptz,
    requested_by        text          NOT NULL,
    created_at          timestamptz   NOT NULL DEFAULT now(),
    updated_at          timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT payments_id_esco_key UNIQUE (id, esco),
    CONSTRAINT payments_esco_provider_reference_key UNIQUE (esco, provider, provider_reference),
    CONSTRAINT payments_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT payments_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT payments_payment_method_esco_fkey
        FOREIGN KEY (payment_method_id, esco) REFERENCES billing.payment_methods (id, esco),
    CONSTRAINT payments_wallet_esco_fkey FOREIGN KEY (wallet_id, esco) REFERENCES billing.wallets (id, esco),
    CONSTRAINT payments_amount_range CHECK (amount BETWEEN 0.01 AND 500),
    CONSTRAINT payments_currency_gbp CHECK (currency = 'GBP'),
    CONSTRAINT payments_status_valid
        CHECK (status IN ('pending', 'created', 'processing', 'succeeded', 'failed', 'cancelled', 'refunded')),
    CONSTRAINT payments_provider_valid CHECK (provider IN ('stripe', 'bank_transfer', 'cash', 'manual')),
    CONSTRAINT payments_origin_valid
        CHECK (origin IN ('operator', 'scheduled', 'auto_top_up', 'processor', 'bank_statement')),
    CONSTRAINT payments_wallet_origin CHECK ((origin IN ('scheduled', 'auto_top_up')) = (wallet_id IS NOT NULL)),
    CONSTRAINT payments_received_when_succeeded CHECK ((status IN ('succeeded', 'refunded')) = (received_at IS NOT NULL)),
    CONSTRAINT payments_refunds_within_amount CHECK (refunded_amount BETWEEN 0 AND amount),
    CONSTRAINT payments_refunded_in_full CHECK ((status = 'refunded') = (refunded_amount = amount)),
    CONSTRAINT payments_recorded_when_not_processor
        CHECK (provider = 'stripe' OR status IN ('succeeded', 'refunded', 'cancelled')),
    CONSTRAINT payments_processor_reference_format
        CHECK (provider <> 'stripe' OR provider_reference ~ '^pi_[A-Za-z0-9_]+$'),
    CONSTRAINT payments_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
COMMENT ON TABLE billing.payments IS
    'Money in, per account: status pending -> created/processing -> succeeded | failed | cancelled, refunded; '
    'provider stripe | bank_transfer | cash | manual; provider_reference is the processor''s id (pi_...).';
COMMENT ON COLUMN billing.payments.submitted_at IS
    'When the first submission to the processor began (stored before the call): never submitted again after it.';
COMMENT ON COLUMN billing.payments.origin IS
    'operator (recorded or requested), scheduled (a wallet''s regular payment), auto_top_up, processor (a payment '
    'Flows did not create, e.g. a payment link: its event named the account).';
CREATE INDEX payments_account_idx ON billing.payments (account_id, created_at);
CREATE INDEX payments_customer_idx ON billing.payments (customer_id, created_at);
CREATE INDEX payments_processor_work_idx ON billing.payments (scheduled_at)
    WHERE provider = 'stripe' AND status IN ('pending', 'created', 'processing');
-- At most one open auto top-up payment per wallet.
CREATE UNIQUE INDEX payments_one_open_auto_top_up ON billing.payments (wallet_id)
    WHERE origin = 'auto_top_up' AND status IN ('pending', 'created', 'processing');
-- A wallet's regular payment is made once per date.
CREATE UNIQUE INDEX payments_one_per_schedule ON billing.payments (wallet_id, scheduled_at)
    WHERE origin = 'scheduled' AND status <> 'cancelled';

CREATE TRIGGER payments_touch BEFORE UPDATE ON billing.payments
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();


CREATE TABLE billing.refunds (
    id                  uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                uuid          NOT NULL,
    payment_id          uuid          NOT NULL,
    amount              numeric(8, 2) NOT NULL,
    reason              text          NOT NULL,
    status              text          NOT NULL DEFAULT 'pending',
    provider_reference  text,
    submitted_at        timestamptz,
    succeeded_at        timestamptz,
    failure_reason      text,
    submission_attempts smallint      NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    lease_owner         text,
    lease_expires_at    timestamptz,
    requested_by        text          NOT NULL,
    created_at          timestamptz   NOT NULL DEFAULT now(),
    updated_at          timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT refunds_id_esco_key UNIQUE (id, esco),
    CONSTRAINT refunds_esco_provider_reference_key UNIQUE (esco, provider_reference),
    CONSTRAINT refunds_payment_esco_fkey FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco),
    CONSTRAINT refunds_amount_positive CHECK (amount > 0),
    CONSTRAINT refunds_reason_not_blank CHECK (btrim(reason) <> ''),
    CONSTRAINT refunds_status_valid CHECK (status IN ('pending', 'submitted', 'succeeded', 'failed')),
    CONSTRAINT refunds_succeeded_when CHECK ((status = 'succeeded') = (succeeded_at IS NOT NULL)),
    CONSTRAINT refunds_processor_reference_format CHECK (provider_reference ~ '^re_[A-Za-z0-9_]+$'),
    CONSTRAINT refunds_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
COMMENT ON TABLE billing.refunds IS
    'Money back on a payment: pending -> submitted (at the processor) -> succeeded | failed; cash and manual '
    'refunds succeed when recorded.';
CREATE INDEX refunds_payment_idx ON billing.refunds (payment_id);
CREATE INDEX refunds_processor_work_idx ON billing.refunds (created_at) WHERE status IN ('pending', 'submitted');

CREATE TRIGGER refunds_touch BEFORE UPDATE ON billing.refunds
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- Wakes the payments job: a payment or refund to submit may have arrived (a wake-up, no data). Only for a
-- statement that inserted rows: the money pass inserts its regular payments at every pass, mostly none, and a
-- wake-up for none would start the next pass at once, for ever.
CREATE FUNCTION billing.notify_processor_work() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_rows) THEN
        PERFORM pg_catalog.pg_notify('billing_processor_work', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_notify AFTER INSERT ON billing.payments REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
CREATE TRIGGER refunds_notify AFTER INSERT ON billing.refunds REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();


-- Every event the processor sent, recorded once (its id), with what it did.
CREATE TABLE billing.processor_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    esco        uuid,
    type        text        NOT NULL,
    object_id   text,
    occurred_at timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL,
    detail      text,
    payment_id  uuid,
    refund_id   uuid,
    payload     jsonb       NOT NULL,
    CONSTRAINT processor_events_pkey PRIMARY KEY (provider, event_id),
    CONSTRAINT processor_events_esco_fkey FOREIGN KEY (esco) REFERENCES flows.escos (id),
    CONSTRAINT processor_events_payment_esco_fkey FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco),
    CONSTRAINT processor_events_refund_esco_fkey FOREIGN KEY (refund_id, esco) REFERENCES billing.refunds (id, esco),
    CONSTRAINT processor_events_outcome_valid
        CHECK (outcome IN ('received', 'applied', 'stale', 'ignored', 'unmatched', 'conflict'))
);
COMMENT ON TABLE billing.processor_events IS
    'Processor webhook events, each once: outcome applied, stale (older than what is known: out of order), '
    'ignored (a type Flows does not use), unmatched (no payment or account of ours), conflict (amount or id '
    'differ: see detail). esco null until matched.';
CREATE INDEX processor_events_payment_idx ON billing.processor_events (payment_id);
CREATE INDEX processor_events_esco_idx ON billing.processor_events (esco, received_at);


-- Statuses in the order a payment moves through them; an event never moves a
-- payment backwards (a "processing" delivered after "succeeded" is stale).
CREATE FUNCTION billing.payment_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status WHEN 'pending' THEN 0 WHEN 'created' THEN 1 WHEN 'processing' THEN 2 WHEN 'failed' THEN 3
                   WHEN 'cancelled' THEN 4 WHEN 'succeeded' THEN 5 WHEN 'refunded' THEN 6 END;

-- What a Stripe PaymentIntent (as an event or an API answer) says of our payment.
CREATE FUNCTION billing.stripe_payment_status(event_type text, intent jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN event_type = 'payment_intent.payment_failed' THEN 'failed'
    WHEN intent ->> 'status' = 'succeeded' THEN 'succeeded'
    WHEN intent ->> 'status' = 'processing' THEN 'processing'
    WHEN intent ->> 'status' = 'canceled' THEN 'cancelled'
    WHEN intent ->> 'status' = 'requires_payment_method'
         AND pg_catalog.jsonb_typeof(intent -> 'last_payment_error') = 'object' THEN 'failed'
    WHEN intent ->> 'status' IN ('requires_payment_method', 'requires_confirmation', 'requires_action',
                                 'requires_capture') THEN 'created'
END;

-- Received money: the journal, and for a prepay meter its top-up, in this
-- transaction. p_payment is the row as it is now (succeeded).
CREATE FUNCTION billing.payment_received(p_payment billing.payments) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.post_journal(p_payment.esco, 'payment_received',
        pg_catalog.format('%s payment %s', p_payment.provider, coalesce(p_payment.provider_reference, p_payment.id::text)),
        pg_catalog.jsonb_build_array(
            pg_catalog.jsonb_build_object('ledger_account', CASE p_payment.provider WHEN 'stripe'
                                                                 THEN 'processor_clearing' ELSE 'cash_at_bank' END,
                                          'amount', p_payment.amount),
            pg_catalog.jsonb_build_object('ledger_account', 'customer_credit', 'account_id', p_payment.account_id,
                                          'amount', -p_payment.amount)),
        p_account => p_payment.account_id, p_payment => p_payment.id);
    PERFORM billing.topup_for_payment(p_payment);
END
$$;

-- Applies what the processor says of one of our payments (an event's object,
-- or the job's answer from the API). Idempotent and order-proof: the id and
-- amount must match; status only moves forward, except that money received
-- is always recorded (a payment that failed once may succeed on a retry).
CREATE FUNCTION billing.apply_payment_intent(p_payment uuid, p_intent jsonb, p_event_type text DEFAULT NULL,
                                             OUT outcome text, OUT detail text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    payment billing.payments;
    wanted text := billing.stripe_payment_status(p_event_type, p_intent);
    reference text := p_intent ->> 'id';
BEGIN
    SELECT * INTO payment FROM billing.payments AS p WHERE p.id = p_payment FOR UPDATE;
    IF payment.provider IS DISTINCT FROM 'stripe' THEN
        outcome := 'conflict';
        detail := 'not a processor payment';
        RETURN;
    END IF;
    IF coalesce(reference, '') !~ '^pi_[A-Za-z0-9_]+$' OR payment.provider_reference <> reference THEN
        outcome := 'conflict';
        detail := pg_catalog.format('payment %s is %s at the processor, this names %s', payment.id,
                                    coalesce(payment.provider_reference, 'nothing yet'), coalesce(reference, 'nothing'));
        RETURN;
    END IF;
    IF p_intent ->> 'amount' IS DISTINCT FROM (payment.amount * 100)::integer::text
       OR pg_catalog.lower(p_intent ->> 'currency') IS DISTINCT FROM 'gbp' THEN
        outcome := 'conflict';
        detail := pg_catalog.format('amount %s %s at the processor, %s GBP here', p_intent ->> 'amount',
                                    p_intent ->> 'currency', payment.amount);
        RETURN;
    END IF;
    IF wanted IS NULL THEN
        outcome := 'ignored';
        detail := pg_catalog.format('processor status %s means nothing here', p_intent ->> 'status');
        RETURN;
    END IF;
    IF payment.provider_reference IS NULL THEN
        UPDATE billing.payments AS p SET provider_reference = reference WHERE p.id = payment.id;
    END IF;
    IF wanted = 'succeeded' AND payment.status NOT IN ('succeeded', 'refunded') THEN
        UPDATE billing.payments AS p
        SET status = 'succeeded', received_at = pg_catalog.now(), failure_reason = NULL, next_attempt_at = NULL
        WHERE p.id = payment.id
        RETURNING * INTO payment;
        PERFORM billing.payment_received(payment);
        outcome := 'applied';
        detail := pg_catalog.format('payment %s succeeded', payment.id);
    ELSIF payment.status IN ('succeeded', 'refunded', 'cancelled')
          OR billing.payment_status_rank(wanted) <= billing.payment_status_rank(payment.status) THEN
        outcome := 'stale';
        detail := pg_catalog.format('payment %s is already %s (this says %s)', payment.id, payment.status, wanted);
    ELSE
        UPDATE billing.payments AS p
        SET status = wanted,
            failure_reason = CASE WHEN wanted = 'failed'
                                  THEN coalesce(p_intent -> 'last_payment_error' ->> 'message', 'the payment failed')
                             END,
            next_attempt_at = NULL
        WHERE p.id = payment.id;
        outcome := 'applied';
        detail := pg_catalog.format('payment %s %s', payment.id, wanted);
    END IF;
END
$$;

-- Money back: the journal, and the payment's refunded amount (refunded in full: status refunded).
CREATE FUNCTION billing.refund_succeeded(p_refund uuid) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    refund billing.refunds;
    payment billing.payments;
BEGIN
    UPDATE billing.refunds AS r SET status = 'succeeded', succeeded_at = pg_catalog.now(), failure_reason = NULL,
                                    next_attempt_at = NULL
    WHERE r.id = p_refund RETURNING * INTO refund;
    UPDATE billing.payments AS p
    SET refunded_amount = p.refunded_amount + refund.amount,
        status = CASE WHEN p.refunded_amount + refund.amount = p.amount THEN 'refunded' ELSE p.status END
    WHERE p.id = refund.payment_id
    RETURNING * INTO payment;
    PERFORM billing.post_journal(refund.esco, 'refund',
        pg_catalog.format('refund of %s payment %s: %s', payment.provider,
                          coalesce(payment.provider_reference, payment.id::text), refund.reason),
        pg_catalog.jsonb_build_array(
            pg_catalog.jsonb_build_object('ledger_account', 'customer_credit', 'account_id', payment.account_id,
                                          'amount', refund.amount),
            pg_catalog.jsonb_build_object('ledger_account', CASE payment.provider WHEN 'stripe'
                                                                 THEN 'processor_clearing' ELSE 'cash_at_bank' END,
                                          'amount', -refund.amount)),
        p_account => payment.account_id, p_payment => payment.id, p_refund => refund.id);
END
$$;

-- What the processor says of a refund: submitted, succeeded or failed; forward only.
CREATE FUNCTION billing.apply_refund_object(p_refund uuid, p_object jsonb, OUT outcome text, OUT detail text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    refund billing.refunds;
    wanted text := CASE p_object ->> 'status' WHEN 'succeeded' THEN 'succeeded'
                                              WHEN 'pending' THEN 'submitted' WHEN 'requires_action' THEN 'submitted'
                                              WHEN 'failed' THEN 'failed' WHEN 'canceled' THEN 'failed' END;
BEGIN
    SELECT * INTO refund FROM billing.refunds AS r WHERE r.id = p_refund FOR UPDATE;
    IF refund.provider_reference <> p_object ->> 'id' OR coalesce(p_object ->> 'id', '') !~ '^re_'
       OR p_object ->> 'amount' IS DISTINCT FROM (refund.amount * 100)::integer::text THEN
        outcome := 'conflict';
        detail := pg_catalog.format('refund %s is %s for %s GBP, the processor says %s for %s pence', refund.id,
                                    coalesce(refund.provider_reference, 'nothing yet'), refund.amount,
                                    p_object ->> 'id', p_object ->> 'amount');
        RETURN;
    END IF;
    IF refund.provider_reference IS NULL THEN
        UPDATE billing.refunds AS r SET provider_reference = p_object ->> 'id' WHERE r.id = refund.id;
    END IF;
    IF wanted = 'succeeded' AND refund.status IN ('pending', 'submitted') THEN
        PERFORM billing.refund_succeeded(refund.id);
    ELSIF wanted = 'failed' AND refund.status IN ('pending', 'submitted') THEN
        UPDATE billing.refunds AS r
        SET status = 'failed', failure_reason = coalesce(p_object ->> 'failure_reason', 'the refund failed'),
            next_attempt_at = NULL
        WHERE r.id = refund.id;
    ELSIF wanted = 'submitted' AND refund.status = 'pending' THEN
        UPDATE billing.refunds AS r SET status = 'submitted' WHERE r.id = refund.id;
    ELSE
        outcome := 'stale';
        detail := pg_catalog.format('refund %s is already %s (this says %s)', refund.id, refund.status,
                                    coalesce(wanted, p_object ->> 'status'));
        RETURN;
    END IF;
    outcome := 'applied';
    detail := pg_catalog.format('refund %s %s', refund.id, wanted);
END
$$;

-- A PaymentIntent event: the payment it names (metadata payment_id), else the
-- one with its processor id, else, for a payment Flows did not create, a new
-- payment of the account it names (metadata account_id).
CREATE FUNCTION billing.apply_intent_event(p_event_type text, p_intent jsonb,
                                           OUT payment_id uuid, OUT outcome text, OUT detail text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    named text := p_intent -> 'metadata' ->> 'payment_id';
    for_account text := p_intent -> 'metadata' ->> 'account_id';
    account billing.accounts;
    amount numeric;
BEGIN
    IF named IS NOT NULL THEN
        IF named ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            SELECT p.id INTO payment_id FROM billing.payments AS p WHERE p.id = named::uuid;
        END IF;
    ELSE
        SELECT p.id INTO payment_id FROM billing.payments AS p
        WHERE p.provider = 'stripe' AND p.provider_reference = p_intent ->> 'id';
        IF payment_id IS NULL AND for_account ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            SELECT * INTO account FROM billing.accounts AS a WHERE a.id = for_account::uuid;
            amount := (p_intent ->> 'amount')::numeric / 100;
            IF account.id IS NOT NULL AND (amount NOT BETWEEN 0.01 AND 500 OR amount <> round(amount, 2)
                                           OR pg_catalog.lower(p_intent ->> 'currency') IS DISTINCT FROM 'gbp'
                                           OR coalesce(p_intent ->> 'id', '') !~ '^pi_[A-Za-z0-9_]+$') THEN
                outcome := 'conflict';
                detail := pg_catalog.format('a payment of %s %s for account %s cannot be recorded (0.01 to 500 GBP)',
                                            p_intent ->> 'amount', p_intent ->> 'currency', account.account_number);
                RETURN;
            END IF;
            IF account.id IS NOT NULL THEN
                INSERT INTO billing.payments (esco, account_id, customer_id, amount, status, provider, origin,
                                              provider_reference, description, submitted_at, requested_by)
                VALUES (account.esco, account.id, billing.payer_at(account.id, pg_catalog.now()), amount, 'created',
                        'stripe', 'processor', p_intent ->> 'id', p_intent ->> 'description', pg_catalog.now(),
                        flows.requester())
                ON CONFLICT (esco, provider, provider_reference) DO NOTHING;
                SELECT p.id INTO payment_id FROM billing.payments AS p
                WHERE p.esco = account.esco AND p.provider = 'stripe' AND p.provider_reference = p_intent ->> 'id';
            END IF;
        END IF;
    END IF;
    IF payment_id IS NULL THEN
        outcome := 'unmatched';
        detail := CASE WHEN named IS NOT NULL THEN pg_catalog.format('no payment %s', named)
                       WHEN for_account IS NOT NULL THEN pg_catalog.format('no account %s', for_account)
                       ELSE 'the event names no payment_id or account_id (metadata)' END;
        RETURN;
    END IF;
    SELECT a.outcome, a.detail INTO outcome, detail FROM billing.apply_payment_intent(payment_id, p_intent, p_event_type) AS a;
END
$$;

-- A refund event: ours (metadata refund_id), or one made at the processor
-- (its dashboard) on one of our payments, recorded as a refund then.
CREATE FUNCTION billing.apply_refund_event(p_refund jsonb, OUT payment_id uuid, OUT refund_id uuid,
                                           OUT outcome text, OUT detail text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    named text := p_refund -> 'metadata' ->> 'refund_id';
    payment billing.payments;
    amount numeric := (p_refund ->> 'amount')::numeric / 100;
BEGIN
    IF named ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        SELECT r.id, r.payment_id INTO refund_id, payment_id FROM billing.refunds AS r WHERE r.id = named::uuid;
    ELSE
        SELECT r.id, r.payment_id INTO refund_id, payment_id FROM billing.refunds AS r
        WHERE r.provider_reference = p_refund ->> 'id';
        IF refund_id IS NULL THEN
            SELECT * INTO payment FROM billing.payments AS p
            WHERE p.provider = 'stripe' AND p.provider_reference = p_refund ->> 'payment_intent' FOR UPDATE;
            payment_id := payment.id;
            IF payment.id IS NOT NULL AND payment.status = 'succeeded' AND amount > 0
               AND amount <= payment.amount - payment.refunded_amount AND coalesce(p_refund ->> 'id', '') ~ '^re_' THEN
                INSERT INTO billing.refunds (esco, payment_id, amount, reason, status, provider_reference, submitted_at,
                                             requested_by)
                VALUES (payment.esco, payment.id, amount, 'refunded at the processor', 'submitted', p_refund ->> 'id',
                        pg_catalog.now(), flows.requester())
                RETURNING id INTO refund_id;
            ELSIF payment.id IS NOT NULL THEN
                outcome := 'conflict';
                detail := pg_catalog.format('a refund of %s GBP does not fit payment %s (%s, %s GBP of %s refunded)',
                                            amount, payment.id, payment.status, payment.refunded_amount, payment.amount);
                RETURN;
            END IF;
        END IF;
    END IF;
    IF refund_id IS NULL THEN
        outcome := 'unmatched';
        detail := pg_catalog.format('no refund or payment of ours for %s', p_refund ->> 'id');
        RETURN;
    END IF;
    SELECT a.outcome, a.detail INTO outcome, detail FROM billing.apply_refund_object(refund_id, p_refund) AS a;
END
$$;

-- The webhook's one call (flows gateway, POST /webhooks/stripe, after the
-- signature checked out): records the event once and applies it. A replay of
-- an event id returns 'duplicate' and changes nothing.
CREATE FUNCTION billing.apply_processor_event_v1(p_provider text, p_event jsonb)
RETURNS TABLE (outcome text, detail text, payment_id uuid)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    event_key text := p_event ->> 'id';
    event_kind text := p_event ->> 'type';
    object jsonb := p_event -> 'data' -> 'object';
    found_payment uuid;
    found_refund uuid;
    result_outcome text;
    result_detail text;
BEGIN
    IF p_provider IS DISTINCT FROM 'stripe' THEN
        RAISE EXCEPTION 'unknown payment processor %', coalesce(p_provider, 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'stripe';
    END IF;
    IF coalesce(event_key, '') !~ '^evt_[A-Za-z0-9_]+$' OR event_kind IS NULL
       OR pg_catalog.jsonb_typeof(object) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'not a processor event: it needs an id (evt_...), a type and data.object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO billing.processor_events (provider, event_id, type, object_id, occurred_at, outcome, payload)
    VALUES (p_provider, event_key, event_kind, object ->> 'id',
            pg_catalog.to_timestamp((p_event ->> 'created')::double precision), 'received', p_event)
    ON CONFLICT ON CONSTRAINT processor_events_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, pg_catalog.format('event %s was received at %s (%s)', event_key,
                                                                 e.received_at, e.outcome), e.payment_id
                     FROM billing.processor_events AS e WHERE e.provider = p_provider AND e.event_id = event_key;
        RETURN;
    END IF;
    IF event_kind LIKE 'payment_intent.%' THEN
        SELECT a.payment_id, a.outcome, a.detail INTO found_payment, result_outcome, result_detail
        FROM billing.apply_intent_event(event_kind, object) AS a;
    ELSIF event_kind IN ('charge.succeeded', 'charge.updated') THEN
        UPDATE billing.payments AS p SET receipt_url = coalesce(p.receipt_url, object ->> 'receipt_url')
        WHERE p.provider = 'stripe' AND p.provider_reference = object ->> 'payment_intent'
        RETURNING p.id INTO found_payment;
        result_outcome := CASE WHEN found_payment IS NULL THEN 'unmatched' ELSE 'applied' END;
        result_detail := CASE WHEN found_payment IS NULL THEN 'no payment for ' || coalesce(object ->> 'payment_intent', 'nothing')
                              ELSE 'receipt' END;
    ELSIF event_kind IN ('refund.created', 'refund.updated', 'charge.refund.updated') THEN
        SELECT a.payment_id, a.refund_id, a.outcome, a.detail INTO found_payment, found_refund, result_outcome, result_detail
        FROM billing.apply_refund_event(object) AS a;
    ELSE
        result_outcome := 'ignored';
        result_detail := 'Flows does not use ' || event_kind || ' events';
    END IF;
    UPDATE billing.processor_events AS e
    SET outcome = result_outcome, detail = result_detail, payment_id = found_payment, refund_id = found_refund,
        esco = (SELECT p.esco FROM billing.payments AS p WHERE p.id = found_payment)
    WHERE e.provider = p_provider AND e.event_id = event_key;
    RETURN QUERY SELECT result_outcome, result_detail, found_payment;
END
$$;
COMMENT ON FUNCTION billing.apply_processor_event_v1(text, jsonb) IS
    'Records a verified processor event once (by id) and applies it: payment and refund status, receipts. '
    'Returns outcome (applied, stale, ignored, unmatched, conflict, or duplicate for an id seen before).';


-- == The payments job (flows.payments.job): submit, confirm, look up ==========

-- Claims processor work for worker p_worker: due payments to create and confirm
-- at the processor, created ones to confirm, processing ones not heard of for
-- p_stale (a lost webhook) to look up. submitted_at is set here, committed
-- before any call to the processor. Payments that can no longer be made are
-- settled first: an account closed or a payer who moved out (cancelled), no
-- active payment method (failed).
CREATE FUNCTION billing.claim_payment_work_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '1 minute',
                                              p_stale interval DEFAULT '1 hour')
RETURNS TABLE (id uuid, esco_code text, account_id uuid, account_number text, status text, amount numeric,
               provider_reference text, submitted_at timestamptz, attempt smallint, description text,
               processor_customer text, processor_method text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE billing.payments AS p
    SET status = 'cancelled',
        failure_reason = CASE WHEN a.status = 'closed' THEN 'the account is closed'
                              ELSE 'the customer no longer pays this account' END
    FROM billing.accounts AS a
    WHERE a.id = p.account_id AND p.provider = 'stripe' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND p.scheduled_at <= pg_catalog.now()
      AND (a.status = 'closed'
           OR (p.wallet_id IS NOT NULL AND p.customer_id IS DISTINCT FROM billing.payer_at(a.id, pg_catalog.now())));
    UPDATE billing.payments AS p
    SET status = 'failed', failure_reason = 'no active payment method: the customer must add one'
    WHERE p.provider = 'stripe' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND p.scheduled_at <= pg_catalog.now()
      AND NOT EXISTS (SELECT FROM billing.payment_methods AS m WHERE m.id = p.payment_method_id AND m.status = 'active');
    RETURN QUERY
    WITH due AS (
        SELECT p.id FROM billing.payments AS p
        WHERE p.provider = 'stripe'
          AND ((p.status = 'pending' AND p.scheduled_at <= pg_catalog.now()) OR p.status = 'created'
               OR (p.status = 'processing' AND p.updated_at < pg_catalog.now() - p_stale))
          AND (p.lease_expires_at IS NULL OR p.lease_expires_at < pg_catalog.now())
          AND (p.next_attempt_at IS NULL OR p.next_attempt_at <= pg_catalog.now())
        ORDER BY p.scheduled_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE billing.payments AS p
    SET lease_owner = p_worker, lease_expires_at = pg_catalog.now() + p_lease,
        submission_attempts = p.submission_attempts + 1, submitted_at = coalesce(p.submitted_at, pg_catalog.now())
    FROM due AS d, billing.accounts AS a, flows.escos AS e
    WHERE p.id = d.id AND a.id = p.account_id AND e.id = p.esco
    RETURNING p.id, e.code, p.account_id, a.account_number, p.status, p.amount, p.provider_reference,
              p.submitted_at, p.submission_attempts, p.description,
              (SELECT m.processor_customer FROM billing.payment_methods AS m WHERE m.id = p.payment_method_id),
              (SELECT m.processor_method FROM billing.payment_methods AS m WHERE m.id = p.payment_method_id);
END
$$;

-- The fence of the job's writes: the caller still holds the payment's lease.
CREATE FUNCTION billing.fence_payment(p_id uuid, p_worker text) RETURNS billing.payments
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    payment billing.payments;
BEGIN
    SELECT * INTO payment FROM billing.payments AS p WHERE p.id = p_id FOR UPDATE;
    IF payment.lease_owner IS DISTINCT FROM p_worker THEN
        RAISE EXCEPTION 'payment % is no longer held by %: it is % by %', p_id, p_worker, payment.status,
            coalesce(payment.lease_owner, 'nobody')
            USING ERRCODE = 'FL409', HINT = 'the lease expired and another worker took it; discard this result';
    END IF;
    RETURN payment;
END
$$;

-- The processor's answer about a claimed payment (a PaymentIntent): stores its
-- id (when new) and applies its status; p_release hands the payment back.
CREATE FUNCTION billing.record_payment_intent_v1(p_id uuid, p_worker text, p_intent jsonb, p_release boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    result record;
BEGIN
    PERFORM billing.fence_payment(p_id, p_worker);
    SELECT * INTO result FROM billing.apply_payment_intent(p_id, p_intent);
    IF result.outcome = 'conflict' THEN
        RAISE EXCEPTION 'the processor''s answer does not match payment %: %', p_id, result.detail
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_release THEN
        UPDATE billing.payments AS p SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL
        WHERE p.id = p_id;
    END IF;
    RETURN (SELECT p.status FROM billing.payments AS p WHERE p.id = p_id);
END
$$;

-- A claimed payment's attempt went wrong: tried again after a backoff, or
-- (p_final: the processor refused it, e.g. a card declined) failed.
CREATE FUNCTION billing.fail_payment_work_v1(p_id uuid, p_worker text, p_error text, p_final boolean,
                                             p_backoff interval DEFAULT '30 seconds')
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    payment billing.payments := billing.fence_payment(p_id, p_worker);
BEGIN
    UPDATE billing.payments AS p
    SET lease_owner = NULL, lease_expires_at = NULL, failure_reason = p_error,
        status = CASE WHEN p_final AND p.status IN ('pending', 'created') THEN 'failed' ELSE p.status END,
        next_attempt_at = CASE WHEN p_final THEN NULL
                               ELSE pg_catalog.now() + flows.retry_delay(payment.submission_attempts, p_backoff) END
    WHERE p.id = p_id
    RETURNING * INTO payment;
    RETURN payment.status;
END
$$;

-- Refunds to submit to the processor, claimed like payments.
CREATE FUNCTION billing.claim_refund_work_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '1 minute')
RETURNS TABLE (id uuid, payment_reference text, amount numeric, reason text, provider_reference text,
               submitted_at timestamptz, attempt smallint)
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT r.id FROM billing.refunds AS r
        WHERE r.status = 'pending'
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < pg_catalog.now())
          AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= pg_catalog.now())
        ORDER BY r.created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE billing.refunds AS r
    SET lease_owner = p_worker, lease_expires_at = pg_catalog.now() + p_lease,
        submission_attempts = r.submission_attempts + 1, submitted_at = coalesce(r.submitted_at, pg_catalog.now())
    FROM due AS d, billing.payments AS p
    WHERE r.id = d.id AND p.id = r.payment_id
    RETURNING r.id, p.provider_reference, r.amount, r.reason, r.provider_reference, r.submitted_at,
              r.submission_attempts;
END
$$;

CREATE FUNCTION billing.fence_refund(p_id uuid, p_worker text) RETURNS billing.refunds
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    refund billing.refunds;
BEGIN
    SELECT * INTO refund FROM billing.refunds AS r WHERE r.id = p_id FOR UPDATE;
    IF refund.lease_owner IS DISTINCT FROM p_worker THEN
        RAISE EXCEPTION 'refund % is no longer held by %', p_id, p_worker
            USING ERRCODE = 'FL409', HINT = 'the lease expired and another worker took it; discard this result';
    END IF;
    RETURN refund;
END
$$;

-- The processor's answer about a claimed refund: stores its id and applies its status.
CREATE FUNCTION billing.record_refund_v1(p_id uuid, p_worker text, p_refund jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    result record;
BEGIN
    PERFORM billing.fence_refund(p_id, p_worker);
    UPDATE billing.refunds AS r SET lease_owner = NULL, lease_expires_at = NULL,
                                    provider_reference = coalesce(r.provider_reference, p_refund ->> 'id')
    WHERE r.id = p_id;
    SELECT * INTO result FROM billing.apply_refund_object(p_id, p_refund);
    IF result.outcome = 'conflict' THEN
        RAISE EXCEPTION 'the processor''s answer does not match refund %: %', p_id, result.detail
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (SELECT r.status FROM billing.refunds AS r WHERE r.id = p_id);
END
$$;

CREATE FUNCTION billing.fail_refund_work_v1(p_id uuid, p_worker text, p_error text, p_final boolean,
                                            p_backoff interval DEFAULT '30 seconds')
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    refund billing.refunds := billing.fence_refund(p_id, p_worker);
BEGIN
    UPDATE billing.refunds AS r
    SET lease_owner = NULL, lease_expires_at = NULL, failure_reason = p_error,
        status = CASE WHEN p_final THEN 'failed' ELSE r.status END,
        next_attempt_at = CASE WHEN p_final THEN NULL
                               ELSE pg_catalog.now() + flows.retry_delay(refund.submission_attempts, p_backoff) END
    WHERE r.id = p_id
    RETURNING * INTO refund;
    RETURN refund.status;
END
$$;

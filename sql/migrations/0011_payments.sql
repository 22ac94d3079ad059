-- 0011_payments: money in. Payments (processor, bank, cash), refunds, the processor's events, payment
-- methods and wallets, top-ups riding on the send_token commands, gifts, solar credit, an append-only
-- double-entry ledger (statement charges posted when statements are issued), the money pass the payments
-- job runs; a failed command's token may be sent again by a later command (a top-up's next round);
-- statements count the top-ups of the topups table.

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/advisory_locks.sql: the money pass's lock ----
CREATE OR REPLACE FUNCTION flows.lock_key(p_name text) RETURNS integer
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

-- ---- schema/commands.sql: a failed command's token may be sent again (a top-up's next round) ----
DROP INDEX flows.meter_commands_token_once;
CREATE UNIQUE INDEX meter_commands_token_once ON flows.meter_commands (meter_id, (parameters ->> 'token'))
    WHERE kind = 'send_token' AND parameters ? 'token' AND status <> 'failed';

-- ---- schema/billing/wallets.sql ----
-- How customers pay for a supply meter's credit: their payment methods at the
-- processor (a saved card or a Direct Debit mandate), and a wallet per supply
-- account (so per supply meter) with the balance it should keep and when it is
-- paid for (docs/payments.md).

-- Who pays an account at a moment: its occupier then, else its owner (a let
-- property between tenants); null when nobody stands behind it.
CREATE FUNCTION billing.payer_at(p_account uuid, p_at timestamptz) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT p.customer_id FROM billing.payer_periods AS p
    WHERE p.account_id = p_account AND p.period @> p_at
    ORDER BY p.role = 'occupier' DESC LIMIT 1
$$;
COMMENT ON FUNCTION billing.payer_at(uuid, timestamptz) IS
    'The customer paying an account at a moment: the occupier, else the owner; null when nobody does.';


-- A way to pay at the processor, saved by the portal (Stripe: a customer and a
-- payment method, e.g. a card or a Bacs Direct Debit mandate). Only references
-- are kept: card numbers and bank details stay with the processor.
CREATE TABLE billing.payment_methods (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco               uuid        NOT NULL,
    customer_id        uuid        NOT NULL,
    provider           text        NOT NULL DEFAULT 'stripe',
    kind               text        NOT NULL,
    processor_customer text        NOT NULL,
    processor_method   text        NOT NULL,
    label              text,
    status             text        NOT NULL DEFAULT 'active',
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_methods_id_esco_key UNIQUE (id, esco),
    CONSTRAINT payment_methods_esco_method_key UNIQUE (esco, provider, processor_method),
    CONSTRAINT payment_methods_customer_esco_fkey
        FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT payment_methods_provider_valid CHECK (provider = 'stripe'),
    CONSTRAINT payment_methods_kind_valid CHECK (kind IN ('card', 'direct_debit')),
    CONSTRAINT payment_methods_status_valid CHECK (status IN ('active', 'revoked')),
    CONSTRAINT payment_methods_customer_format CHECK (processor_customer ~ '^cus_[A-Za-z0-9]{1,64}$'),
    CONSTRAINT payment_methods_method_format CHECK (processor_method ~ '^pm_[A-Za-z0-9_]{1,64}$')
);
COMMENT ON TABLE billing.payment_methods IS
    'A customer''s saved way to pay at the processor (Stripe customer cus_... and payment method pm_...): '
    'card or direct_debit; revoked ones are never charged.';
CREATE INDEX payment_methods_customer_idx ON billing.payment_methods (customer_id);

-- The method a customer's payments use by default: their newest active one.
CREATE FUNCTION billing.default_payment_method(p_customer uuid) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT m.id FROM billing.payment_methods AS m
    WHERE m.customer_id = p_customer AND m.status = 'active'
    ORDER BY m.created_at DESC, m.id LIMIT 1
$$;


-- One wallet per supply account (and so per supply meter): the balance the
-- meter should keep (auto top-up: below minimum_balance, one payment for the
-- difference to target_balance) and regular payments (monthly or weekly, on
-- payment_day: the day of the month 1-28, or of the week 1 = Monday .. 7).
-- The customer changes these within the limits below (api.set_wallet).
CREATE TABLE billing.wallets (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco              uuid          NOT NULL,
    account_id        uuid          NOT NULL,
    meter_id          uuid          NOT NULL,
    target_balance    numeric(8, 2) NOT NULL DEFAULT 30,
    minimum_balance   numeric(8, 2) NOT NULL DEFAULT 10,
    auto_top_up       boolean       NOT NULL DEFAULT false,
    payment_timing    text,
    regular_amount    numeric(8, 2),
    payment_day       smallint,
    payment_method_id uuid,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT wallets_id_esco_key UNIQUE (id, esco),
    CONSTRAINT wallets_esco_account_key UNIQUE (esco, account_id),
    CONSTRAINT wallets_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT wallets_meter_esco_fkey FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco),
    CONSTRAINT wallets_payment_method_esco_fkey
        FOREIGN KEY (payment_method_id, esco) REFERENCES billing.payment_methods (id, esco),
    CONSTRAINT wallets_minimum_balance_range CHECK (minimum_balance BETWEEN 0 AND 100),
    CONSTRAINT wallets_target_balance_range CHECK (target_balance >= minimum_balance + 5 AND target_balance <= 250),
    CONSTRAINT wallets_payment_timing_valid CHECK (payment_timing IN ('monthly', 'weekly')),
    CONSTRAINT wallets_schedule_complete
        CHECK ((payment_timing IS NULL) = (regular_amount IS NULL) AND (payment_timing IS NULL) = (payment_day IS NULL)),
    CONSTRAINT wallets_regular_amount_range CHECK (regular_amount BETWEEN 5 AND 500),
    CONSTRAINT wallets_payment_day_range
        CHECK (payment_day BETWEEN 1 AND CASE payment_timing WHEN 'weekly' THEN 7 ELSE 28 END)
);
COMMENT ON TABLE billing.wallets IS
    'Per supply account (its meter): target and minimum balance, auto top-up, and regular payments '
    '(monthly or weekly, regular_amount on payment_day), paid with payment_method_id.';
CREATE INDEX wallets_meter_idx ON billing.wallets (meter_id);

CREATE TRIGGER wallets_touch BEFORE UPDATE ON billing.wallets
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- ---- schema/billing/payments.sql ----
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
    CONSTRAINT payments_origin_valid CHECK (origin IN ('operator', 'scheduled', 'auto_top_up', 'processor')),
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

-- Wakes the payments job: a payment or refund to submit may have arrived (a wake-up, no data).
CREATE FUNCTION billing.notify_processor_work() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('billing_processor_work', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_notify AFTER INSERT ON billing.payments
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
CREATE TRIGGER refunds_notify AFTER INSERT ON billing.refunds
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

-- ---- schema/billing/gifts.sql ----
-- Gifts: credit the ESCO gives an account (a sign-up bonus, a hardship fund),
-- from scheduled_at on. When due, the money pass (money_pass.sql) makes each
-- scheduled gift one top-up, in the transaction that marks it given; a
-- cancelled gift never pays (its row is locked by whichever comes first).

CREATE TABLE billing.gifts (
    id            uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco          uuid          NOT NULL,
    account_id    uuid          NOT NULL,
    amount        numeric(8, 2) NOT NULL,
    reason        text          NOT NULL,
    scheduled_at  timestamptz   NOT NULL DEFAULT now(),
    status        text          NOT NULL DEFAULT 'scheduled',
    given_at      timestamptz,
    cancelled_at  timestamptz,
    cancel_reason text,
    requested_by  text          NOT NULL,
    created_at    timestamptz   NOT NULL DEFAULT now(),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT gifts_id_esco_key UNIQUE (id, esco),
    CONSTRAINT gifts_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT gifts_amount_range CHECK (amount BETWEEN 0.01 AND 1000),
    CONSTRAINT gifts_reason_not_blank CHECK (btrim(reason) <> ''),
    CONSTRAINT gifts_status_valid CHECK (status IN ('scheduled', 'given', 'cancelled')),
    CONSTRAINT gifts_given_when
        CHECK (CASE status WHEN 'given' THEN given_at IS NOT NULL WHEN 'scheduled' THEN given_at IS NULL ELSE true END),
    CONSTRAINT gifts_cancelled_when CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL AND cancel_reason IS NOT NULL))
);
COMMENT ON TABLE billing.gifts IS
    'Credit given to an account (reason, e.g. sign-up bonus) from scheduled_at: scheduled -> given (one top-up) '
    '| cancelled (never pays).';
CREATE INDEX gifts_due_idx ON billing.gifts (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX gifts_account_idx ON billing.gifts (account_id);

CREATE TRIGGER gifts_touch BEFORE UPDATE ON billing.gifts
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- A due gift becomes its top-up (and its journal), or is cancelled saying why
-- when its account can no longer take one. Skips a gift that is not scheduled.
CREATE FUNCTION billing.give_gift(p_gift uuid) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    gift billing.gifts;
    account billing.accounts;
    problem text;
BEGIN
    SELECT * INTO gift FROM billing.gifts AS g WHERE g.id = p_gift FOR UPDATE;
    IF gift.status IS DISTINCT FROM 'scheduled' THEN
        RETURN;
    END IF;
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = gift.account_id;
    problem := billing.topup_problem(account);
    IF problem IS NOT NULL THEN
        UPDATE billing.gifts AS g SET status = 'cancelled', cancelled_at = pg_catalog.now(), cancel_reason = problem
        WHERE g.id = gift.id;
        RETURN;
    END IF;
    PERFORM billing.create_topup(gift.esco, account.id, account.meter_id, gift.amount, 'gift',
                                 billing.payer_at(account.id, pg_catalog.now()), p_gift => gift.id, p_notes => gift.reason);
    UPDATE billing.gifts AS g SET status = 'given', given_at = pg_catalog.now() WHERE g.id = gift.id;
END
$$;

-- ---- schema/billing/solar.sql ----
-- Solar credit: an installation (a roof's panels, MCS certified, declared net
-- capacity in kWp) earns its ESCO's rate in pence per kWp per year; per day,
-- the yearly amount / the days of that year. It is shared across properties by
-- allocation ratios (at most 1 in all) and paid monthly as a top-up to whoever
-- occupied each property's supply account that day, for the days they had a
-- solar contract in force (never under an ended one). The month's credits are
-- made once per property, month and payee (api.generate_solar_credits).

CREATE TABLE billing.solar_rates (
    id                 uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco               uuid          NOT NULL REFERENCES flows.escos (id),
    effective_from     date          NOT NULL,
    pence_per_kwp_year numeric(8, 2) NOT NULL,
    created_at         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_rates_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_rates_esco_effective_from_key UNIQUE (esco, effective_from),
    CONSTRAINT solar_rates_range CHECK (pence_per_kwp_year > 0 AND pence_per_kwp_year <= 100000)
);
COMMENT ON TABLE billing.solar_rates IS
    'An ESCO''s solar credit rate in pence per kWp per year (e.g. 7,800-8,500), from effective_from on.';

CREATE TABLE billing.solar_installations (
    id                       uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco                     uuid          NOT NULL,
    property                 uuid          NOT NULL,
    mcs_certificate          text          NOT NULL,
    declared_net_capacity_kwp numeric(7, 3) NOT NULL,
    commissioned_on          date          NOT NULL,
    decommissioned_on        date,
    created_at               timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_installations_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_installations_esco_certificate_key UNIQUE (esco, mcs_certificate),
    CONSTRAINT solar_installations_property_esco_fkey
        FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_installations_certificate_format CHECK (mcs_certificate ~ '^[A-Za-z0-9][A-Za-z0-9/ -]{3,39}$'),
    CONSTRAINT solar_installations_capacity_range
        CHECK (declared_net_capacity_kwp > 0 AND declared_net_capacity_kwp <= 1000),
    CONSTRAINT solar_installations_decommissioned_after CHECK (decommissioned_on > commissioned_on)
);
COMMENT ON TABLE billing.solar_installations IS
    'Solar panels on a property: MCS certificate, declared net capacity (kWp), commissioned (and decommissioned) on.';

CREATE TABLE billing.solar_allocations (
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    esco            uuid         NOT NULL,
    installation_id uuid         NOT NULL,
    property        uuid         NOT NULL,
    ratio           numeric(5, 4) NOT NULL,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT solar_allocations_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_allocations_esco_installation_property_key UNIQUE (esco, installation_id, property),
    CONSTRAINT solar_allocations_installation_esco_fkey
        FOREIGN KEY (installation_id, esco) REFERENCES billing.solar_installations (id, esco),
    CONSTRAINT solar_allocations_property_esco_fkey FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_allocations_ratio_range CHECK (ratio > 0 AND ratio <= 1)
);
COMMENT ON TABLE billing.solar_allocations IS
    'Which properties share an installation''s credit, and how much each (ratio); an installation''s ratios add '
    'up to at most 1.';

-- An installation's ratios add up to at most 1: checked at commit (so ratios
-- can be moved between properties in one transaction), with the installation
-- row locked, so two transactions adding allocations at once cannot both pass.
CREATE FUNCTION billing.check_solar_allocations() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    total numeric;
BEGIN
    PERFORM FROM billing.solar_installations AS i WHERE i.id = NEW.installation_id FOR UPDATE;
    SELECT sum(a.ratio) INTO total FROM billing.solar_allocations AS a WHERE a.installation_id = NEW.installation_id;
    IF total > 1 THEN
        RAISE EXCEPTION 'the allocations of solar installation % add up to %, more than 1', NEW.installation_id, total
            USING ERRCODE = 'check_violation', HINT = 'lower the other properties'' ratios first (in one transaction)';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER solar_allocations_at_most_one AFTER INSERT OR UPDATE ON billing.solar_allocations
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing.check_solar_allocations();


-- A month's solar credit of one property for one payee.
CREATE TABLE billing.solar_credits (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid          NOT NULL,
    property    uuid          NOT NULL,
    month       date          NOT NULL,
    customer_id uuid          NOT NULL,
    account_id  uuid          NOT NULL,
    amount      numeric(8, 2) NOT NULL,
    status      text          NOT NULL,
    details     jsonb         NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT solar_credits_id_esco_key UNIQUE (id, esco),
    CONSTRAINT solar_credits_once_per_month UNIQUE (esco, property, month, customer_id),
    CONSTRAINT solar_credits_property_esco_fkey FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco),
    CONSTRAINT solar_credits_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT solar_credits_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT solar_credits_month_start CHECK (extract(day FROM month) = 1),
    CONSTRAINT solar_credits_amount_not_negative CHECK (amount >= 0),
    CONSTRAINT solar_credits_status_valid CHECK (status IN ('paid', 'held', 'not_paid', 'cancelled'))
);
COMMENT ON TABLE billing.solar_credits IS
    'A month''s solar credit of a property for one occupier: paid (a top-up on the supply meter), held (owed '
    'but not paid to a meter: the payee moved out, or the meter takes no tokens), not_paid (no solar contract in '
    'force those days, or nothing earned), cancelled (its top-up was). details: days, pence, why.';
CREATE INDEX solar_credits_month_idx ON billing.solar_credits (esco, month);

-- Makes an ESCO's solar credits of a month that is over (once per property,
-- month and payee: running it again adds only what is missing), and pays each
-- as a top-up. Per UK day: each allocated installation in service earns
-- kWp x ratio x the rate in force / the days of the year; the day goes to the
-- occupier of the property's supply account at noon, paid if they had a solar
-- contract in force that day. Refused when an installation earns on a day no
-- rate is in force (never paying silently less). Returns the credits made.
CREATE FUNCTION billing.generate_solar_credits(p_esco uuid, p_month date) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    made integer := 0;
    unrated date;
    credit record;
BEGIN
    IF p_month IS NULL OR extract(day FROM p_month) <> 1 OR p_month + interval '1 month' > flows.uk_day(pg_catalog.now()) THEN
        RAISE EXCEPTION 'month must be the first day of a month that is over, got %', p_month
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(d.day) INTO unrated
    FROM billing.solar_installations AS i
    JOIN billing.solar_allocations AS a ON a.installation_id = i.id
    CROSS JOIN LATERAL (SELECT x::date AS day FROM generate_series(p_month, p_month + interval '1 month' - interval '1 day',
                                                                  interval '1 day') AS x) AS d
    WHERE i.esco = p_esco AND d.day >= i.commissioned_on AND (i.decommissioned_on IS NULL OR d.day < i.decommissioned_on)
      AND NOT EXISTS (SELECT FROM billing.solar_rates AS r WHERE r.esco = p_esco AND r.effective_from <= d.day);
    IF unrated IS NOT NULL THEN
        RAISE EXCEPTION 'no solar rate in force on %: solar installations earn that day', unrated
            USING ERRCODE = 'invalid_parameter_value', HINT = 'add a solar rate (solar_rates) from that day or earlier';
    END IF;
    FOR credit IN
        WITH days AS (
            SELECT x::date AS day, (x::date + time '12:00') AT TIME ZONE 'Europe/London' AS noon,
                   (pg_catalog.make_date(extract(year FROM x)::integer + 1, 1, 1)
                    - pg_catalog.make_date(extract(year FROM x)::integer, 1, 1)) AS year_days
            FROM generate_series(p_month, p_month + interval '1 month' - interval '1 day', interval '1 day') AS x
        ),
        earned AS (  -- pence per property and day, unrounded
            SELECT a.property, d.day, d.noon,
                   sum(i.declared_net_capacity_kwp * a.ratio * r.pence_per_kwp_year / d.year_days) AS pence
            FROM billing.solar_installations AS i
            JOIN billing.solar_allocations AS a ON a.installation_id = i.id
            JOIN days AS d ON d.day >= i.commissioned_on AND (i.decommissioned_on IS NULL OR d.day < i.decommissioned_on)
            CROSS JOIN LATERAL (SELECT s.pence_per_kwp_year FROM billing.solar_rates AS s
                                WHERE s.esco = i.esco AND s.effective_from <= d.day
                                ORDER BY s.effective_from DESC LIMIT 1) AS r
            WHERE i.esco = p_esco
            GROUP BY a.property, d.day, d.noon
        ),
        payees AS (  -- the occupier of the property's supply account at noon, and their solar contract
            SELECT e.property, e.day, e.pence, ac.id AS account_id, ca.customer_id,
                   EXISTS (SELECT FROM billing.contracts AS c
                           WHERE c.customer_id = ca.customer_id AND c.type = 'solar' AND c.signed_at IS NOT NULL
                             AND c.effective_date <= e.day AND (c.end_date IS NULL OR c.end_date > e.day)) AS contracted
            FROM earned AS e
            JOIN billing.accounts AS ac ON ac.property = e.property AND ac.type = 'supply'
             AND ac.opened_at <= e.noon AND (ac.closed_at IS NULL OR ac.closed_at > e.noon)
            JOIN billing.customer_accounts AS ca ON ca.account_id = ac.id AND ca.role = 'occupier'
             AND ca.start_time <= e.noon AND (ca.end_time IS NULL OR ca.end_time > e.noon)
        ),
        credits AS (
            SELECT p.property, p.customer_id, (array_agg(p.account_id ORDER BY p.day DESC))[1] AS account_id,
                   billing.round_half_up(coalesce(sum(p.pence) FILTER (WHERE p.contracted), 0) / 100, 2) AS amount,
                   pg_catalog.jsonb_build_object(
                       'days_paid', count(*) FILTER (WHERE p.contracted),
                       'days_without_solar_contract', count(*) FILTER (WHERE NOT p.contracted),
                       'pence_earned', billing.round_half_up(sum(p.pence), 5),
                       'pence_not_paid', billing.round_half_up(coalesce(sum(p.pence) FILTER (WHERE NOT p.contracted), 0), 5))
                       AS details
            FROM payees AS p
            GROUP BY p.property, p.customer_id
        ),
        judged AS (
            SELECT c.*, ac.meter_id,
                   CASE WHEN c.amount = 0 THEN 'not_paid'
                        WHEN c.amount > 1000 OR billing.topup_problem(ac) IS NOT NULL
                             OR NOT EXISTS (SELECT FROM billing.customer_accounts AS ca
                                            WHERE ca.account_id = c.account_id AND ca.customer_id = c.customer_id
                                              AND ca.role = 'occupier' AND ca.start_time <= pg_catalog.now()
                                              AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()))
                             THEN 'held'
                        ELSE 'paid' END AS status,
                   CASE WHEN c.amount = 0 THEN 'no solar contract in force, or nothing earned'
                        WHEN c.amount > 1000 THEN 'over the top-up limit of 1000 GBP'
                        ELSE coalesce(billing.topup_problem(ac), 'the occupier has moved out') END AS why
            FROM credits AS c JOIN billing.accounts AS ac ON ac.id = c.account_id
        )
        INSERT INTO billing.solar_credits (esco, property, month, customer_id, account_id, amount, status, details)
        SELECT p_esco, j.property, p_month, j.customer_id, j.account_id, j.amount, j.status,
               j.details || CASE WHEN j.status = 'paid' THEN '{}'::jsonb
                                 ELSE pg_catalog.jsonb_build_object('why', j.why) END
        FROM judged AS j
        ON CONFLICT ON CONSTRAINT solar_credits_once_per_month DO NOTHING
        RETURNING id, account_id, customer_id, amount, status
    LOOP
        made := made + 1;
        IF credit.status = 'paid' THEN
            PERFORM billing.create_topup(p_esco, credit.account_id,
                                         (SELECT a.meter_id FROM billing.accounts AS a WHERE a.id = credit.account_id),
                                         credit.amount, 'solar_credit', credit.customer_id, p_solar_credit => credit.id,
                                         p_notes => pg_catalog.format('solar credit %s', pg_catalog.to_char(p_month, 'YYYY-MM')));
        END IF;
    END LOOP;
    RETURN made;
END
$$;
COMMENT ON FUNCTION billing.generate_solar_credits(uuid, date) IS
    'Makes (once) and pays an ESCO''s solar credits for a month that is over; returns how many were made.';

-- ---- schema/billing/topups.sql ----
-- Top-ups: credit put on a prepay meter, funded by one source row (a payment,
-- a gift, a solar credit) or an operator's adjustment. A top-up rides on the
-- meter commands the workers already run (send_token: vend, push, read the
-- count and balance back, reconcile after a crash): each attempt round is one
-- command, and the command's progress is mirrored here by a trigger.
--
--   wait_token_fetch ──token vended──► wait_token_push ──credited──► completed
--        │                                  │
--        └─ the meter refused the token ────┴──► failed_token_fetch | failed_token_push   (operator: retry, cancel)
--        └─ the round ended otherwise: waits (waiting_for, waiting_reason), then a new round ──┘
--
-- A round that ends without crediting is not a failure unless the meter refused
-- the token: an offline meter keeps the top-up waiting ("meter": resumed when
-- the meter next answers, e.g. the scheduler's hourly sync), a round cut short
-- by something else (a worker that died) is tried again after a backoff
-- ("retry", at most 10 rounds). A new round sends the same token, carrying what
-- the last one saw (count and balance before its push), so a token the meter
-- took before going silent is recognised and never credited twice; only a
-- token the meter refused is replaced by a newly vended one.

CREATE TABLE billing.topups (
    id                uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco              uuid           NOT NULL,
    account_id        uuid           NOT NULL,
    meter_id          uuid           NOT NULL,
    customer_id       uuid,
    amount            numeric(8, 2)  NOT NULL,
    source            text           NOT NULL,
    payment_id        uuid,
    gift_id           uuid,
    solar_credit_id   uuid,
    status            text           NOT NULL DEFAULT 'wait_token_fetch',
    token             text,
    acquired_at       timestamptz,
    used_at           timestamptz,
    reference         text,
    notes             text,
    command_id        uuid,
    rounds            smallint       NOT NULL DEFAULT 0,
    transaction_count integer,
    balance_before    numeric(12, 5),
    balance_after     numeric(12, 5),
    waiting_for       text,
    waiting_since     timestamptz,
    waiting_reason    text,
    last_error        text,
    requested_by      text           NOT NULL,
    created_at        timestamptz    NOT NULL DEFAULT now(),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT topups_id_esco_key UNIQUE (id, esco),
    -- one source row funds at most one top-up
    CONSTRAINT topups_esco_payment_key UNIQUE (esco, payment_id),
    CONSTRAINT topups_esco_gift_key UNIQUE (esco, gift_id),
    CONSTRAINT topups_esco_solar_credit_key UNIQUE (esco, solar_credit_id),
    CONSTRAINT topups_command_key UNIQUE (command_id),
    CONSTRAINT topups_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT topups_meter_esco_fkey FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco),
    CONSTRAINT topups_customer_esco_fkey FOREIGN KEY (customer_id, esco) REFERENCES billing.customers (id, esco),
    CONSTRAINT topups_payment_esco_fkey FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco),
    CONSTRAINT topups_gift_esco_fkey FOREIGN KEY (gift_id, esco) REFERENCES billing.gifts (id, esco),
    CONSTRAINT topups_solar_credit_esco_fkey
        FOREIGN KEY (solar_credit_id, esco) REFERENCES billing.solar_credits (id, esco),
    CONSTRAINT topups_command_fkey FOREIGN KEY (command_id) REFERENCES flows.meter_commands (id),
    CONSTRAINT topups_source_valid CHECK (source IN ('payment', 'gift', 'solar_credit', 'adjustment')),
    CONSTRAINT topups_source_row CHECK (
        (payment_id IS NOT NULL) = (source = 'payment') AND (gift_id IS NOT NULL) = (source = 'gift')
        AND (solar_credit_id IS NOT NULL) = (source = 'solar_credit')),
    CONSTRAINT topups_amount_range CHECK (amount <> 0 AND amount BETWEEN -1000 AND 1000),
    CONSTRAINT topups_only_adjustments_negative CHECK (amount > 0 OR source = 'adjustment'),
    CONSTRAINT topups_adjustment_reason CHECK (source <> 'adjustment' OR btrim(notes) <> ''),
    CONSTRAINT topups_status_valid CHECK (status IN ('wait_token_fetch', 'wait_token_push', 'completed',
                                                     'failed_token_fetch', 'failed_token_push', 'cancelled')),
    CONSTRAINT topups_token_format CHECK (token ~ '^[0-9]{20}$'),
    CONSTRAINT topups_token_when_pushing CHECK (status NOT IN ('wait_token_push', 'failed_token_push') OR token IS NOT NULL),
    CONSTRAINT topups_used_when_credited CHECK ((used_at IS NOT NULL) = (status = 'completed' AND amount > 0)),
    CONSTRAINT topups_waiting_for_valid CHECK (waiting_for IN ('meter', 'retry', 'active_meter')),
    CONSTRAINT topups_waiting_while_waiting
        CHECK (waiting_for IS NULL OR status IN ('wait_token_fetch', 'wait_token_push')),
    CONSTRAINT topups_waiting_since CHECK ((waiting_for IS NULL) = (waiting_since IS NULL))
);
COMMENT ON TABLE billing.topups IS
    'Credit to a prepay meter from one source (payment, gift, solar_credit) or an adjustment (notes: the reason; '
    'negative: a deduction in the books only). status wait_token_fetch -> wait_token_push -> completed | '
    'failed_token_fetch | failed_token_push | cancelled; command_id the current send_token command; '
    'waiting_reason says why it waits.';
COMMENT ON COLUMN billing.topups.transaction_count IS 'The meter''s token transaction count after the credit.';
COMMENT ON COLUMN billing.topups.waiting_for IS
    'What a waiting top-up waits for before its next round: meter (to answer again), retry (a backoff), '
    'active_meter (a passive meter made active).';
CREATE INDEX topups_account_idx ON billing.topups (account_id, created_at);
CREATE INDEX topups_meter_idx ON billing.topups (meter_id, used_at);
CREATE INDEX topups_customer_idx ON billing.topups (customer_id, created_at);
CREATE INDEX topups_waiting_idx ON billing.topups (waiting_since) WHERE waiting_for IS NOT NULL;

CREATE TRIGGER topups_touch BEFORE UPDATE ON billing.topups
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();


-- Why an account cannot take a top-up now (null: it can): closed, no meter, a
-- meter without prepayment (three phase, or prepay disabled: a credit meter),
-- or (unless p_passive_ok) a passive meter, a digital twin never contacted.
CREATE FUNCTION billing.topup_problem(p_account billing.accounts, p_passive_ok boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    meter flows.meter_registry;
BEGIN
    IF p_account.id IS NULL THEN
        RETURN 'no such account';
    ELSIF p_account.status <> 'open' THEN
        RETURN pg_catalog.format('account %s is %s', p_account.account_number, p_account.status);
    END IF;
    SELECT * INTO meter FROM flows.meter_registry AS m WHERE m.id = p_account.meter_id;
    IF meter.id IS NULL THEN
        RETURN pg_catalog.format('account %s has no meter', p_account.account_number);
    ELSIF flows.is_three_phase(meter) THEN
        RETURN pg_catalog.format('meter %s is three phase: no prepayment, no tokens', meter.serial);
    ELSIF NOT meter.prepay_enabled THEN
        RETURN pg_catalog.format('meter %s has prepayment disabled (a credit meter): no tokens', meter.serial);
    ELSIF meter.mode <> 'active' AND NOT p_passive_ok THEN
        RETURN pg_catalog.format('meter %s is passive (a digital twin, never contacted): no tokens', meter.serial);
    END IF;
    RETURN NULL;
END
$$;

-- How a round's command failed, from its last error (the worker records
-- "ErrorClass: message", flows.worker.daemon.describe): refused (the meter
-- refused the token: flows.worker.workflows.TokenRefused), unreachable (the
-- meter did not answer: flows.emop.errors.MeterUnreachable and its kinds), or
-- other (a worker that died, the vendor, the database ...).
-- tests/worker/test_contract.py holds these names equal to the Python classes.
CREATE FUNCTION billing.token_failure_kind(error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN error ~ '^TokenRefused: ' THEN 'refused'
    WHEN error ~ '^(MeterUnreachable|ConnectionRefused|ReplyTimeout|ConnectionClosed|ProxyFailed): ' THEN 'unreachable'
    ELSE 'other'
END;

-- A new top-up, in the caller's transaction: the journal funding it (gifts,
-- solar credit and adjustments come from the ESCO; a payment's money is already
-- the account's credit) and its first round. A negative adjustment is a
-- deduction in the books only (meters take no negative tokens): completed at once.
CREATE FUNCTION billing.create_topup(p_esco uuid, p_account uuid, p_meter uuid, p_amount numeric, p_source text,
                                     p_customer uuid, p_payment uuid DEFAULT NULL, p_gift uuid DEFAULT NULL,
                                     p_solar_credit uuid DEFAULT NULL, p_reference text DEFAULT NULL,
                                     p_notes text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
BEGIN
    INSERT INTO billing.topups (esco, account_id, meter_id, customer_id, amount, source, payment_id, gift_id,
                                solar_credit_id, status, reference, notes, requested_by)
    VALUES (p_esco, p_account, p_meter, p_customer, p_amount, p_source, p_payment, p_gift, p_solar_credit,
            CASE WHEN p_amount < 0 THEN 'completed' ELSE 'wait_token_fetch' END, p_reference,
            CASE WHEN p_amount < 0 THEN concat_ws('; ', p_notes, 'a deduction in the books: meters take no negative tokens')
                 ELSE p_notes END,
            flows.requester())
    RETURNING * INTO topup;
    IF p_source <> 'payment' THEN
        PERFORM billing.post_journal(p_esco, 'topup_funded',
            pg_catalog.format('%s: %s', pg_catalog.replace(p_source, '_', ' '), coalesce(p_notes, 'top-up')),
            pg_catalog.jsonb_build_array(
                pg_catalog.jsonb_build_object('ledger_account', CASE p_source WHEN 'gift' THEN 'gifts'
                                                                    WHEN 'solar_credit' THEN 'solar_credit'
                                                                    ELSE 'adjustments' END,
                                              'amount', p_amount),
                pg_catalog.jsonb_build_object('ledger_account', 'customer_credit', 'account_id', p_account,
                                              'amount', -p_amount)),
            p_account => p_account, p_topup => topup.id);
    END IF;
    IF p_amount > 0 THEN
        PERFORM billing.start_topup_round(topup.id, false);
    END IF;
    RETURN topup.id;
END
$$;

-- A payment's top-up, when its account's meter takes tokens: returns its id,
-- or null (a credit meter, or an account closed: the money stays the
-- account's credit, for its statements or a refund). A passive prepay meter
-- gets its top-up, waiting until the meter is active.
CREATE FUNCTION billing.topup_for_payment(p_payment billing.payments) RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_payment.account_id;
    IF billing.topup_problem(account, p_passive_ok => true) IS NOT NULL OR account.type <> 'supply' THEN
        RETURN NULL;
    END IF;
    RETURN billing.create_topup(p_payment.esco, account.id, account.meter_id, p_payment.amount, 'payment',
                                p_payment.customer_id, p_payment => p_payment.id,
                                p_reference => p_payment.provider_reference, p_notes => p_payment.description);
END
$$;

-- The next round of a top-up: one send_token command (vend if no token yet,
-- else the same token, with what the last round saw of the meter), or, for a
-- passive meter, waiting for it to be made active. p_new_token: the meter
-- refused the last token, so a new one is vended.
CREATE FUNCTION billing.start_topup_round(p_topup uuid, p_new_token boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
    meter flows.meter_registry;
    previous flows.meter_commands;
    sent_token text;
    command uuid;
BEGIN
    SELECT * INTO topup FROM billing.topups AS t WHERE t.id = p_topup FOR UPDATE;
    SELECT * INTO meter FROM flows.meter_registry AS m WHERE m.id = topup.meter_id;
    sent_token := CASE WHEN p_new_token THEN NULL ELSE topup.token END;
    IF meter.mode <> 'active' THEN
        UPDATE billing.topups AS t
        SET waiting_for = 'active_meter', waiting_since = pg_catalog.now(), token = sent_token,
            status = CASE WHEN sent_token IS NULL THEN 'wait_token_fetch' ELSE 'wait_token_push' END,
            waiting_reason = pg_catalog.format('meter %s is passive (a digital twin): the top-up is sent once it is '
                                               'made active', meter.serial)
        WHERE t.id = topup.id;
        RETURN;
    END IF;
    SELECT * INTO previous FROM flows.meter_commands AS c WHERE c.id = topup.command_id;
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, progress, idempotency_key, requested_by)
    VALUES (topup.esco, topup.meter_id, 'send_token',
            pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'amount', topup.amount::text, 'token', sent_token, 'source', topup.source, 'topup_id', topup.id)),
            CASE WHEN sent_token IS NOT NULL AND previous.progress ->> 'token' = sent_token
                 THEN previous.progress || pg_catalog.jsonb_build_object('carried_from', previous.id)
                 ELSE '{}' END,
            pg_catalog.format('topup:%s:%s', topup.id, topup.rounds + 1), flows.requester())
    RETURNING id INTO command;
    UPDATE billing.topups AS t
    SET command_id = command, rounds = t.rounds + 1, token = sent_token,
        status = CASE WHEN sent_token IS NULL THEN 'wait_token_fetch' ELSE 'wait_token_push' END,
        waiting_for = NULL, waiting_since = NULL, waiting_reason = NULL
    WHERE t.id = topup.id;
END
$$;

-- Mirrors a top-up's current command onto it (the trigger below): the token
-- once vended, the credit once done (used_at, the meter's transaction count,
-- the balance before and after, and the journal moving the money onto the
-- meter), why it waits, and how a round ended.
CREATE FUNCTION billing.mirror_topup_command(p_command flows.meter_commands) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
    vended text := coalesce(p_command.parameters ->> 'token', p_command.progress ->> 'token');
    kind text := billing.token_failure_kind(p_command.last_error);
    shadow flows.meter_shadows;
BEGIN
    SELECT * INTO topup FROM billing.topups AS t WHERE t.command_id = p_command.id FOR UPDATE;
    IF topup.id IS NULL OR topup.status IN ('completed', 'cancelled') THEN
        RETURN;
    END IF;
    IF p_command.status = 'done' THEN
        UPDATE billing.topups AS t
        SET status = 'completed', token = vended,
            acquired_at = coalesce(t.acquired_at, pg_catalog.now()), used_at = p_command.finished_at,
            transaction_count = (p_command.result ->> 'transactions_after')::integer,
            balance_before = (p_command.result ->> 'balance_before')::numeric,
            balance_after = (p_command.result ->> 'balance_after')::numeric,
            waiting_for = NULL, waiting_since = NULL, waiting_reason = NULL, last_error = NULL
        WHERE t.id = topup.id;
        PERFORM billing.post_journal(topup.esco, 'topup_credited',
            pg_catalog.format('%s top-up credited on the meter (transaction %s)', pg_catalog.replace(topup.source, '_', ' '),
                              p_command.result ->> 'transactions_after'),
            pg_catalog.jsonb_build_array(
                pg_catalog.jsonb_build_object('ledger_account', 'customer_credit', 'account_id', topup.account_id,
                                              'amount', topup.amount),
                pg_catalog.jsonb_build_object('ledger_account', 'credit_on_meters', 'account_id', topup.account_id,
                                              'amount', -topup.amount)),
            p_account => topup.account_id, p_payment => topup.payment_id, p_topup => topup.id);
    ELSIF p_command.status = 'failed' AND (kind = 'refused' OR (kind = 'other' AND topup.rounds >= 10)) THEN
        UPDATE billing.topups AS t
        SET status = CASE WHEN vended IS NULL THEN 'failed_token_fetch' ELSE 'failed_token_push' END,
            token = vended, acquired_at = CASE WHEN vended IS NOT NULL
                                                                   THEN coalesce(t.acquired_at, pg_catalog.now()) END,
            last_error = CASE WHEN kind = 'refused' THEN p_command.last_error
                              ELSE pg_catalog.format('gave up after %s rounds: %s', t.rounds, p_command.last_error) END,
            waiting_for = NULL, waiting_since = NULL, waiting_reason = NULL
        WHERE t.id = topup.id;
    ELSIF p_command.status = 'failed' THEN
        SELECT * INTO shadow FROM flows.meter_shadows AS s WHERE s.id = topup.meter_id;
        UPDATE billing.topups AS t
        SET status = CASE WHEN vended IS NULL THEN 'wait_token_fetch' ELSE 'wait_token_push' END,
            token = vended, acquired_at = CASE WHEN vended IS NOT NULL
                                                                   THEN coalesce(t.acquired_at, pg_catalog.now()) END,
            last_error = p_command.last_error,
            waiting_for = CASE WHEN kind = 'unreachable' THEN 'meter' ELSE 'retry' END,
            waiting_since = pg_catalog.now(),
            waiting_reason = CASE WHEN kind = 'unreachable'
                THEN pg_catalog.format('the meter has not answered since %s (%s): the top-up is sent when it answers '
                                       'again', coalesce(shadow.last_healthy_at::text, 'it was registered'),
                                       p_command.last_error)
                ELSE pg_catalog.format('round %s ended without an answer (%s): tried again shortly', t.rounds,
                                       p_command.last_error) END
        WHERE t.id = topup.id;
    ELSIF p_command.status = 'cancelled' THEN
        PERFORM billing.cancel_topup(topup.id, coalesce(p_command.last_error, 'its meter command was cancelled'));
    ELSE  -- pending or running
        UPDATE billing.topups AS t
        SET status = CASE WHEN vended IS NULL THEN 'wait_token_fetch' ELSE 'wait_token_push' END,
            token = vended, acquired_at = CASE WHEN vended IS NOT NULL
                                                                   THEN coalesce(t.acquired_at, pg_catalog.now()) END,
            last_error = coalesce(p_command.last_error, t.last_error),
            waiting_reason = CASE WHEN p_command.status = 'pending' AND p_command.last_error IS NOT NULL
                THEN pg_catalog.format('try %s of %s failed (%s); next try at %s', p_command.attempts,
                                       p_command.max_attempts, p_command.last_error, p_command.run_at) END
        WHERE t.id = topup.id;
    END IF;
END
$$;

CREATE FUNCTION billing.topup_command_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.mirror_topup_command(NEW);
    RETURN NULL;
END
$$;

CREATE TRIGGER meter_commands_topups AFTER UPDATE ON flows.meter_commands
    FOR EACH ROW WHEN (NEW.kind = 'send_token' AND NEW.parameters ? 'topup_id'
                       AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.progress IS DISTINCT FROM NEW.progress))
    EXECUTE FUNCTION billing.topup_command_changed();

-- Cancels a top-up that is waiting or failed (its pending command with it):
-- for a gift, solar credit or adjustment the funding journal is reversed and
-- the source cancelled too; a payment's money stays the account's credit.
CREATE FUNCTION billing.cancel_topup(p_topup uuid, p_reason text) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
    funding uuid;
BEGIN
    UPDATE billing.topups AS t
    SET status = 'cancelled', notes = concat_ws('; ', t.notes, 'cancelled: ' || p_reason),
        waiting_for = NULL, waiting_since = NULL, waiting_reason = NULL
    WHERE t.id = p_topup AND t.status NOT IN ('completed', 'cancelled')
    RETURNING * INTO topup;
    IF topup.id IS NULL THEN
        RETURN;
    END IF;
    UPDATE flows.meter_commands AS c
    SET status = 'cancelled', finished_at = pg_catalog.now(), last_error = 'cancelled with its top-up: ' || p_reason
    WHERE c.id = topup.command_id AND c.status = 'pending';
    SELECT j.id INTO funding FROM billing.journals AS j WHERE j.topup_id = topup.id AND j.kind = 'topup_funded';
    IF funding IS NOT NULL THEN
        PERFORM billing.reverse_journal(funding, 'top-up cancelled: ' || p_reason);
    END IF;
    UPDATE billing.gifts AS g SET status = 'cancelled', cancelled_at = pg_catalog.now(), cancel_reason = p_reason
    WHERE g.id = topup.gift_id;
    UPDATE billing.solar_credits AS s SET status = 'cancelled' WHERE s.id = topup.solar_credit_id;
END
$$;

-- ---- schema/billing/ledger.sql ----
-- The ledger: double entry, append-only. Every money event posts one journal
-- in the same transaction as the event: its entries (debit positive, credit
-- negative) sum to zero, checked at commit. Nothing is ever changed or
-- removed (no UPDATE or DELETE privilege for anyone, the owner included, and a
-- trigger refusing them); a correction is a reversing journal.
--
--   event                          debit                     credit
--   payment received (processor)   processor_clearing        customer_credit (account)
--   payment received (bank, cash)  cash_at_bank              customer_credit (account)
--   refund                         customer_credit           processor_clearing | cash_at_bank
--   gift / solar credit / adjust.  gifts | solar_credit | adjustments    customer_credit (account)
--   top-up credited on the meter   customer_credit           credit_on_meters (account)
--   statement (prepay meter)       credit_on_meters          revenue (net), vat
--   statement (credit meter)       customer_credit           revenue (net), vat
-- A credit note posts its statement's figures negated.

CREATE TABLE billing.ledger_accounts (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL,
    description text NOT NULL,
    CONSTRAINT ledger_accounts_kind_valid CHECK (kind IN ('asset', 'liability', 'income', 'expense'))
);
COMMENT ON TABLE billing.ledger_accounts IS
    'The chart of accounts every ESCO''s books use (reference data). customer_credit and credit_on_meters are '
    'kept per customer account.';

INSERT INTO billing.ledger_accounts (code, name, kind, description) VALUES
    ('cash_at_bank', 'Cash at bank', 'asset', 'Bank transfers and cash received, less refunds paid from the bank.'),
    ('processor_clearing', 'Processor clearing', 'asset',
     'Card and Direct Debit payments the processor holds for the ESCO until it pays them out.'),
    ('customer_credit', 'Customer credit', 'liability',
     'Per account: money received (or given) not yet put on its meter; negative: the account owes.'),
    ('credit_on_meters', 'Credit on meters', 'liability',
     'Per account: credit put on its prepay meter not yet charged on a statement.'),
    ('revenue', 'Energy revenue', 'income', 'Statement charges net of VAT (energy and standing charges).'),
    ('vat', 'VAT payable', 'liability', 'VAT on statement charges.'),
    ('gifts', 'Gifts', 'expense', 'Credit the ESCO gave away (sign-up bonuses, hardship funds).'),
    ('solar_credit', 'Solar credit', 'expense', 'Credit paid to occupiers for the solar installations they share.'),
    ('adjustments', 'Adjustments', 'expense', 'Credit added (or, negative, taken) by operators, with a reason.');


CREATE TABLE billing.journals (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco       uuid        NOT NULL REFERENCES flows.escos (id),
    kind       text        NOT NULL,
    account_id uuid,
    payment_id uuid,
    refund_id  uuid,
    topup_id   uuid,
    invoice_id uuid,
    reverses   uuid,
    memo       text        NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now(),
    posted_by  text        NOT NULL,
    CONSTRAINT journals_id_esco_key UNIQUE (id, esco),
    CONSTRAINT journals_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT journals_payment_esco_fkey FOREIGN KEY (payment_id, esco) REFERENCES billing.payments (id, esco),
    CONSTRAINT journals_refund_esco_fkey FOREIGN KEY (refund_id, esco) REFERENCES billing.refunds (id, esco),
    CONSTRAINT journals_topup_esco_fkey FOREIGN KEY (topup_id, esco) REFERENCES billing.topups (id, esco),
    CONSTRAINT journals_invoice_esco_fkey FOREIGN KEY (invoice_id, esco) REFERENCES billing.invoices (id, esco),
    CONSTRAINT journals_reverses_esco_fkey FOREIGN KEY (reverses, esco) REFERENCES billing.journals (id, esco),
    CONSTRAINT journals_kind_valid CHECK (kind IN ('payment_received', 'refund', 'topup_funded', 'topup_credited',
                                                   'statement_charge', 'reversal')),
    CONSTRAINT journals_reversal_reverses CHECK ((kind = 'reversal') = (reverses IS NOT NULL)),
    CONSTRAINT journals_memo_not_blank CHECK (btrim(memo) <> '')
);
COMMENT ON TABLE billing.journals IS
    'A money event in the books (append-only): kind, what it is about (account, payment, refund, top-up, '
    'statement), and for a correction the journal it reverses. Its entries sum to zero.';
-- Each event is posted once: the same payment is never received twice, nor a top-up credited twice.
CREATE UNIQUE INDEX journals_payment_received_once ON billing.journals (esco, payment_id) WHERE kind = 'payment_received';
CREATE UNIQUE INDEX journals_refund_once ON billing.journals (esco, refund_id) WHERE kind = 'refund';
CREATE UNIQUE INDEX journals_topup_once ON billing.journals (esco, topup_id, kind)
    WHERE kind IN ('topup_funded', 'topup_credited');
CREATE UNIQUE INDEX journals_statement_once ON billing.journals (esco, invoice_id) WHERE kind = 'statement_charge';
CREATE UNIQUE INDEX journals_reversed_once ON billing.journals (esco, reverses);
CREATE INDEX journals_esco_posted_idx ON billing.journals (esco, posted_at);
CREATE INDEX journals_account_idx ON billing.journals (account_id);

CREATE TABLE billing.journal_entries (
    id             bigint         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    esco           uuid           NOT NULL,
    journal_id     uuid           NOT NULL,
    ledger_account text           NOT NULL REFERENCES billing.ledger_accounts (code),
    account_id     uuid,
    amount         numeric(12, 2) NOT NULL,
    CONSTRAINT journal_entries_journal_esco_fkey FOREIGN KEY (journal_id, esco) REFERENCES billing.journals (id, esco),
    CONSTRAINT journal_entries_account_esco_fkey FOREIGN KEY (account_id, esco) REFERENCES billing.accounts (id, esco),
    CONSTRAINT journal_entries_amount_not_zero CHECK (amount <> 0),
    -- customer_credit and credit_on_meters are kept per customer account; the ESCO's other accounts are not
    CONSTRAINT journal_entries_per_account
        CHECK ((ledger_account IN ('customer_credit', 'credit_on_meters')) = (account_id IS NOT NULL))
);
COMMENT ON TABLE billing.journal_entries IS
    'Lines of a journal (append-only): ledger account (and customer account), amount GBP, debit positive, '
    'credit negative.';
CREATE INDEX journal_entries_journal_idx ON billing.journal_entries (journal_id);
CREATE INDEX journal_entries_account_idx ON billing.journal_entries (account_id, ledger_account);
CREATE INDEX journal_entries_esco_idx ON billing.journal_entries (esco, ledger_account);


CREATE FUNCTION billing.refuse_ledger_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'correct a journal with a reversing journal (billing.reverse_journal)';
END
$$;

CREATE TRIGGER journals_append_only BEFORE UPDATE OR DELETE ON billing.journals
    FOR EACH ROW EXECUTE FUNCTION billing.refuse_ledger_change();
CREATE TRIGGER journals_no_truncate BEFORE TRUNCATE ON billing.journals
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_ledger_change();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON billing.journal_entries
    FOR EACH ROW EXECUTE FUNCTION billing.refuse_ledger_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON billing.journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_ledger_change();

-- At commit, each journal posted or added to has at least two entries summing to zero.
CREATE FUNCTION billing.check_journal_balanced(p_journal uuid) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    total numeric;
    lines integer;
BEGIN
    SELECT coalesce(sum(e.amount), 0), count(*) INTO total, lines
    FROM billing.journal_entries AS e WHERE e.journal_id = p_journal;
    IF total <> 0 OR lines < 2 THEN
        RAISE EXCEPTION 'journal % does not balance: % entries summing to %', p_journal, lines, total
            USING ERRCODE = 'check_violation', HINT = 'post a journal''s entries together, debits equal to credits';
    END IF;
END
$$;

CREATE FUNCTION billing.journal_posted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.check_journal_balanced(NEW.id);
    RETURN NULL;
END
$$;

CREATE FUNCTION billing.journal_entry_posted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.check_journal_balanced(NEW.journal_id);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER journals_balanced AFTER INSERT ON billing.journals
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing.journal_posted();
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON billing.journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing.journal_entry_posted();


-- Posts a journal: p_entries is a JSON array of {ledger_account, amount
-- (debit positive), account_id (for the per-account ledger accounts)}, which
-- must sum to zero. Returns the journal's id.
CREATE FUNCTION billing.post_journal(p_esco uuid, p_kind text, p_memo text, p_entries jsonb,
                                     p_account uuid DEFAULT NULL, p_payment uuid DEFAULT NULL,
                                     p_refund uuid DEFAULT NULL, p_topup uuid DEFAULT NULL,
                                     p_invoice uuid DEFAULT NULL, p_reverses uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    journal uuid;
    total numeric;
BEGIN
    SELECT sum((e ->> 'amount')::numeric) INTO total FROM pg_catalog.jsonb_array_elements(p_entries) AS e;
    IF total IS DISTINCT FROM 0 OR pg_catalog.jsonb_array_length(p_entries) < 2 THEN
        RAISE EXCEPTION 'a journal''s entries must sum to zero: % entries summing to %',
            pg_catalog.jsonb_array_length(p_entries), total
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO billing.journals (esco, kind, account_id, payment_id, refund_id, topup_id, invoice_id, reverses, memo,
                                  posted_by)
    VALUES (p_esco, p_kind, p_account, p_payment, p_refund, p_topup, p_invoice, p_reverses, p_memo, flows.requester())
    RETURNING id INTO journal;
    INSERT INTO billing.journal_entries (esco, journal_id, ledger_account, account_id, amount)
    SELECT p_esco, journal, e ->> 'ledger_account', (e ->> 'account_id')::uuid, (e ->> 'amount')::numeric
    FROM pg_catalog.jsonb_array_elements(p_entries) AS e
    WHERE (e ->> 'amount')::numeric <> 0;
    RETURN journal;
END
$$;
COMMENT ON FUNCTION billing.post_journal(uuid, text, text, jsonb, uuid, uuid, uuid, uuid, uuid, uuid) IS
    'Posts a balanced journal (entries: [{ledger_account, account_id, amount}], debit positive); returns its id.';

-- A correction: the journal's entries negated, as a new journal that says so.
CREATE FUNCTION billing.reverse_journal(p_journal uuid, p_memo text) RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    original billing.journals;
BEGIN
    SELECT * INTO original FROM billing.journals AS j WHERE j.id = p_journal;
    IF original.id IS NULL THEN
        RAISE EXCEPTION 'no journal %', p_journal USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN billing.post_journal(original.esco, 'reversal', p_memo,
        (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                    'ledger_account', e.ledger_account, 'account_id', e.account_id, 'amount', -e.amount)))
         FROM billing.journal_entries AS e WHERE e.journal_id = original.id),
        p_account => original.account_id, p_payment => original.payment_id, p_refund => original.refund_id,
        p_topup => original.topup_id, p_invoice => original.invoice_id, p_reverses => original.id);
END
$$;
COMMENT ON FUNCTION billing.reverse_journal(uuid, text) IS 'Posts the reversal of a journal (its entries negated).';

-- Statement charges: when statements and credit notes are issued (draft ->
-- final, billing.issue_invoices), each posts once its total against the account
-- (the meter's credit for a prepay meter, the account's credit otherwise),
-- its net to revenue and its VAT to vat. Set-based: one statement for a run.
CREATE FUNCTION billing.post_statement_charges(p_invoices uuid[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    posted integer;
BEGIN
    WITH issued AS (
        SELECT i.* FROM billing.invoices AS i
        WHERE i.id = ANY (p_invoices) AND i.status = 'final' AND i.total <> 0
          AND NOT EXISTS (SELECT FROM billing.journals AS j WHERE j.invoice_id = i.id AND j.kind = 'statement_charge')
    ),
    made AS (
        INSERT INTO billing.journals (esco, kind, account_id, invoice_id, memo, posted_by)
        SELECT i.esco, 'statement_charge', i.account_id, i.id,
               pg_catalog.format('%s %s for %s', pg_catalog.replace(i.kind, '_', ' '), i.number,
                                 pg_catalog.to_char(i.period_start, 'YYYY-MM')),
               flows.requester()
        FROM issued AS i
        RETURNING id, invoice_id
    )
    INSERT INTO billing.journal_entries (esco, journal_id, ledger_account, account_id, amount)
    SELECT i.esco, m.id, x.ledger_account, x.account_id, x.amount
    FROM made AS m
    JOIN issued AS i ON i.id = m.invoice_id
    CROSS JOIN LATERAL (VALUES (CASE WHEN i.prepay THEN 'credit_on_meters' ELSE 'customer_credit' END, i.account_id,
                                i.total),
                               ('revenue', NULL::uuid, -i.net),
                               ('vat', NULL::uuid, -i.vat)) AS x (ledger_account, account_id, amount)
    WHERE x.amount <> 0;
    SELECT count(*) INTO posted FROM billing.journals AS j WHERE j.invoice_id = ANY (p_invoices);
    RETURN posted;
END
$$;

CREATE FUNCTION billing.invoices_issued() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM billing.post_statement_charges(ARRAY(SELECT n.id FROM new_invoices AS n WHERE n.status = 'final'));
    RETURN NULL;
END
$$;

CREATE TRIGGER invoices_post_charges AFTER UPDATE ON billing.invoices
    REFERENCING NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION billing.invoices_issued();

-- ---- schema/billing/money_pass.sql ----
-- The money pass: what the payments job (flows.payments.job) runs every few
-- seconds, one pass at a time across all workers (advisory lock money_pass),
-- each step set-based or over the few rows that are due:
--
-- 1. gifts that are due become top-ups;
-- 2. waiting top-ups whose reason to wait is gone start their next round: the
--    meter answered again (a sync), a retry's backoff passed, the meter was
--    made active;
-- 3. regular payments (wallets paid monthly or weekly) are created up to
--    p_horizon ahead, so customers can be told the day before; those a changed
--    wallet no longer wants are cancelled while not yet submitted;
-- 4. auto top-ups: a wallet whose prepay meter's balance is below its minimum
--    gets one payment for the difference to its target (never a second while
--    one is open or its top-up is not credited yet, never over a failed one
--    of the last day, and only on a balance read after the last one landed).

-- The times a wallet's regular payments fall due from p_from to p_to: 09:00 UK
-- time on its payment day (of the month, or ISO day of the week).
CREATE FUNCTION billing.regular_payment_times(p_wallet billing.wallets, p_from timestamptz, p_to timestamptz)
RETURNS SETOF timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT (d::date + time '09:00') AT TIME ZONE 'Europe/London'
    FROM generate_series(flows.uk_day(p_from)::timestamp, flows.uk_day(p_to)::timestamp, interval '1 day') AS d
    WHERE CASE p_wallet.payment_timing WHEN 'monthly' THEN extract(day FROM d) = p_wallet.payment_day
                                       WHEN 'weekly' THEN extract(isodow FROM d) = p_wallet.payment_day END
      AND (d::date + time '09:00') AT TIME ZONE 'Europe/London' > p_from
      AND (d::date + time '09:00') AT TIME ZONE 'Europe/London' <= p_to
$$;

-- Whether a wallet's account may be paid for now: open supply account on an
-- active prepay meter, someone paying it, with an active payment method.
CREATE FUNCTION billing.wallet_payer(p_wallet billing.wallets) RETURNS TABLE (customer_id uuid, payment_method_id uuid)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT payer.id, coalesce(
               (SELECT m.id FROM billing.payment_methods AS m
                WHERE m.id = p_wallet.payment_method_id AND m.status = 'active' AND m.customer_id = payer.id),
               billing.default_payment_method(payer.id))
    FROM billing.accounts AS a
    CROSS JOIN LATERAL (SELECT billing.payer_at(a.id, pg_catalog.now()) AS id) AS payer
    WHERE a.id = p_wallet.account_id AND a.type = 'supply' AND billing.topup_problem(a) IS NULL AND payer.id IS NOT NULL
$$;

CREATE FUNCTION billing.run_money_pass_v1(p_retry_base interval DEFAULT '30 seconds',
                                          p_horizon interval DEFAULT '7 days')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    gifts integer := 0;
    resumed integer := 0;
    scheduled integer := 0;
    withdrawn integer := 0;
    auto integer := 0;
    due uuid;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(flows.lock_key('money_pass'), 0) THEN
        RETURN pg_catalog.jsonb_build_object('skipped', 'another pass is running');
    END IF;

    FOR due IN SELECT g.id FROM billing.gifts AS g WHERE g.status = 'scheduled' AND g.scheduled_at <= pg_catalog.now()
               ORDER BY g.scheduled_at FOR UPDATE SKIP LOCKED LOOP
        PERFORM billing.give_gift(due);
        gifts := gifts + 1;
    END LOOP;

    FOR due IN SELECT t.id FROM billing.topups AS t
               JOIN flows.meter_registry AS m ON m.id = t.meter_id
               LEFT JOIN flows.meter_shadows AS s ON s.id = t.meter_id
               WHERE t.waiting_for IS NOT NULL
                 AND ((t.waiting_for = 'meter' AND s.last_healthy_at > t.waiting_since)
                      OR (t.waiting_for = 'retry'
                          AND pg_catalog.now() >= t.waiting_since
                                                  + least(interval '1 hour',
                                                          p_retry_base * power(2, least(t.rounds, 10) - 1)))
                      OR (t.waiting_for = 'active_meter' AND m.mode = 'active'))
               ORDER BY t.waiting_since FOR UPDATE OF t SKIP LOCKED LOOP
        PERFORM billing.start_topup_round(due, false);
        resumed := resumed + 1;
    END LOOP;

    -- Regular payments a wallet no longer wants (its timing, day or amount changed, or none): cancelled.
    UPDATE billing.payments AS p
    SET status = 'cancelled', failure_reason = 'the wallet''s regular payments changed'
    FROM billing.wallets AS w
    WHERE w.id = p.wallet_id AND p.origin = 'scheduled' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND (w.payment_timing IS NULL OR p.amount <> w.regular_amount
           OR p.scheduled_at NOT IN (SELECT billing.regular_payment_times(w, p.scheduled_at - interval '1 minute',
                                                                         p.scheduled_at)));
    GET DIAGNOSTICS withdrawn = ROW_COUNT;

    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, wallet_id, payment_method_id,
                                  scheduled_at, description, requested_by)
    SELECT w.esco, w.account_id, payer.customer_id, w.regular_amount, 'stripe', 'scheduled', w.id,
           payer.payment_method_id, due_at,
           pg_catalog.format('%s payment', w.payment_timing), 'scheduler'
    FROM billing.wallets AS w
    CROSS JOIN LATERAL billing.wallet_payer(w) AS payer
    CROSS JOIN LATERAL billing.regular_payment_times(w, pg_catalog.now(), pg_catalog.now() + p_horizon) AS due_at
    WHERE w.payment_timing IS NOT NULL AND payer.payment_method_id IS NOT NULL
    ON CONFLICT (wallet_id, scheduled_at) WHERE origin = 'scheduled' AND status <> 'cancelled' DO NOTHING;
    GET DIAGNOSTICS scheduled = ROW_COUNT;

    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, wallet_id, payment_method_id,
                                  description, requested_by)
    SELECT w.esco, w.account_id, payer.customer_id,
           least(500, greatest(0.01, billing.round_half_up(w.target_balance - s.balance, 2))), 'stripe', 'auto_top_up',
           w.id, payer.payment_method_id,
           pg_catalog.format('auto top-up: balance %s below %s', billing.round_half_up(s.balance, 2), w.minimum_balance),
           'scheduler'
    FROM billing.wallets AS w
    JOIN flows.meter_shadows AS s ON s.id = w.meter_id
    CROSS JOIN LATERAL billing.wallet_payer(w) AS payer
    WHERE w.auto_top_up AND s.balance < w.minimum_balance AND payer.payment_method_id IS NOT NULL
      AND NOT EXISTS (  -- an auto top-up still on its way, or one that failed in the last day
          SELECT FROM billing.payments AS p
          LEFT JOIN billing.topups AS t ON t.payment_id = p.id
          WHERE p.wallet_id = w.id AND p.origin = 'auto_top_up'
            AND (p.status IN ('pending', 'created', 'processing')
                 OR (p.status = 'succeeded' AND t.id IS NOT NULL AND t.status <> 'completed')
                 OR (p.status = 'failed' AND p.updated_at > pg_catalog.now() - interval '1 day')
                 OR (t.used_at IS NOT NULL AND s.balance_updated_at <= t.used_at)))
    ON CONFLICT (wallet_id) WHERE origin = 'auto_top_up' AND status IN ('pending', 'created', 'processing') DO NOTHING;
    GET DIAGNOSTICS auto = ROW_COUNT;

    RETURN pg_catalog.jsonb_build_object('gifts', gifts, 'topups_resumed', resumed, 'scheduled_payments', scheduled,
                                         'scheduled_withdrawn', withdrawn, 'auto_top_ups', auto);
END
$$;
COMMENT ON FUNCTION billing.run_money_pass_v1(interval, interval) IS
    'One money pass: due gifts, waiting top-ups resumed, regular payments created ahead, auto top-ups. '
    'Returns what it did.';

-- ---- schema/monitoring.sql: money in for the exporter ----
-- Money in per ESCO: payments received (how many, GBP) and failed in the last
-- hour; how long the oldest processor payment has been due without reaching
-- the processor (the payments job is not running, or has no key); top-ups
-- waiting (all, and those waiting for their meter to answer), failed, and how
-- long the oldest has waited.
CREATE VIEW monitoring.money_in AS
SELECT e.code AS esco,
       count(p.id) FILTER (WHERE p.received_at > now() - interval '1 hour') AS received_last_hour,
       coalesce(sum(p.amount) FILTER (WHERE p.received_at > now() - interval '1 hour'), 0) AS received_gbp_last_hour,
       count(p.id) FILTER (WHERE p.status = 'failed' AND p.updated_at > now() - interval '1 hour') AS failed_last_hour,
       coalesce(extract(epoch FROM now() - min(p.scheduled_at) FILTER (
           WHERE p.provider = 'stripe' AND p.status IN ('pending', 'created') AND p.scheduled_at <= now())), 0)
           AS oldest_due_seconds,
       coalesce(t.waiting, 0) AS topups_waiting,
       coalesce(t.waiting_for_meter, 0) AS topups_waiting_for_meter,
       coalesce(t.failed, 0) AS topups_failed,
       coalesce(t.oldest_waiting_seconds, 0) AS oldest_topup_waiting_seconds
FROM flows.escos AS e
LEFT JOIN billing.payments AS p
       ON p.esco = e.id AND (p.received_at > now() - interval '1 hour' OR p.updated_at > now() - interval '1 hour'
                             OR p.status IN ('pending', 'created'))
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.status IN ('wait_token_fetch', 'wait_token_push')) AS waiting,
           count(*) FILTER (WHERE x.waiting_for = 'meter') AS waiting_for_meter,
           count(*) FILTER (WHERE x.status IN ('failed_token_fetch', 'failed_token_push')) AS failed,
           extract(epoch FROM now() - min(x.created_at) FILTER (
               WHERE x.status IN ('wait_token_fetch', 'wait_token_push'))) AS oldest_waiting_seconds
    FROM billing.topups AS x
    WHERE x.esco = e.id AND x.status NOT IN ('completed', 'cancelled')
) AS t ON true
GROUP BY e.code, t.waiting, t.waiting_for_meter, t.failed, t.oldest_waiting_seconds;

-- Processor webhook events of the last day by outcome (unmatched and conflict need a person).
CREATE VIEW monitoring.processor_events AS
SELECT o.outcome, count(x.event_id) AS last_day
FROM (VALUES ('applied'), ('stale'), ('ignored'), ('unmatched'), ('conflict')) AS o (outcome)
LEFT JOIN billing.processor_events AS x ON x.outcome = o.outcome AND x.received_at > now() - interval '1 day'
GROUP BY o.outcome;

-- Billing per ESCO: whether last UK month still lacks its final run (an ESCO
-- with customer accounts only), and the UK day of the month (statements are
-- due in the first days; UK days without flows.uk_day, which the exporter
-- may not execute); draft runs waiting to be finalised and the oldest's age; statements
-- issued in the last day; final statements whose PDF is not rendered yet.
CREATE VIEW monitoring.billing AS
SELECT e.code AS esco,
       (EXISTS (SELECT FROM billing.accounts AS a WHERE a.esco = e.id)
        AND NOT EXISTS (SELECT FROM billing.billing_runs AS r
                        WHERE r.esco = e.id AND r.status = 'final'
                          AND r.period_start = (date_trunc('month', (now() AT TIME ZONE 'Europe/London')::date)
                                                - interval '1 month')::date))::int
           AS last_month_unbilled,
       extract(day FROM (now() AT TIME ZONE 'Europe/London')::date)::int AS day_of_month,
       (SELECT count(*) FROM billing.billing_runs AS r WHERE r.esco = e.id AND r.status = 'draft') AS drafts_open,
       coalesce((SELECT extract(epoch FROM now() - min(r.created_at)) FROM billing.billing_runs AS r
                 WHERE r.esco = e.id AND r.status = 'draft'), 0) AS oldest_draft_seconds,
       (SELECT count(*) FROM billing.invoices AS i
        WHERE i.esco = e.id AND i.status <> 'draft' AND i.issued_at > now() - interval '1 day') AS issued_last_day,
       (SELECT count(*) FROM billing.invoices AS i
        WHERE i.esco = e.id AND i.status = 'final'
          AND NOT EXISTS (SELECT FROM billing.invoice_documents AS d WHERE d.invoice_id = i.id)) AS unrendered
FROM flows.escos AS e;

-- ---- schema/billing/billing_run.sql: a statement counts the completed top-ups of its period ----
CREATE OR REPLACE FUNCTION billing.compute_statements(p_run uuid, p_accounts uuid[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET jit = off
AS $$
DECLARE
    run billing.billing_runs;
    missing text;
    made integer;
BEGIN
    SELECT * INTO run FROM billing.billing_runs AS r WHERE r.id = p_run FOR UPDATE;
    IF run.status <> 'draft' THEN
        RAISE EXCEPTION 'billing run % is final', p_run USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT string_agg(pg_catalog.format('account %s (%s) from %s to %s', a.account_number, c.fullname,
                                        lower(u.r), upper(u.r)), '; ' ORDER BY a.account_number)
    INTO missing
    FROM billing.periods_without_tariff(run.esco, run.period_start, p_accounts) AS g
    JOIN billing.accounts AS a ON a.id = g.account_id
    JOIN billing.customers AS c ON c.id = g.customer_id
    CROSS JOIN LATERAL (SELECT x AS r FROM unnest(g.uncovered) AS x LIMIT 1) AS u;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'no tariff in force for %', missing
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give the customers a tariff for the quarter (rpc/generate_customer_tariffs) and run again';
    END IF;

    DELETE FROM billing.invoices AS i
    WHERE i.run_id = p_run AND i.status = 'draft' AND (p_accounts IS NULL OR i.account_id = ANY (p_accounts));

    WITH lines AS MATERIALIZED (
        SELECT l.*, row_number() OVER (PARTITION BY l.account_id, l.customer_id
                                       ORDER BY l.kind, l.element, l.period_from) AS position
        FROM billing.statement_lines(run.esco, run.period_start, p_accounts) AS l
        WHERE NOT EXISTS (SELECT FROM billing.invoices AS f
                          WHERE f.account_id = l.account_id AND f.customer_id = l.customer_id
                            AND f.period_start = run.period_start AND f.kind = 'statement' AND f.status = 'final')
    ),
    sums AS (
        -- net of VAT from the exact gross sum (quantity x rate is exact; dividing once keeps it so)
        SELECT l.account_id, l.customer_id,
               billing.round_half_up(billing.net_of_vat(sum(l.quantity * l.rate)), 2) AS net,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'energy'), 0) AS kwh,
               coalesce(sum(l.quantity) FILTER (WHERE l.kind = 'standing_charge'), 0) AS days,
               min(l.period_from) AS period_from, max(l.period_to) AS period_to,
               sum(floor(l.amount_exact * 100)) AS pennies_floor
        FROM lines AS l
        GROUP BY l.account_id, l.customer_id
    ),
    totals AS (
        SELECT s.*, billing.vat_rate(p.type, s.kwh, s.days) AS vat_rate, m.prepay_enabled, a.meter_id,
               (SELECT v.id FROM billing.invoices AS v
                WHERE v.account_id = s.account_id AND v.customer_id = s.customer_id
                  AND v.period_start = run.period_start AND v.kind = 'statement' AND v.status = 'void'
                ORDER BY v.issued_at DESC LIMIT 1) AS replaces
        FROM sums AS s
        JOIN billing.accounts AS a ON a.id = s.account_id
        JOIN flows.properties AS p ON p.id = a.property
        JOIN flows.meter_registry AS m ON m.id = a.meter_id
    ),
    -- What a statement prints besides its lines, frozen with it: the reads
    -- at either end, the tariffs and their price cap, 12 months of the
    -- meter's kWh and an annual estimate, the credit pushed to the meter;
    -- each one grouped pass over the run.
    per_register AS (
        SELECT l.account_id, l.customer_id, l.register_id, l.element, sum(l.quantity) AS kwh,
               sum(l.half_hours) AS half_hours, sum(l.expected_half_hours) AS expected,
               sum(l.estimated_half_hours) AS estimated
        FROM lines AS l
        WHERE l.kind = 'energy'
        GROUP BY l.account_id, l.customer_id, l.register_id, l.element
    ),
    readings AS (
        SELECT r.account_id, r.customer_id, sum(r.estimated) AS estimated,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'register_id', r.register_id, 'element', r.element,
                   'start_read', sr.read, 'start_read_at', sr."timestamp",
                   'end_read', er.read, 'end_read_at', er."timestamp",
                   'kwh', r.kwh, 'half_hours', r.half_hours, 'expected_half_hours', r.expected,
                   'estimated_half_hours', r.estimated,
                   'estimated', r.estimated > 0 OR r.half_hours < r.expected) ORDER BY r.element) AS readings
        FROM per_register AS r
        JOIN totals AS t ON t.account_id = r.account_id AND t.customer_id = r.customer_id
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_from
                           ORDER BY x."timestamp" DESC LIMIT 1) AS sr ON true
        LEFT JOIN LATERAL (SELECT x.read, x."timestamp" FROM flows.register_import AS x
                           WHERE x.register_id = r.register_id AND x."timestamp" <= t.period_to
                           ORDER BY x."timestamp" DESC LIMIT 1) AS er ON true
        GROUP BY r.account_id, r.customer_id
    ),
    tariffs AS (
        SELECT u.account_id, u.customer_id,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'customer_tariff_id', ct.id, 'effective_from', ct.effective_from, 'effective_to', ct.effective_to,
                   'discount', ct.discount, 'unit_rate', ct.unit_rate, 'standing_charge', ct.standing_charge,
                   'cap_unit_rate', bt.unit_rate, 'cap_standing_charge', bt.standing_charge, 'region', mg.region)
                   ORDER BY ct.effective_from) AS tariffs,
               (array_agg(ct.unit_rate ORDER BY ct.effective_from DESC))[1] AS unit_rate,
               (array_agg(ct.standing_charge ORDER BY ct.effective_from DESC))[1] AS standing_charge
        FROM (SELECT DISTINCT l.account_id, l.customer_id, l.customer_tariff_id FROM lines AS l) AS u
        JOIN billing.customer_tariffs AS ct ON ct.id = u.customer_tariff_id
        JOIN billing.microgrid_tariffs AS mg ON mg.id = ct.microgrid_tariff_id
        JOIN billing.benchmark_tariffs AS bt ON bt.region = mg.region AND bt.period_start = mg.period_start
        GROUP BY u.account_id, u.customer_id
    ),
    meter_months AS (  -- the kWh of the run's meters in each of the 12 months to the statement's, where any
        SELECT r.meter_id, x.month, sum(x.import_kwh) AS kwh
        FROM (SELECT DISTINCT t.meter_id FROM totals AS t) AS t
        JOIN flows.meter_registers AS r ON r.meter_id = t.meter_id AND r.nature <> 'solar'
        JOIN flows.register_interval_monthly AS x
          ON x.register_id = r.register_id AND x.month > (run.period_start - interval '12 months')::date
         AND x.month <= run.period_start
        GROUP BY r.meter_id, x.month
    ),
    usage AS (  -- every one of the 12 months (whoever paid then), 0 where the meter measured nothing
        SELECT t.account_id, t.customer_id,
               pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('month', mo::date, 'kwh', coalesce(mm.kwh, 0))
                                    ORDER BY mo) AS months,
               coalesce(sum(mm.kwh), 0) AS total,
               -- a year's kWh: the last 12 months, scaled up when fewer months have data
               billing.round_half_up(coalesce(sum(mm.kwh), 0) * 12 / greatest(count(*) FILTER (WHERE mm.kwh > 0), 1),
                                     0) AS annual
        FROM totals AS t
        CROSS JOIN generate_series(run.period_start - interval '11 months', run.period_start::timestamp,
                                   interval '1 month') AS mo
        LEFT JOIN meter_months AS mm ON mm.meter_id = t.meter_id AND mm.month = mo::date
        GROUP BY t.account_id, t.customer_id
    ),
    topups AS (  -- credit put on the meter in the period: its completed top-ups (billing/topups.sql)
        SELECT t.account_id, t.customer_id, count(*)::integer AS n, sum(x.amount) AS value
        FROM totals AS t
        JOIN billing.topups AS x
          ON x.meter_id = t.meter_id AND x.status = 'completed'
         AND x.used_at >= t.period_from AND x.used_at < t.period_to
        GROUP BY t.account_id, t.customer_id
    ),
    made AS (
        INSERT INTO billing.invoices (esco, run_id, account_id, customer_id, period_start, period_end, period_from,
                                      period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,
                                      closing_balance, topups_count, topups_value, corrects, details)
        SELECT run.esco, run.id, t.account_id, t.customer_id, run.period_start, run.period_end, t.period_from,
               t.period_to, t.kwh, t.days, t.net, t.vat_rate, billing.round_half_up(t.net * t.vat_rate, 2),
               t.net + billing.round_half_up(t.net * t.vat_rate, 2), t.prepay_enabled,
               CASE WHEN t.prepay_enabled THEN ob.balance END, CASE WHEN t.prepay_enabled THEN cb.balance END,
               coalesce(tu.n, 0), coalesce(tu.value, 0), t.replaces,
               pg_catalog.jsonb_build_object(
                   'customer', pg_catalog.jsonb_build_object('fullname', c.fullname, 'email', c.email),
                   'account_number', a.account_number,
                   'account_type', a.type,
                   'supply_address', concat_ws(', ', p.plot, p.address, si.name),
                   'esco', pg_catalog.jsonb_build_object('code', e.code, 'name', coalesce(eb.legal_name, e.name),
                                                         'address', eb.address, 'email', eb.email, 'phone', eb.phone,
                                                         'website', eb.website, 'vat_number', eb.vat_number),
                   'meter', pg_catalog.jsonb_build_object('serial', m.serial, 'hardware', m.hardware,
                                                          'prepay', m.prepay_enabled),
                   'readings', coalesce(rd.readings, '[]'),
                   'tariffs', tf.tariffs,
                   'usage_12_months', us.months,
                   'kwh_12_months', us.total,
                   'estimated_annual_kwh', us.annual,
                   'estimated_annual_cost',
                       billing.round_half_up(us.annual * tf.unit_rate + 365 * tf.standing_charge, 2),
                   'estimated_half_hours', coalesce(rd.estimated, 0))
        FROM totals AS t
        JOIN billing.accounts AS a ON a.id = t.account_id
        JOIN billing.customers AS c ON c.id = t.customer_id
        JOIN flows.properties AS p ON p.id = a.property
        JOIN flows.sites AS si ON si.id = p.site
        JOIN flows.escos AS e ON e.id = a.esco
        LEFT JOIN billing.esco_billing AS eb ON eb.esco = a.esco
        JOIN flows.meter_registry AS m ON m.id = t.meter_id
        LEFT JOIN readings AS rd ON rd.account_id = t.account_id AND rd.customer_id = t.customer_id
        LEFT JOIN tariffs AS tf ON tf.account_id = t.account_id AND tf.customer_id = t.customer_id
        LEFT JOIN usage AS us ON us.account_id = t.account_id AND us.customer_id = t.customer_id
        LEFT JOIN topups AS tu ON tu.account_id = t.account_id AND tu.customer_id = t.customer_id
        LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                           WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_from
                           ORDER BY b."timestamp" DESC LIMIT 1) AS ob ON true
        LEFT JOIN LATERAL (SELECT b.balance FROM flows.meter_prepay_balance AS b
                           WHERE b.meter_id = t.meter_id AND b."timestamp" <= t.period_to
                           ORDER BY b."timestamp" DESC LIMIT 1) AS cb ON true
        RETURNING id, account_id, customer_id
    )
    -- The rounded net shared out to the lines by largest remainder: each line
    -- within a penny of its exact amount, and the lines add up to the net.
    INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description, register_id, element, nature,
                                       customer_tariff_id, period_from, period_to, quantity, unit, rate, amount_exact,
                                       amount, half_hours, expected_half_hours, estimated_half_hours, meter_rate)
    SELECT run.esco, m.id, l.position, l.kind,
           CASE l.kind WHEN 'energy' THEN
               CASE l.nature WHEN 'heat' THEN 'Heat' ELSE 'Electricity' END
               || CASE l.element WHEN 'SINGLE' THEN '' ELSE ' (element ' || l.element || ')' END
           ELSE 'Standing charge' END,
           l.register_id, l.element, l.nature, l.customer_tariff_id, l.period_from, l.period_to, l.quantity, l.unit,
           l.rate, l.amount_exact,
           (floor(l.amount_exact * 100)
            + CASE WHEN row_number() OVER (PARTITION BY l.account_id, l.customer_id
                                           ORDER BY l.amount_exact * 100 - floor(l.amount_exact * 100) DESC,
                                                    l.position)
                        <= s.net * 100 - s.pennies_floor THEN 1 ELSE 0 END) / 100,
           l.half_hours, l.expected_half_hours, l.estimated_half_hours, l.meter_rate
    FROM lines AS l
    JOIN sums AS s ON s.account_id = l.account_id AND s.customer_id = l.customer_id
    JOIN made AS m ON m.account_id = l.account_id AND m.customer_id = l.customer_id;

    SELECT count(*) INTO made FROM billing.invoices AS i WHERE i.run_id = p_run;
    UPDATE billing.billing_runs AS r SET statements = made, computed_at = pg_catalog.now() WHERE r.id = p_run;
    RETURN made;
END
$$;

-- ---- schema/billing/billing_run.sql, money.sql, customers.sql: a faster billing run (whole UK months from the monthly
-- rollup, the payer periods of the run's ESCO only, net_of_vat inlined) ----
-- Statements take whole UK months from the monthly rollup (one row a month
-- instead of ~31 daily ones scattered over as many pages), which does not
-- count estimated half hours: they look those up here, in the few days that
-- have any (rows change estimated rarely: when reads-derived half hours are
-- replaced by the meter's log).
CREATE INDEX register_interval_daily_estimated_idx ON flows.register_interval_daily (register_id, day)
    WHERE estimated > 0;

CREATE OR REPLACE VIEW billing.payer_periods WITH (security_invoker = true) AS
SELECT ca.esco, ca.account_id, ca.customer_id, ca.role, tstzrange(ca.start_time, ca.end_time) AS period
FROM billing.customer_accounts AS ca
WHERE ca.role = 'occupier'
UNION ALL
SELECT o.esco, o.account_id, o.customer_id, o.role, r.period
FROM billing.customer_accounts AS o
LEFT JOIN (SELECT x.esco, x.account_id, range_agg(tstzrange(x.start_time, x.end_time)) AS occupied
           FROM billing.customer_accounts AS x WHERE x.role = 'occupier' GROUP BY x.esco, x.account_id) AS oc
  ON oc.account_id = o.account_id AND oc.esco = o.esco  -- (esco: a filter on it reaches the occupancies too)
CROSS JOIN LATERAL unnest(tstzmultirange(tstzrange(o.start_time, o.end_time))
                          - coalesce(oc.occupied, '{}'::tstzmultirange)) AS r (period)
WHERE o.role = 'owner';

CREATE OR REPLACE FUNCTION billing.net_of_vat(gross numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN gross / (1 + billing.included_vat_rate());

CREATE OR REPLACE FUNCTION billing.billed_periods(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (account_id uuid, meter_id uuid, customer_id uuid, period tstzrange)
LANGUAGE sql STABLE
AS $$
    SELECT a.id, a.meter_id, p.customer_id, x.period
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.esco = p_esco
    CROSS JOIN LATERAL (SELECT p.period * billing.month_range(p_period_start)
                               * tstzrange(a.opened_at, a.closed_at) AS period) AS x
    WHERE a.esco = p_esco AND a.type IN ('supply', 'ev') AND a.status <> 'pending'
      AND (p_accounts IS NULL OR a.id = ANY (p_accounts))
      AND NOT isempty(x.period)
$$;

CREATE OR REPLACE FUNCTION billing.statement_lines(p_esco uuid, p_period_start date, p_accounts uuid[] DEFAULT NULL)
RETURNS TABLE (
    account_id uuid, customer_id uuid, kind text, register_id uuid, element text, nature text,
    customer_tariff_id uuid, period_from timestamptz, period_to timestamptz, quantity numeric, unit text,
    rate numeric, amount_exact numeric, half_hours integer, expected_half_hours integer,
    estimated_half_hours integer, meter_rate numeric
)
LANGUAGE sql STABLE
AS $$
    WITH segments AS MATERIALIZED (  -- a payer's period split where their tariff changes
        SELECT b.account_id, b.meter_id, b.customer_id, t.id AS customer_tariff_id, t.unit_rate, t.standing_charge,
               b.period * tstzrange(t.effective_from, t.effective_to) AS period
        FROM billing.billed_periods(p_esco, p_period_start, p_accounts) AS b
        JOIN billing.customer_tariffs AS t
          ON t.customer_id = b.customer_id AND tstzrange(t.effective_from, t.effective_to) && b.period
    ),
    register_segments AS MATERIALIZED (  -- ... and where a register starts or ends
        -- (each level computes its columns once: OFFSET 0 keeps the planner from
        -- pasting the UK-day arithmetic into every expression that uses them)
        SELECT g.*,
               -- the whole UK months in [first_full, end_day) (none: both end_day)
               CASE WHEN m.m_from < m.m_to THEN m.m_from ELSE g.end_day END AS months_from,
               CASE WHEN m.m_from < m.m_to THEN m.m_to ELSE g.end_day END AS months_to
        FROM (
            SELECT p.*,
                   CASE WHEN flows.uk_day_start(p.from_day) = p.from_time THEN p.from_day ELSE p.from_day + 1 END
                       AS first_full,
                   flows.uk_day(p.to_time) AS end_day
            FROM (
                SELECT x.*, lower(x.period) AS from_time, upper(x.period) AS to_time,
                       flows.uk_day(lower(x.period)) AS from_day
                FROM (
                    SELECT s.account_id, s.meter_id, s.customer_id, s.customer_tariff_id, s.unit_rate, r.register_id,
                           r.element, r.nature, s.period * tstzrange(r.start_time, r.end_time) AS period
                    FROM segments AS s
                    JOIN flows.meter_registers AS r ON r.meter_id = s.meter_id AND r.nature <> 'solar'
                    OFFSET 0
                ) AS x
                WHERE NOT isempty(x.period)
                OFFSET 0
            ) AS p
            OFFSET 0
        ) AS g
        CROSS JOIN LATERAL (
            SELECT CASE WHEN flows.uk_month(g.first_full) = g.first_full THEN g.first_full
                        ELSE (flows.uk_month(g.first_full) + interval '1 month')::date END AS m_from,
                   flows.uk_month(g.end_day) AS m_to
        ) AS m
    ),
    whole_days AS (
        SELECT x.register_id, x.from_time, sum(x.kwh) AS kwh, sum(x.half_hours) AS half_hours,
               sum(x.estimated) AS estimated
        FROM (
            SELECT g.register_id, g.from_time, m.import_kwh AS kwh, m.intervals AS half_hours, 0 AS estimated
            FROM register_segments AS g
            JOIN flows.register_interval_monthly AS m
              ON m.register_id = g.register_id AND m.month >= g.months_from AND m.month < g.months_to
            UNION ALL  -- days before the first whole month, and from the end of the last one
            SELECT g.register_id, g.from_time, d.import_kwh, d.intervals, 0
            FROM register_segments AS g
            CROSS JOIN LATERAL (VALUES (g.first_full, g.months_from), (g.months_to, g.end_day)) AS r (from_day, to_day)
            JOIN flows.register_interval_daily AS d
              ON d.register_id = g.register_id AND d.day >= r.from_day AND d.day < r.to_day
            WHERE r.from_day < r.to_day
            UNION ALL  -- estimated half hours of every whole day (register_interval_daily_estimated_idx)
            SELECT g.register_id, g.from_time, 0, 0, d.estimated
            FROM register_segments AS g
            JOIN flows.register_interval_daily AS d
              ON d.register_id = g.register_id AND d.day >= g.first_full AND d.day < g.end_day
             AND d.estimated > 0
        ) AS x
        GROUP BY x.register_id, x.from_time
    ),
    edge_half_hours AS (
        SELECT g.register_id, g.from_time, sum(h.import_kwh) AS kwh, count(*) AS half_hours,
               count(*) FILTER (WHERE h.source = 'reads') AS estimated
        FROM register_segments AS g
        CROSS JOIN LATERAL (  -- before the first whole day, and from the end of the last one
            VALUES (g.from_time, least(g.to_time, flows.uk_day_start(g.first_full))),
                   (greatest(g.from_time, flows.uk_day_start(g.end_day)), g.to_time)) AS e (from_time, to_time)
        JOIN flows.register_interval_hh AS h
          ON h.register_id = g.register_id AND h."timestamp" >= e.from_time AND h."timestamp" < e.to_time
        WHERE (g.first_full >= g.end_day AND e.from_time = g.from_time)  -- within one day: the first range only
           OR (g.first_full < g.end_day AND e.from_time < e.to_time)
        GROUP BY g.register_id, g.from_time
    ),
    meter_tariffs AS (  -- what the meter charged: its active tariff as last read before a period ended
        SELECT s.meter_id, s.period, mt.tariff
        FROM (SELECT DISTINCT meter_id, period FROM segments) AS s
        CROSS JOIN LATERAL (
            SELECT h.tariff FROM flows.meter_tariff_history AS h
            WHERE h.meter_id = s.meter_id AND h.kind = 'active' AND h."timestamp" < upper(s.period)
            ORDER BY h."timestamp" DESC LIMIT 1
        ) AS mt
    )
    SELECT g.account_id, g.customer_id, 'energy', g.register_id, g.element, g.nature, g.customer_tariff_id,
           g.from_time, g.to_time, x.kwh, 'kWh', g.unit_rate,
           billing.net_of_vat(x.kwh * g.unit_rate),
           x.half_hours::integer,
           ceil(extract(epoch FROM g.to_time - g.from_time) / 1800)::integer,
           x.estimated::integer,
           (mt.tariff ->> CASE g.element WHEN 'B' THEN 'unit_rate_element_b' ELSE 'unit_rate_element_a' END)::numeric
    FROM register_segments AS g
    LEFT JOIN whole_days AS w ON w.register_id = g.register_id AND w.from_time = g.from_time
    LEFT JOIN edge_half_hours AS e ON e.register_id = g.register_id AND e.from_time = g.from_time
    CROSS JOIN LATERAL (SELECT coalesce(w.kwh, 0) + coalesce(e.kwh, 0) AS kwh,
                               coalesce(w.half_hours, 0) + coalesce(e.half_hours, 0) AS half_hours,
                               coalesce(w.estimated, 0) + coalesce(e.estimated, 0) AS estimated) AS x
    LEFT JOIN meter_tariffs AS mt
      ON mt.meter_id = g.meter_id AND mt.period @> g.from_time
    UNION ALL
    SELECT s.account_id, s.customer_id, 'standing_charge', NULL, NULL, NULL, s.customer_tariff_id,
           lower(s.period), upper(s.period), d.days, 'day', s.standing_charge,
           billing.net_of_vat(d.days * s.standing_charge), NULL, NULL, NULL,
           (mt.tariff ->> 'standing_charge')::numeric
    FROM segments AS s
    CROSS JOIN LATERAL (SELECT billing.uk_days(lower(s.period), upper(s.period)) AS days) AS d
    LEFT JOIN meter_tariffs AS mt ON mt.meter_id = s.meter_id AND mt.period = s.period
$$;


-- ---- rpc/billing/payments.sql ----
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

-- ---- rpc/billing/topups.sql ----
-- Top-ups and gifts over HTTP: what was (or is being) put on the meters and
-- why a top-up waits; operators retry, cancel, adjust and give.

CREATE VIEW api.topups WITH (security_invoker = true) AS
SELECT id, esco, account_id, meter_id, customer_id, amount, source, payment_id, gift_id, solar_credit_id, status, token,
       acquired_at, used_at, reference, notes, command_id, rounds, transaction_count, balance_before, balance_after,
       waiting_for, waiting_since, waiting_reason, last_error, requested_by, created_at, updated_at
FROM billing.topups;
COMMENT ON VIEW api.topups IS
    'Credit put on prepay meters: source payment, gift, solar_credit or adjustment; status wait_token_fetch -> '
    'wait_token_push -> completed | failed_token_fetch | failed_token_push | cancelled; waiting_reason says why '
    'it waits (e.g. the meter is offline); command_id the meter command of its current round. A customer sees '
    'their own.';
COMMENT ON COLUMN api.topups.transaction_count IS 'The meter''s token transaction count after this credit.';

CREATE VIEW api.gifts WITH (security_invoker = true) AS
SELECT id, esco, account_id, amount, reason, scheduled_at, status, given_at, cancelled_at, cancel_reason,
       requested_by, created_at, updated_at
FROM billing.gifts;
COMMENT ON VIEW api.gifts IS
    'Credit given to an account from scheduled_at: scheduled -> given (a top-up) | cancelled (never pays).';


-- A top-up of the caller's, locked; 22023 naming the field when there is none.
CREATE FUNCTION billing.topup_for_update(p_topup uuid) RETURNS billing.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
BEGIN
    SELECT * INTO topup FROM billing.topups AS t WHERE t.id = p_topup FOR UPDATE;
    IF topup.id IS NULL THEN
        RAISE EXCEPTION 'topup_id names no top-up (%)', coalesce(p_topup::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN topup;
END
$$;

-- The account a new top-up goes to, if it can take one now, else 22023 naming the field.
CREATE FUNCTION billing.topup_account(p_account uuid) RETURNS billing.accounts
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    problem text;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_account;
    problem := billing.topup_problem(account);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'account_id cannot take a top-up: %', CASE WHEN account.id IS NULL
                        THEN pg_catalog.format('no account %s', coalesce(p_account::text, 'null')) ELSE problem END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN account;
END
$$;


CREATE FUNCTION api.retry_topup(topup_id uuid) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups := billing.topup_for_update(retry_topup.topup_id);
BEGIN
    IF topup.status IN ('failed_token_fetch', 'failed_token_push') THEN
        -- a token the meter refused is replaced; any other is sent again (the meter never takes one twice)
        PERFORM billing.start_topup_round(topup.id, topup.status = 'failed_token_fetch'
                                                    OR billing.token_failure_kind(topup.last_error) = 'refused');
    ELSIF topup.waiting_for IS NOT NULL THEN
        PERFORM billing.start_topup_round(topup.id, false);
    ELSE
        RAISE EXCEPTION 'top-up % is % and not waiting: only a failed or waiting top-up can be retried', topup.id,
            topup.status USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = topup.id;
END
$$;
COMMENT ON FUNCTION api.retry_topup(uuid) IS
    'Sends a failed or waiting top-up to its meter again now (a new round: the same token unless the meter '
    'refused it).';


CREATE FUNCTION api.cancel_topup(topup_id uuid, reason text) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups := billing.topup_for_update(cancel_topup.topup_id);
    command flows.meter_commands;
BEGIN
    IF cancel_topup.reason IS NULL OR btrim(cancel_topup.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the top-up is cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF topup.status IN ('completed', 'cancelled') THEN
        RAISE EXCEPTION 'top-up % is %: only a waiting or failed top-up can be cancelled', topup.id, topup.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO command FROM flows.meter_commands AS c WHERE c.id = topup.command_id FOR UPDATE;
    IF command.status = 'running' THEN
        RAISE EXCEPTION 'top-up % is being sent to its meter now', topup.id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'try again when this attempt has ended';
    ELSIF command.progress ? 'pushed_at' AND billing.token_failure_kind(topup.last_error) <> 'refused' THEN
        RAISE EXCEPTION 'top-up % may be on its meter already (its token was pushed at %, with no answer)', topup.id,
            command.progress ->> 'pushed_at'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'retry it (the meter says whether it took the token), then cancel it if it did not';
    END IF;
    PERFORM billing.cancel_topup(topup.id, pg_catalog.format('%s (by %s)', cancel_topup.reason, flows.requester()));
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = topup.id;
END
$$;
COMMENT ON FUNCTION api.cancel_topup(uuid, text) IS
    'Cancels a waiting or failed top-up (and its pending command). A gift, solar credit or adjustment is '
    'reversed in the ledger; a payment''s money stays the account''s credit (refund it, or bill against it).';


CREATE FUNCTION api.create_adjustment_topup(account_id uuid, amount numeric, reason text) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    made uuid;
BEGIN
    IF create_adjustment_topup.reason IS NULL OR btrim(create_adjustment_topup.reason) = '' THEN
        RAISE EXCEPTION 'reason: an adjustment needs one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_adjustment_topup.amount IS NULL OR create_adjustment_topup.amount = 0
       OR abs(create_adjustment_topup.amount) > 1000
       OR create_adjustment_topup.amount <> round(create_adjustment_topup.amount, 2) THEN
        RAISE EXCEPTION 'amount must be between -1000 and 1000 GBP, not 0, in whole pence; got %',
            coalesce(create_adjustment_topup.amount::text, 'nothing')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'negative: a deduction in the books only';
    END IF;
    account := billing.topup_account(create_adjustment_topup.account_id);
    made := billing.create_topup(account.esco, account.id, account.meter_id, create_adjustment_topup.amount,
                                 'adjustment', billing.payer_at(account.id, pg_catalog.now()),
                                 p_notes => create_adjustment_topup.reason);
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = made;
END
$$;
COMMENT ON FUNCTION api.create_adjustment_topup(uuid, numeric, text) IS
    'Credit added to an account''s prepay meter by the ESCO, with a reason (-1000 to 1000 GBP; a negative '
    'adjustment is a deduction in the books: meters take no negative tokens).';


CREATE FUNCTION api.create_gift(account_id uuid, amount numeric, reason text, scheduled_at timestamptz DEFAULT NULL)
RETURNS SETOF api.gifts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    due timestamptz := coalesce(create_gift.scheduled_at, pg_catalog.now());
    made uuid;
BEGIN
    PERFORM billing.check_amount('amount', create_gift.amount, 0.01, 1000);
    IF create_gift.reason IS NULL OR btrim(create_gift.reason) = '' THEN
        RAISE EXCEPTION 'reason: a gift needs one (e.g. sign-up bonus)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF due < pg_catalog.now() - interval '1 minute' OR due > pg_catalog.now() + interval '1 year' THEN
        RAISE EXCEPTION 'scheduled_at must be from now to a year ahead (a gift is never given in the past), got %', due
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    account := billing.topup_account(create_gift.account_id);
    INSERT INTO billing.gifts (esco, account_id, amount, reason, scheduled_at, requested_by)
    VALUES (account.esco, account.id, create_gift.amount, create_gift.reason, due, flows.requester())
    RETURNING id INTO made;
    IF due <= pg_catalog.now() THEN
        PERFORM billing.give_gift(made);
    END IF;
    RETURN QUERY SELECT * FROM api.gifts AS g WHERE g.id = made;
END
$$;
COMMENT ON FUNCTION api.create_gift(uuid, numeric, text, timestamptz) IS
    'Gives an account credit (0.01-1000 GBP) with a reason, now or at scheduled_at: then it becomes a top-up.';


CREATE FUNCTION api.cancel_gift(gift_id uuid, reason text) RETURNS SETOF api.gifts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    gift billing.gifts;
BEGIN
    IF cancel_gift.reason IS NULL OR btrim(cancel_gift.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the gift is cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO gift FROM billing.gifts AS g WHERE g.id = cancel_gift.gift_id FOR UPDATE;
    IF gift.id IS NULL THEN
        RAISE EXCEPTION 'gift_id names no gift (%)', cancel_gift.gift_id USING ERRCODE = 'invalid_parameter_value';
    ELSIF gift.status <> 'scheduled' THEN
        RAISE EXCEPTION 'gift % is %: only a scheduled gift can be cancelled', gift.id, gift.status
            USING ERRCODE = 'invalid_parameter_value', HINT = 'a given gift is a top-up: cancel the top-up instead';
    END IF;
    UPDATE billing.gifts AS g
    SET status = 'cancelled', cancelled_at = pg_catalog.now(),
        cancel_reason = pg_catalog.format('%s (by %s)', cancel_gift.reason, flows.requester())
    WHERE g.id = gift.id;
    RETURN QUERY SELECT * FROM api.gifts AS g WHERE g.id = gift.id;
END
$$;
COMMENT ON FUNCTION api.cancel_gift(uuid, text) IS 'Cancels a scheduled gift: it never pays.';

-- ---- rpc/billing/solar.sql ----
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

-- ---- rpc/billing/wallets.sql ----
-- Wallets over HTTP: a supply meter's target and minimum balance, auto top-up
-- and regular payments. The customer living there (the account's occupier)
-- changes them within the limits (api.set_wallet); the ESCO also chooses the
-- payment method.

CREATE VIEW api.wallets WITH (security_invoker = true) AS
SELECT id, esco, account_id, meter_id, target_balance, minimum_balance, auto_top_up, payment_timing, regular_amount,
       payment_day, payment_method_id, created_at, updated_at
FROM billing.wallets;
COMMENT ON VIEW api.wallets IS
    'Per supply account and meter: target_balance and minimum_balance (auto_top_up: below the minimum, one payment '
    'for the difference to the target), regular payments (payment_timing monthly | weekly, regular_amount, '
    'payment_day), payment_method_id. Change with rpc/set_wallet.';


CREATE FUNCTION api.set_wallet(account_id uuid, target_balance numeric DEFAULT NULL,
                               minimum_balance numeric DEFAULT NULL, auto_top_up boolean DEFAULT NULL,
                               payment_timing text DEFAULT NULL, regular_amount numeric DEFAULT NULL,
                               payment_day integer DEFAULT NULL, payment_method_id uuid DEFAULT NULL)
RETURNS SETOF api.wallets
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    wallet billing.wallets;
    problem text;
    customer uuid := flows.current_customer_id();
    timing text;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = set_wallet.account_id;
    -- a customer sets the wallet of the home they live in (they occupy its account now)
    IF account.id IS NULL OR (customer IS NOT NULL AND NOT EXISTS (
            SELECT FROM billing.customer_accounts AS ca
            WHERE ca.account_id = account.id AND ca.customer_id = customer AND ca.role = 'occupier'
              AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()))) THEN
        RAISE EXCEPTION 'account_id names no account of yours (%)', coalesce(set_wallet.account_id::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    problem := coalesce(billing.topup_problem(account),
                        CASE WHEN account.type <> 'supply' THEN 'a wallet is for a supply account' END);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'account_id cannot have a wallet: %', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF customer IS NOT NULL AND set_wallet.payment_method_id IS NOT NULL THEN
        RAISE EXCEPTION 'payment_method_id is chosen by the ESCO' USING ERRCODE = 'insufficient_privilege',
            HINT = 'save a new card or mandate in the portal';
    END IF;
    -- made with its defaults the first time (preferences below); customers may not write payment_method_id
    INSERT INTO billing.wallets (esco, account_id, meter_id) VALUES (account.esco, account.id, account.meter_id)
    ON CONFLICT ON CONSTRAINT wallets_esco_account_key DO NOTHING;
    SELECT * INTO wallet FROM billing.wallets AS w WHERE w.account_id = account.id FOR UPDATE;
    wallet.minimum_balance := coalesce(set_wallet.minimum_balance, wallet.minimum_balance);
    wallet.target_balance := coalesce(set_wallet.target_balance, wallet.target_balance);
    wallet.auto_top_up := coalesce(set_wallet.auto_top_up, wallet.auto_top_up);
    timing := coalesce(set_wallet.payment_timing, wallet.payment_timing, 'none');
    IF timing NOT IN ('monthly', 'weekly', 'none') THEN
        RAISE EXCEPTION 'payment_timing must be monthly, weekly or none, got %', timing
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    wallet.payment_timing := nullif(timing, 'none');
    wallet.regular_amount := CASE WHEN timing <> 'none' THEN coalesce(set_wallet.regular_amount, wallet.regular_amount) END;
    wallet.payment_day := CASE WHEN timing <> 'none' THEN coalesce(set_wallet.payment_day, wallet.payment_day) END;
    PERFORM billing.check_amount('minimum_balance', wallet.minimum_balance, 0, 100);
    PERFORM billing.check_amount('target_balance', wallet.target_balance, wallet.minimum_balance + 5, 250);
    IF timing <> 'none' THEN
        PERFORM billing.check_amount('regular_amount', wallet.regular_amount, 5, 500);
        IF wallet.payment_day IS NULL OR wallet.payment_day NOT BETWEEN 1 AND (CASE timing WHEN 'weekly' THEN 7 ELSE 28 END) THEN
            RAISE EXCEPTION 'payment_day must be % for % payments, got %',
                CASE timing WHEN 'weekly' THEN '1 (Monday) to 7 (Sunday)' ELSE '1 to 28' END, timing,
                coalesce(wallet.payment_day::text, 'nothing')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF set_wallet.payment_method_id IS NOT NULL AND NOT EXISTS (
            SELECT FROM billing.payment_methods AS m
            WHERE m.id = set_wallet.payment_method_id AND m.status = 'active'
              AND m.customer_id = billing.payer_at(account.id, pg_catalog.now())) THEN
        RAISE EXCEPTION 'payment_method_id names no active payment method of the account''s payer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE billing.wallets AS w
    SET target_balance = wallet.target_balance, minimum_balance = wallet.minimum_balance,
        auto_top_up = wallet.auto_top_up, payment_timing = wallet.payment_timing,
        regular_amount = wallet.regular_amount, payment_day = wallet.payment_day
    WHERE w.id = wallet.id;
    IF set_wallet.payment_method_id IS NOT NULL THEN
        UPDATE billing.wallets AS w SET payment_method_id = set_wallet.payment_method_id WHERE w.id = wallet.id;
    END IF;
    RETURN QUERY SELECT * FROM api.wallets AS w WHERE w.id = wallet.id;
END
$$;
COMMENT ON FUNCTION api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid) IS
    'Creates or changes the wallet of a supply account; arguments left out keep their value. Limits: '
    'minimum_balance 0-100, target_balance minimum + 5 to 250, regular_amount 5-500 GBP; payment_timing monthly '
    '(payment_day 1-28), weekly (1 Monday .. 7 Sunday) or none. The occupier may change their own (not the '
    'payment method).';

-- ---- rpc/billing/ledger.sql ----
-- The ledger over HTTP (read-only: it is written by the money events
-- themselves): the chart of accounts, journals and their entries, balances
-- per customer account and the ESCO's books.

CREATE VIEW api.ledger_accounts WITH (security_invoker = true) AS
SELECT code, name, kind, description
FROM billing.ledger_accounts;
COMMENT ON VIEW api.ledger_accounts IS
    'The chart of accounts (cash_at_bank, processor_clearing, customer_credit, credit_on_meters, revenue, vat, '
    'gifts, solar_credit, adjustments) and what each holds.';

CREATE VIEW api.journals WITH (security_invoker = true) AS
SELECT j.id, j.esco, j.kind, j.account_id, j.payment_id, j.refund_id, j.topup_id, j.invoice_id, j.reverses, j.memo,
       j.posted_at, j.posted_by,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                   'ledger_account', e.ledger_account, 'account_id', e.account_id, 'amount', e.amount)) ORDER BY e.id)
        FROM billing.journal_entries AS e WHERE e.journal_id = j.id) AS entries
FROM billing.journals AS j;
COMMENT ON VIEW api.journals IS
    'Every money event in the books (append-only), with its entries (debit positive, credit negative, summing '
    'to zero): payment_received, refund, topup_funded, topup_credited, statement_charge, reversal.';

CREATE VIEW api.journal_entries WITH (security_invoker = true) AS
SELECT e.id, e.esco, e.journal_id, e.ledger_account, e.account_id, e.amount, j.kind, j.posted_at
FROM billing.journal_entries AS e
JOIN billing.journals AS j ON j.id = e.journal_id;
COMMENT ON VIEW api.journal_entries IS 'Ledger lines: amount GBP, debit positive, credit negative.';

CREATE VIEW api.account_balances WITH (security_invoker = true) AS
SELECT a.id AS account_id, a.esco, a.account_number,
       coalesce(-sum(e.amount) FILTER (WHERE e.ledger_account = 'customer_credit'), 0) AS customer_credit,
       coalesce(-sum(e.amount) FILTER (WHERE e.ledger_account = 'credit_on_meters'), 0) AS credit_on_meters,
       coalesce(-sum(e.amount) FILTER (WHERE e.ledger_account = 'customer_credit' AND j.kind = 'payment_received'), 0)
           AS received,
       coalesce(sum(e.amount) FILTER (WHERE e.ledger_account = 'customer_credit' AND j.kind = 'refund'), 0) AS refunded,
       coalesce(-sum(e.amount) FILTER (WHERE e.ledger_account = 'customer_credit'
                                        AND j.kind IN ('topup_funded', 'reversal')), 0) AS given,
       coalesce(-sum(e.amount) FILTER (WHERE e.ledger_account = 'credit_on_meters' AND j.kind = 'topup_credited'), 0)
           AS put_on_meter,
       coalesce(sum(e.amount) FILTER (WHERE j.kind = 'statement_charge'
                                       AND e.ledger_account IN ('customer_credit', 'credit_on_meters')), 0) AS charged,
       max(j.posted_at) AS last_posted_at
FROM billing.accounts AS a
LEFT JOIN billing.journal_entries AS e ON e.account_id = a.id
LEFT JOIN billing.journals AS j ON j.id = e.journal_id
GROUP BY a.id, a.esco, a.account_number;
COMMENT ON VIEW api.account_balances IS
    'Per customer account, from the ledger: customer_credit (money held, not yet on the meter; negative: owed), '
    'credit_on_meters (on the meter, not yet charged), and what moved them: received, refunded, given (gifts, '
    'solar credit, adjustments, less reversals), put_on_meter, charged (statements).';

CREATE VIEW api.esco_books WITH (security_invoker = true) AS
SELECT e.esco, l.code AS ledger_account, l.name, l.kind,
       coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS debits,
       coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS credits,
       CASE WHEN l.kind IN ('asset', 'expense') THEN sum(e.amount) ELSE -sum(e.amount) END AS balance,
       count(*) AS entries
FROM billing.journal_entries AS e
JOIN billing.ledger_accounts AS l ON l.code = e.ledger_account
GROUP BY e.esco, l.code, l.name, l.kind;
COMMENT ON VIEW api.esco_books IS
    'The ESCO''s books per ledger account: debits, credits, and the balance in its natural sign (assets and '
    'expenses: debits - credits; liabilities and income: credits - debits). Assets + expenses = liabilities + '
    'income.';

-- ---- schema/realtime_relations.sql ----
-- Money in (customers follow their own: the gateway reads rows as each subscriber).
CALL flows.follow_realtime('payments', 'billing.payments', 'id',
                           p_notes => 'Payments: status, received_at, refunds.');
CALL flows.follow_realtime('topups', 'billing.topups', 'id',
                           p_notes => 'Top-ups: status, why one waits, when it was credited on the meter.');
CALL flows.follow_realtime('wallets', 'billing.wallets', 'id',
                           p_notes => 'Wallet preferences: target and minimum balance, auto top-up, regular payments.');

-- ---- schema/audit_registry.sql ----
-- Money in: payments and refunds (the job's leases are not audited), top-ups
-- (their status as they go), gifts, wallets, payment methods, solar credit.
-- The ledger and the processor's events are records themselves, never changed.
CALL flows.audit('billing.payment_methods');
CALL flows.audit('billing.wallets');
CALL flows.audit('billing.payments', ignored_columns => '{updated_at,lease_owner,lease_expires_at}');
CALL flows.audit('billing.refunds', ignored_columns => '{updated_at,lease_owner,lease_expires_at}');
CALL flows.audit('billing.gifts');
CALL flows.audit('billing.topups');
CALL flows.audit('billing.solar_rates');
CALL flows.audit('billing.solar_installations');
CALL flows.audit('billing.solar_allocations');
CALL flows.audit('billing.solar_credits');

-- ---- rls/privileges.sql ----
-- == Money in: payments, top-ups, gifts, solar credit, wallets, the ledger ==
-- Operators act through the api RPCs (invoker rights: they hold the table
-- privileges the RPCs use, within their ESCO by policies.sql), the workers
-- (payments job, meter commands) and the gateway (processor webhooks, as
-- flows_service) likewise. The ledger is insert-only for everyone, the owner
-- included. Customers read their payments, top-ups and wallet, and change their
-- wallet (its preference columns only).

GRANT SELECT ON
    billing.payment_methods, api.payment_methods,
    billing.wallets, api.wallets,
    billing.payments, api.payments,
    billing.refunds, api.refunds,
    billing.processor_events, api.processor_events,
    billing.gifts, api.gifts,
    billing.topups, api.topups,
    billing.solar_rates, api.solar_rates,
    billing.solar_installations, api.solar_installations,
    billing.solar_allocations, api.solar_allocations,
    billing.solar_credits, api.solar_credits,
    billing.ledger_accounts, api.ledger_accounts,
    billing.journals, api.journals,
    billing.journal_entries, api.journal_entries,
    api.account_balances, api.esco_books
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON billing.payments, api.payments, billing.topups, api.topups, billing.wallets, api.wallets
    TO flows_customer;

-- Writing money rows: operators and admins (RPCs, and the views below), the workers and the gateway.
GRANT INSERT, UPDATE ON billing.payments, billing.refunds, billing.topups, billing.gifts, billing.wallets,
                        billing.solar_credits
    TO flows_admin, flows_operator, flows_service;
GRANT INSERT, UPDATE ON billing.processor_events TO flows_admin, flows_service;
GRANT INSERT ON billing.journals, billing.journal_entries TO flows_admin, flows_operator, flows_service;
REVOKE UPDATE, DELETE, TRUNCATE ON billing.journals, billing.journal_entries FROM flows_owner;
-- The exporter's counts of money in (sql/schema/monitoring.sql).
GRANT SELECT ON monitoring.money_in, monitoring.processor_events, monitoring.billing TO flows_monitor;
-- (PostgreSQL checks a foreign key by locking the row it points at, FOR KEY SHARE, as the owner of its
-- table, which needs an UPDATE privilege: entries and reversals point at journals, so the owner keeps it
-- on journals.id alone; the append-only trigger refuses any UPDATE all the same.)
GRANT UPDATE (id) ON billing.journals TO flows_owner;
-- Payment methods and solar installations: operators write the views directly.
GRANT INSERT, UPDATE ON billing.payment_methods, billing.solar_rates, billing.solar_installations,
                        billing.solar_allocations
    TO flows_admin, flows_operator;
GRANT DELETE ON billing.solar_allocations, api.solar_allocations TO flows_admin, flows_operator;
GRANT INSERT (esco, customer_id, provider, kind, processor_customer, processor_method, label),
      UPDATE (label, status)
    ON api.payment_methods TO flows_admin, flows_operator;
GRANT INSERT (esco, effective_from, pence_per_kwp_year), UPDATE (pence_per_kwp_year)
    ON api.solar_rates TO flows_admin, flows_operator;
GRANT INSERT (esco, property, mcs_certificate, declared_net_capacity_kwp, commissioned_on, decommissioned_on),
      UPDATE (declared_net_capacity_kwp, commissioned_on, decommissioned_on)
    ON api.solar_installations TO flows_admin, flows_operator;
GRANT INSERT (esco, installation_id, property, ratio), UPDATE (ratio)
    ON api.solar_allocations TO flows_admin, flows_operator;
-- A customer's wallet: its preferences (api.set_wallet).
GRANT INSERT (esco, account_id, meter_id, target_balance, minimum_balance, auto_top_up, payment_timing,
              regular_amount, payment_day),
      UPDATE (target_balance, minimum_balance, auto_top_up, payment_timing, regular_amount, payment_day)
    ON billing.wallets TO flows_customer;

-- What money events run (RPCs, the command mirror, statement postings), whoever causes them.
GRANT EXECUTE ON FUNCTION
    flows.requester(),
    billing.payer_at(uuid, timestamptz),
    billing.default_payment_method(uuid),
    billing.check_amount(text, numeric, numeric, numeric),
    billing.payment_status_rank(text),
    billing.stripe_payment_status(text, jsonb),
    billing.payment_received(billing.payments),
    billing.apply_payment_intent(uuid, jsonb, text),
    billing.refund_succeeded(uuid),
    billing.apply_refund_object(uuid, jsonb),
    billing.give_gift(uuid),
    billing.generate_solar_credits(uuid, date),
    billing.topup_problem(billing.accounts, boolean),
    billing.token_failure_kind(text),
    billing.create_topup(uuid, uuid, uuid, numeric, text, uuid, uuid, uuid, uuid, text, text),
    billing.topup_for_payment(billing.payments),
    billing.start_topup_round(uuid, boolean),
    billing.mirror_topup_command(flows.meter_commands),
    billing.cancel_topup(uuid, text),
    billing.post_journal(uuid, text, text, jsonb, uuid, uuid, uuid, uuid, uuid, uuid),
    billing.reverse_journal(uuid, text),
    billing.post_statement_charges(uuid[]),
    billing.check_journal_balanced(uuid),
    billing.regular_payment_times(billing.wallets, timestamptz, timestamptz),
    billing.wallet_payer(billing.wallets)
TO flows_admin, flows_operator, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.payable_account(uuid),
    billing.topup_for_update(uuid),
    billing.topup_account(uuid),
    api.record_payment(uuid, numeric, text, text, timestamptz, text),
    api.schedule_payment(uuid, numeric, timestamptz, text, uuid),
    api.cancel_payment(uuid, text),
    api.refund_payment(uuid, text, numeric),
    api.retry_topup(uuid),
    api.cancel_topup(uuid, text),
    api.create_adjustment_topup(uuid, numeric, text),
    api.create_gift(uuid, numeric, text, timestamptz),
    api.cancel_gift(uuid, text),
    api.generate_solar_credits(text, date),
    api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid)
TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION
    api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid),
    billing.topup_problem(billing.accounts, boolean),
    billing.check_amount(text, numeric, numeric, numeric)
TO flows_customer;
-- The payments job (workers) and the webhook (the gateway, as flows_service).
GRANT EXECUTE ON FUNCTION
    billing.apply_intent_event(text, jsonb),
    billing.apply_refund_event(jsonb),
    billing.apply_processor_event_v1(text, jsonb),
    billing.claim_payment_work_v1(text, integer, interval, interval),
    billing.fence_payment(uuid, text),
    billing.record_payment_intent_v1(uuid, text, jsonb, boolean),
    billing.fail_payment_work_v1(uuid, text, text, boolean, interval),
    billing.claim_refund_work_v1(text, integer, interval),
    billing.fence_refund(uuid, text),
    billing.record_refund_v1(uuid, text, jsonb),
    billing.fail_refund_work_v1(uuid, text, text, boolean, interval),
    billing.run_money_pass_v1(interval, interval)
TO flows_admin, flows_service;

-- ---- rls/policies.sql ----
-- == Money in: payments, top-ups, gifts, solar credit, wallets, the ledger ==
-- Tenant = ESCO as above. A customer sees the payments they made and the
-- top-ups made for them, and the wallet of the home they occupy now (which
-- they may change: api.set_wallet); nothing else of the money side.

ALTER TABLE billing.payment_methods ENABLE ROW LEVEL SECURITY;
CREATE POLICY payment_methods_all ON billing.payment_methods TO flows_admin, flows_service
    USING (true);
CREATE POLICY payment_methods_own_esco ON billing.payment_methods TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.wallets ENABLE ROW LEVEL SECURITY;
CREATE POLICY wallets_all ON billing.wallets TO flows_admin, flows_service
    USING (true);
CREATE POLICY wallets_own_esco ON billing.wallets TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY wallets_occupier ON billing.wallets TO flows_customer
    USING (esco = (SELECT flows.current_esco_id())
           AND account_id IN (SELECT ca.account_id FROM billing.customer_accounts AS ca
                              WHERE ca.role = 'occupier' AND ca.start_time <= now()
                                AND (ca.end_time IS NULL OR ca.end_time > now())));

ALTER TABLE billing.payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY payments_all ON billing.payments TO flows_admin, flows_service
    USING (true);
CREATE POLICY payments_own_esco ON billing.payments TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY payments_payer ON billing.payments FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.refunds ENABLE ROW LEVEL SECURITY;
CREATE POLICY refunds_all ON billing.refunds TO flows_admin, flows_service
    USING (true);
CREATE POLICY refunds_own_esco ON billing.refunds TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- Processor events: the webhook (flows_service) writes them; operators read their ESCO's once matched.
ALTER TABLE billing.processor_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY processor_events_all ON billing.processor_events TO flows_admin, flows_service
    USING (true);
CREATE POLICY processor_events_own_esco ON billing.processor_events FOR SELECT TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.gifts ENABLE ROW LEVEL SECURITY;
CREATE POLICY gifts_all ON billing.gifts TO flows_admin, flows_service
    USING (true);
CREATE POLICY gifts_own_esco ON billing.gifts TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.topups ENABLE ROW LEVEL SECURITY;
CREATE POLICY topups_all ON billing.topups TO flows_admin, flows_service
    USING (true);
CREATE POLICY topups_own_esco ON billing.topups TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY topups_customer ON billing.topups FOR SELECT TO flows_customer
    USING (customer_id = (SELECT flows.current_customer_id()) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_rates ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_rates_all ON billing.solar_rates TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_rates_own_esco ON billing.solar_rates TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_installations ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_installations_all ON billing.solar_installations TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_installations_own_esco ON billing.solar_installations TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_allocations ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_allocations_all ON billing.solar_allocations TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_allocations_own_esco ON billing.solar_allocations TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.solar_credits ENABLE ROW LEVEL SECURITY;
CREATE POLICY solar_credits_all ON billing.solar_credits TO flows_admin, flows_service
    USING (true);
CREATE POLICY solar_credits_own_esco ON billing.solar_credits TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

-- The chart of accounts: reference data, read by all but customers.
ALTER TABLE billing.ledger_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY ledger_accounts_read ON billing.ledger_accounts FOR SELECT
    TO flows_admin, flows_operator, flows_analyst, flows_service
    USING (true);

ALTER TABLE billing.journals ENABLE ROW LEVEL SECURITY;
CREATE POLICY journals_all ON billing.journals TO flows_admin, flows_service
    USING (true);
CREATE POLICY journals_own_esco ON billing.journals TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE billing.journal_entries ENABLE ROW LEVEL SECURITY;
CREATE POLICY journal_entries_all ON billing.journal_entries TO flows_admin, flows_service
    USING (true);
CREATE POLICY journal_entries_own_esco ON billing.journal_entries TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

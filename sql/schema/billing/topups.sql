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

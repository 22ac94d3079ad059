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

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

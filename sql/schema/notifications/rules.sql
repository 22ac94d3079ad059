-- The rules: each is one function over the tables where its events happen,
-- returning flows.notification_event rows, and one row in
-- flows.notification_rules (at the end of this file). A rule that must
-- remember something between runs (a crossing, an outage) keeps it in a
-- table of its own here. Adding a rule: docs/notifications.md.

-- Who pays for a meter's supply at an instant: the occupier of its open
-- supply account then, else its owner (billing.payer_periods at one instant),
-- and the account's number. Plain SQL, no SET clause: inlined where it is used.
CREATE FUNCTION flows.meter_payer(p_meter_id uuid, p_at timestamptz)
RETURNS TABLE (customer_id uuid, account_number text)
LANGUAGE sql STABLE
AS $$
    SELECT ca.customer_id, a.account_number
    FROM billing.accounts AS a
    JOIN billing.customer_accounts AS ca ON ca.account_id = a.id AND ca.esco = a.esco
    WHERE a.meter_id = p_meter_id AND a.type = 'supply' AND a.status = 'open'
      AND ca.start_time <= p_at AND (ca.end_time IS NULL OR ca.end_time > p_at)
    ORDER BY ca.role = 'occupier' DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION flows.meter_payer(uuid, timestamptz) IS
    'The customer paying for a meter''s supply at an instant (occupier, else owner) and the account number.';


-- == low_balance: a prepay meter's balance fell below the ESCO's threshold ==
-- Once per crossing: each meter's last verdict (below or not) and how far
-- its recorded balances have been read. A crossing is a balance under the
-- threshold whose previous balance (or the last verdict) was not; a balance
-- at or over the threshold re-arms it. Balances come from
-- flows.meter_prepay_balance, as the worker records them; one recorded late,
-- older than what was already read, is not looked at.
CREATE TABLE flows.notification_balance_watch (
    meter_id         uuid        NOT NULL,
    esco             uuid        NOT NULL,
    below            boolean     NOT NULL,
    observed_through timestamptz NOT NULL,
    PRIMARY KEY (meter_id, esco),
    CONSTRAINT notification_balance_watch_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.notification_balance_watch IS
    'low_balance rule: per prepay meter, whether its last recorded balance was under the threshold, and the time '
    'of the last balance read.';

CREATE FUNCTION flows.low_balance_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH watched AS (  -- prepay meters with balances recorded since last read
        SELECT s.id AS meter_id, s.esco, e.low_balance_threshold AS threshold, w.below AS was_below,
               coalesce(w.observed_through, p_from) AS after
        FROM flows.meter_shadows AS s
        JOIN flows.meter_registry AS m ON m.id = s.id
        JOIN flows.escos AS e ON e.id = s.esco
        LEFT JOIN flows.notification_balance_watch AS w ON w.meter_id = s.id AND w.esco = s.esco
        WHERE m.prepay_enabled AND s.balance_updated_at > coalesce(w.observed_through, p_from)
    ),
    observed AS (
        SELECT x.meter_id, x.esco, x.threshold, b."timestamp" AS observed_at, b.balance, b.emergency_credit,
               b.balance < x.threshold AS below,
               coalesce(lag(b.balance < x.threshold) OVER (PARTITION BY x.meter_id ORDER BY b."timestamp"),
                        x.was_below, false) AS below_before,
               row_number() OVER (PARTITION BY x.meter_id ORDER BY b."timestamp" DESC) AS newest
        FROM watched AS x
        JOIN flows.meter_prepay_balance AS b
          ON b.meter_id = x.meter_id AND b."timestamp" > x.after AND b."timestamp" <= p_now
    ),
    noted AS (
        INSERT INTO flows.notification_balance_watch AS w (meter_id, esco, below, observed_through)
        SELECT o.meter_id, o.esco, o.below, o.observed_at FROM observed AS o WHERE o.newest = 1
        ON CONFLICT (meter_id, esco) DO UPDATE SET below = excluded.below, observed_through = excluded.observed_through
    )
    SELECT o.esco,
           o.meter_id::text || '/' || to_char(o.observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           p.customer_id,
           pg_catalog.jsonb_build_object(
               'meter_id', o.meter_id, 'serial', m.serial, 'meter_name', m.name, 'account_number', p.account_number,
               'balance', billing.round_half_up(o.balance, 2)::text, 'threshold', o.threshold::text,
               'emergency_credit', billing.round_half_up(o.emergency_credit, 2)::text,
               'observed_at', o.observed_at,
               'observed_at_uk', to_char(o.observed_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI')),
           NULL::uuid
    FROM observed AS o
    JOIN flows.meter_registry AS m ON m.id = o.meter_id
    CROSS JOIN LATERAL flows.meter_payer(o.meter_id, p_now) AS p
    WHERE o.below AND NOT o.below_before;
END
$$;
COMMENT ON FUNCTION flows.low_balance_events(timestamptz, timestamptz) IS
    'low_balance rule: each crossing under the ESCO''s low_balance_threshold recorded since the last run, for '
    'whoever pays for the meter now; remembers each meter''s verdict (notification_balance_watch).';


-- == statement_ready: a statement (or credit note) was issued and rendered ==
-- Its PDF (billing.invoice_documents) is attached to the email.
CREATE INDEX invoice_documents_rendered_idx ON billing.invoice_documents (rendered_at);

CREATE FUNCTION flows.statement_ready_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT i.esco, i.id::text, i.customer_id,
           pg_catalog.jsonb_build_object(
               'kind', i.kind, 'number', i.number, 'reference', e.code || '-' || lpad(i.number::text, 6, '0'),
               'account_number', a.account_number, 'period', to_char(i.period_start, 'FMMonth YYYY'),
               'issued_on', to_char(i.issued_at AT TIME ZONE 'Europe/London', 'FMDD FMMonth YYYY'),
               'total', i.total::text, 'prepay', i.prepay,
               'closing_balance', billing.round_half_up(i.closing_balance, 2)::text),
           i.id
    FROM billing.invoice_documents AS d
    JOIN billing.invoices AS i ON i.id = d.invoice_id AND i.esco = d.esco
    JOIN billing.accounts AS a ON a.id = i.account_id
    JOIN flows.escos AS e ON e.id = i.esco
    WHERE d.rendered_at >= p_from AND d.rendered_at <= p_now
      AND (i.status = 'final' OR i.kind = 'credit_note')
      AND NOT EXISTS (SELECT FROM flows.notification_outbox AS o
                      WHERE o.invoice_id = i.id AND o.rule = 'statement_ready')
$$;
COMMENT ON FUNCTION flows.statement_ready_events(timestamptz, timestamptz) IS
    'statement_ready rule: statements and credit notes whose PDF was stored in the window, for their payer, with '
    'the PDF attached.';


-- == meter_offline: meters not reached for the ESCO's offline_hours ==========
-- One message per ESCO and run, listing the meters newly offline; a meter is
-- reported once per outage (its last contact, remembered here), again only
-- after it has been reached and lost again.
CREATE TABLE flows.notification_offline_meters (
    meter_id        uuid        NOT NULL,
    esco            uuid        NOT NULL,
    last_healthy_at timestamptz,
    notified_at     timestamptz NOT NULL,
    PRIMARY KEY (meter_id, esco),
    CONSTRAINT notification_offline_meters_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.notification_offline_meters IS
    'meter_offline rule: meters reported offline, with the last contact they were reported for (null: never).';

CREATE FUNCTION flows.meter_offline_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY
    WITH offline AS (  -- active meters in service, not reached for offline_hours (never: since registered)
        SELECT m.id, m.esco, m.serial, m.name, s.last_healthy_at, s.health_details, st.offline_hours
        FROM flows.meter_registry AS m
        JOIN flows.meter_shadows AS s ON s.id = m.id
        JOIN flows.notification_settings AS st ON st.esco = m.esco
        WHERE m.mode = 'active' AND coalesce(m.installation_status, 'installed') NOT IN ('planned', 'decommissioned')
          AND coalesce(s.last_healthy_at, m.created_at) < p_now - pg_catalog.make_interval(hours => st.offline_hours)
    ),
    reached AS (  -- reached again: forget them
        DELETE FROM flows.notification_offline_meters AS n
        WHERE NOT EXISTS (SELECT FROM offline AS f WHERE f.id = n.meter_id)
    ),
    fresh AS (  -- not yet reported for this outage
        SELECT f.* FROM offline AS f
        LEFT JOIN flows.notification_offline_meters AS n ON n.meter_id = f.id AND n.esco = f.esco
        WHERE n.meter_id IS NULL OR n.last_healthy_at IS DISTINCT FROM f.last_healthy_at
    ),
    noted AS (
        INSERT INTO flows.notification_offline_meters AS n (meter_id, esco, last_healthy_at, notified_at)
        SELECT f.id, f.esco, f.last_healthy_at, p_now FROM fresh AS f
        ON CONFLICT (meter_id, esco) DO UPDATE
            SET last_healthy_at = excluded.last_healthy_at, notified_at = excluded.notified_at
    )
    SELECT f.esco,
           md5(string_agg(f.id::text || '@' || coalesce(extract(epoch FROM f.last_healthy_at)::text, 'never'), ','
                          ORDER BY f.id)),
           NULL::uuid,
           pg_catalog.jsonb_build_object(
               'offline_hours', min(f.offline_hours), 'count', count(*),
               'meters', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'serial', f.serial, 'name', f.name, 'details', f.health_details,
                   'last_online', coalesce(to_char(f.last_healthy_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
                                           'never')) ORDER BY f.serial)),
           NULL::uuid
    FROM fresh AS f
    GROUP BY f.esco;
END
$$;
COMMENT ON FUNCTION flows.meter_offline_events(timestamptz, timestamptz) IS
    'meter_offline rule: per ESCO, the active meters newly not reached for its offline_hours, once per outage '
    '(notification_offline_meters).';


-- == tariff_rollout_failed: a rollout ended with meters that did not take it ==
-- Once all its commands have ended (none pending or running), if any failed.
CREATE FUNCTION flows.tariff_rollout_failed_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT c.esco, c.batch_id::text, NULL::uuid,
           pg_catalog.jsonb_build_object(
               'rollout_id', c.batch_id, 'meters', count(*),
               'confirmed', count(*) FILTER (WHERE c.status = 'done'),
               'failed', count(*) FILTER (WHERE c.status = 'failed'),
               'failures', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'serial', m.serial, 'name', m.name, 'error', c.last_error) ORDER BY m.serial)
                   FILTER (WHERE c.status = 'failed')),
           NULL::uuid
    FROM flows.meter_commands AS c
    JOIN flows.meter_registry AS m ON m.id = c.meter_id
    WHERE c.kind = 'set_future_tariff'
      AND c.batch_id IN (SELECT f.batch_id FROM flows.meter_commands AS f
                         WHERE f.finished_at >= p_from AND f.finished_at <= p_now
                           AND f.kind = 'set_future_tariff' AND f.batch_id IS NOT NULL)
    GROUP BY c.esco, c.batch_id
    HAVING count(*) FILTER (WHERE c.status IN ('pending', 'running')) = 0
       AND count(*) FILTER (WHERE c.status = 'failed') > 0
$$;
COMMENT ON FUNCTION flows.tariff_rollout_failed_events(timestamptz, timestamptz) IS
    'tariff_rollout_failed rule: rollouts (batches of set_future_tariff) that ended in the window with failures.';


-- == payment_due: a card or Direct Debit payment is taken tomorrow ==========
-- Payments to the processor (a wallet's regular payment, or one an operator
-- scheduled with api.schedule_payment) not yet submitted, due on the UK day
-- after the run's. That becomes true as the UK day before begins (payments
-- made ahead: wallets' up to 7 days), or when a payment for tomorrow is
-- scheduled during it: the event's time, in the window. Not for a payment
-- cancelled or already gone to the processor, nor one that will not be taken:
-- its account closed, its payment method revoked, a wallet's payer moved out.
CREATE FUNCTION flows.payment_due_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT p.esco, p.id::text, p.customer_id,
           pg_catalog.jsonb_build_object(
               'payment_id', p.id, 'amount', billing.round_half_up(p.amount, 2)::text,
               'due_on', to_char(p.scheduled_at AT TIME ZONE 'Europe/London', 'FMDay FMDD FMMonth YYYY'),
               'method', m.kind, 'method_label', m.label, 'timing', w.payment_timing,
               'account_number', a.account_number, 'serial', r.serial),
           NULL::uuid
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.wallets AS w ON w.id = p.wallet_id
    LEFT JOIN flows.meter_registry AS r ON r.id = a.meter_id
    WHERE p.provider = 'stripe' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND p.scheduled_at >= flows.uk_day_start(flows.uk_day(p_now) + 1)
      AND p.scheduled_at < flows.uk_day_start(flows.uk_day(p_now) + 2)
      AND greatest(p.created_at, flows.uk_day_start(flows.uk_day(p_now))) >= p_from
      AND greatest(p.created_at, flows.uk_day_start(flows.uk_day(p_now))) <= p_now
      AND a.status = 'open' AND m.status = 'active'
      AND (p.wallet_id IS NULL OR p.customer_id = billing.payer_at(a.id, p_now))
$$;
COMMENT ON FUNCTION flows.payment_due_events(timestamptz, timestamptz) IS
    'payment_due rule: card and Direct Debit payments not yet submitted that fall due on the next UK day, once '
    'that became so in the window (the day before began, or the payment was scheduled), for their payer.';


-- == payment_failed: a card or Direct Debit payment failed =================
-- The processor declined it (a card declined, a Direct Debit returned), or it
-- could not be made (no active payment method). Once per payment (its key);
-- one that fails, is retried at the processor and succeeds is told by
-- topup_applied next.
CREATE INDEX payments_failed_idx ON billing.payments (updated_at) WHERE status = 'failed';

CREATE FUNCTION flows.payment_failed_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT p.esco, p.id::text, coalesce(p.customer_id, billing.payer_at(p.account_id, p.updated_at)),
           pg_catalog.jsonb_build_object(
               'payment_id', p.id, 'amount', billing.round_half_up(p.amount, 2)::text,
               'method', coalesce(m.kind, 'online'), 'method_label', m.label, 'reason', p.failure_reason,
               'origin', p.origin, 'timing', w.payment_timing,
               'failed_at_uk', to_char(p.updated_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
               'account_number', a.account_number, 'serial', r.serial),
           NULL::uuid
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    LEFT JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.wallets AS w ON w.id = p.wallet_id
    LEFT JOIN flows.meter_registry AS r ON r.id = a.meter_id
    WHERE p.status = 'failed' AND p.provider = 'stripe' AND p.updated_at >= p_from AND p.updated_at <= p_now
$$;
COMMENT ON FUNCTION flows.payment_failed_events(timestamptz, timestamptz) IS
    'payment_failed rule: card and Direct Debit payments that failed in the window, for their payer, with the '
    'processor''s reason.';


-- == topup_applied: a top-up was credited on the meter ======================
-- Whatever funded it (a payment, a gift, solar credit, an adjustment), once
-- the meter took it (used_at): the amount, the meter, its balance just after
-- (when the worker read it) and the source. Told to whoever paid for the
-- account then (its occupier, else its owner). A deduction (a negative
-- adjustment) is in the books only, never on the meter: not told.
CREATE INDEX topups_credited_idx ON billing.topups (used_at) WHERE status = 'completed';

CREATE FUNCTION flows.topup_applied_events(p_from timestamptz, p_now timestamptz)
RETURNS SETOF flows.notification_event
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT t.esco, t.id::text, coalesce(billing.payer_at(t.account_id, t.used_at), t.customer_id),
           pg_catalog.jsonb_build_object(
               'topup_id', t.id, 'amount', billing.round_half_up(t.amount, 2)::text, 'source', t.source,
               'paid_by', CASE p.provider WHEN 'stripe' THEN coalesce(m.kind, 'online') ELSE p.provider END,
               'reason', coalesce(g.reason, to_char(s.month, 'FMMonth YYYY')),
               'balance_after', billing.round_half_up(t.balance_after, 2)::text,
               'credited_at_uk', to_char(t.used_at AT TIME ZONE 'Europe/London', 'FMDD Mon YYYY HH24:MI'),
               'serial', r.serial, 'meter_name', r.name, 'account_number', a.account_number),
           NULL::uuid
    FROM billing.topups AS t
    JOIN billing.accounts AS a ON a.id = t.account_id
    JOIN flows.meter_registry AS r ON r.id = t.meter_id
    LEFT JOIN billing.payments AS p ON p.id = t.payment_id
    LEFT JOIN billing.payment_methods AS m ON m.id = p.payment_method_id
    LEFT JOIN billing.gifts AS g ON g.id = t.gift_id
    LEFT JOIN billing.solar_credits AS s ON s.id = t.solar_credit_id
    WHERE t.status = 'completed' AND t.used_at >= p_from AND t.used_at <= p_now
$$;
COMMENT ON FUNCTION flows.topup_applied_events(timestamptz, timestamptz) IS
    'topup_applied rule: top-ups credited on their meter in the window (payment, gift, solar credit, adjustment), '
    'for whoever paid for the account then, with the balance after when known.';


-- == The registry ============================================================
INSERT INTO flows.notification_rules (rule, audience, essential, description, events) VALUES
    ('low_balance', 'customer', false,
     'A prepay meter''s balance fell below the ESCO''s low_balance_threshold: once per crossing, again after it '
     'recovers and falls again.', 'flows.low_balance_events(timestamptz, timestamptz)'),
    ('statement_ready', 'customer', true,
     'A statement or credit note was issued; its PDF attached.', 'flows.statement_ready_events(timestamptz, timestamptz)'),
    ('payment_due', 'customer', false,
     'A card or Direct Debit payment is taken tomorrow (UK day): amount, method, date; once per payment.',
     'flows.payment_due_events(timestamptz, timestamptz)'),
    ('payment_failed', 'customer', true,
     'A card or Direct Debit payment failed: amount and the processor''s reason; once per payment.',
     'flows.payment_failed_events(timestamptz, timestamptz)'),
    ('topup_applied', 'customer', false,
     'A top-up (payment, gift, solar credit, adjustment) was credited on the meter: amount, new balance; once per '
     'top-up.', 'flows.topup_applied_events(timestamptz, timestamptz)'),
    ('meter_offline', 'operators', true,
     'Meters not reached for the ESCO''s offline_hours: one message listing the meters newly offline.',
     'flows.meter_offline_events(timestamptz, timestamptz)'),
    ('tariff_rollout_failed', 'operators', true,
     'A tariff rollout ended with meters that did not take the tariff.',
     'flows.tariff_rollout_failed_events(timestamptz, timestamptz)');

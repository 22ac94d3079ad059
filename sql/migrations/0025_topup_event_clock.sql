-- 0025_topup_event_clock: a completed top-up the meter logged no credit event for is an exception
-- (topup_without_credit) only once the meter's event log was read past it; an event dated after now is a
-- meter clock running ahead (or a planted test event), not a sign the log was read that far
-- (docs/reconciliation.md).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/billing/reconciliation.sql ----
CREATE OR REPLACE FUNCTION billing.reconciliation_findings(p_esco uuid, p_from date, p_to date)
RETURNS TABLE (esco uuid, day date, kind text, exception_key text, meter_id uuid, account_id uuid, amount numeric,
               reason text, evidence jsonb, status text, note text, decided_by text, decided_at timestamptz,
               meters_ledgered integer, meter_days_explained integer, meter_days_incomplete integer)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
WITH settings AS (
    SELECT coalesce((SELECT s.topup_grace FROM billing.reconciliation_settings AS s WHERE s.esco = p_esco),
                    interval '2 hours') AS grace
), bounds AS (
    SELECT flows.uk_day_start(p_from) AS t_from, flows.uk_day_start(p_to + 1) AS t_to
), ledger AS MATERIALIZED (  -- computed once for both kinds of findings and the tallies
    SELECT * FROM billing.shadow_ledger(p_esco, p_from, p_to)
), found AS (
    -- a succeeded payment whose top-up failed or was cancelled, or is not completed after the grace period
    -- counted from when Flows learned of the payment (a bank transfer imported days after its booking date
    -- has its grace from then)
    SELECT (p.received_at AT TIME ZONE 'Europe/London')::date AS day, 'payment_without_topup' AS kind,
           p.id::text AS subject, a.meter_id, p.account_id, p.amount,
           CASE WHEN t.id IS NULL THEN 'no top-up was created for the payment'
                ELSE format('its top-up is %s%s', t.status,
                            coalesce(': ' || coalesce(t.last_error, t.waiting_reason), ' (' || t.notes || ')', ''))
           END AS reason,
           jsonb_build_object('payment', jsonb_build_object('id', p.id, 'amount', p.amount, 'provider', p.provider,
                                                            'received_at', p.received_at, 'reference', p.provider_reference),
                              'topup', CASE WHEN t.id IS NOT NULL THEN jsonb_build_object(
                                  'id', t.id, 'status', t.status, 'rounds', t.rounds, 'last_error', t.last_error,
                                  'waiting_reason', t.waiting_reason, 'notes', t.notes) END,
                              'grace', settings.grace) AS evidence
    FROM billing.payments AS p
    JOIN billing.accounts AS a ON a.id = p.account_id
    LEFT JOIN billing.topups AS t ON t.payment_id = p.id
    CROSS JOIN settings CROSS JOIN bounds
    WHERE p.esco = p_esco AND p.status = 'succeeded' AND p.received_at >= bounds.t_from AND p.received_at < bounds.t_to
      AND (t.status IN ('cancelled', 'failed_token_fetch', 'failed_token_push')
           OR greatest(p.received_at, p.created_at) + settings.grace < now())
      AND a.type = 'supply' AND billing.topup_problem(a, true) IS NULL
      AND (t.id IS NULL OR t.status <> 'completed')
    UNION ALL
    -- a completed top-up the meter shows no credit for: no credit event near it (once the meter's log was read
    -- past it), no transaction count, or a balance that did not rise
    SELECT (t.used_at AT TIME ZONE 'Europe/London')::date, 'topup_without_credit', t.id::text, t.meter_id,
           t.account_id, t.amount,
           concat_ws('; ',
               CASE WHEN event.at IS NULL AND log.read_past THEN 'the meter logged no credit (event 48) for it' END,
               CASE WHEN t.transaction_count IS NULL THEN 'no token transaction count was read after it' END,
               CASE WHEN t.balance_after <= t.balance_before THEN
                   format('the balance did not rise (%s -> %s)', t.balance_before, t.balance_after) END),
           jsonb_build_object('topup', jsonb_build_object('id', t.id, 'amount', t.amount, 'used_at', t.used_at,
                                                          'transaction_count', t.transaction_count,
                                                          'balance_before', t.balance_before,
                                                          'balance_after', t.balance_after, 'token', t.token),
                              'credit_event', event.at, 'event_log_read_past', log.read_past)
    FROM billing.topups AS t
    CROSS JOIN bounds
    LEFT JOIN LATERAL (
        SELECT max(e."timestamp") AS at FROM flows.meter_event_log AS e
        WHERE e.meter_id = t.meter_id AND e.event_type = 48
          AND e."timestamp" BETWEEN t.used_at - interval '15 minutes' AND t.used_at + interval '15 minutes'
    ) AS event ON true
    CROSS JOIN LATERAL (  -- an event dated after now is a meter clock running ahead: no sign the log was read past
        SELECT EXISTS (SELECT FROM flows.meter_event_log AS e
                       WHERE e.meter_id = t.meter_id AND e."timestamp" > t.used_at + interval '15 minutes'
                         AND e."timestamp" <= pg_catalog.now()) AS read_past
    ) AS log
    WHERE t.esco = p_esco AND t.status = 'completed' AND t.amount > 0
      AND t.used_at >= bounds.t_from AND t.used_at < bounds.t_to
      AND ((event.at IS NULL AND log.read_past) OR t.transaction_count IS NULL OR t.balance_after <= t.balance_before)
    UNION ALL
    -- from the shadow ledger: tokens no top-up explains, emergency credit taken
    SELECT l.day, CASE WHEN i.credit_events > 0 THEN 'credit_without_topup' ELSE 'emergency_credit_taken' END,
           format('%s:%s', l.meter_id, extract(epoch FROM i.ended_at)::bigint), l.meter_id, a.id,
           CASE WHEN i.credit_events > 0 THEN i.token_credit ELSE i.emergency_credit END,
           CASE WHEN i.credit_events > 0
                THEN format('the meter logged %s credit token(s) (event 48) no top-up explains: a token typed on the '
                            'keypad?', i.credit_events)
                ELSE format('the balance rose by the emergency credit (%s) below the threshold (%s)',
                            i.emergency_credit, i.opening_balance) END,
           step - 'token_credit' - 'emergency_credit'
    FROM ledger AS l
    CROSS JOIN LATERAL jsonb_array_elements(l.steps) AS step
    CROSS JOIN LATERAL jsonb_to_record(step) AS i (ended_at timestamptz, opening_balance numeric, credit_events integer,
                                                   token_credit numeric, emergency_credit numeric)
    LEFT JOIN billing.accounts AS a ON a.meter_id = l.meter_id AND a.type = 'supply' AND a.status <> 'closed'
    UNION ALL
    -- from the shadow ledger: a day whose balance moved more than the charging model explains
    SELECT l.day, CASE l.finding WHEN 'unexplained_deduction' THEN 'unexplained_deduction' ELSE 'credit_without_topup' END,
           format('%s:%s', l.meter_id, l.day), l.meter_id, a.id, abs(l.residual),
           CASE l.finding WHEN 'unexplained_deduction'
                THEN format('the balance fell %s more than consumption, standing charge and debt recovery explain',
                            -l.residual)
                ELSE format('the balance rose %s more than top-ups explain, with no credit event', l.residual) END,
           jsonb_build_object('opening_balance', l.opening_balance, 'closing_balance', l.closing_balance,
                              'observations', l.observations, 'energy_cost', l.energy_cost,
                              'daily_charges', l.daily_charges, 'topup_credits', l.topup_credits,
                              'emergency_credit', l.emergency_credit, 'repaid', l.repaid,
                              'expected_change', l.expected_change, 'observed_change', l.observed_change,
                              'residual', l.residual)
    FROM ledger AS l
    LEFT JOIN billing.accounts AS a ON a.meter_id = l.meter_id AND a.type = 'supply' AND a.status <> 'closed'
    WHERE l.finding IS NOT NULL
)
SELECT p_esco, f.day, f.kind, f.kind || ':' || f.subject, f.meter_id, f.account_id, f.amount, f.reason, f.evidence,
       coalesce(d.status, 'open'), d.note, d.decided_by, d.decided_at, NULL::integer, NULL::integer, NULL::integer
FROM found AS f
LEFT JOIN billing.reconciliation_decisions AS d ON d.esco = p_esco AND d.exception_key = f.kind || ':' || f.subject
UNION ALL
SELECT p_esco, l.day, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(*)::integer,
       (count(*) FILTER (WHERE l.complete AND l.finding IS NULL))::integer,
       (count(*) FILTER (WHERE NOT l.complete))::integer
FROM ledger AS l
GROUP BY l.day
$$;

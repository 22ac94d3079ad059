-- What Prometheus scrapes about the business (deploy/prometheus/
-- postgres-exporter-queries.yaml reads these views as flows_monitor). Counts
-- per ESCO code and command kind only, never a customer's data. The views run
-- with their owner's rights (not security_invoker): the exporter sees every
-- ESCO, and nothing else but these views.

-- The command queue per kind: how deep, and how long the oldest has waited.
CREATE VIEW monitoring.command_queue AS
SELECT k.kind,
       count(c.id) FILTER (WHERE c.status = 'pending') AS pending,
       count(c.id) FILTER (WHERE c.status = 'pending' AND c.run_at <= now()) AS due,
       count(c.id) FILTER (WHERE c.status = 'running') AS running,
       coalesce(extract(epoch FROM now() - min(c.run_at) FILTER (WHERE c.status = 'pending' AND c.run_at <= now())),
                0) AS oldest_due_seconds,
       coalesce(extract(epoch FROM now() - min(c.created_at) FILTER (WHERE c.status = 'pending')), 0)
           AS oldest_pending_seconds
FROM (VALUES ('sync'), ('send_token'), ('set_future_tariff'), ('read_profile_log'), ('set_clock')) AS k (kind)
LEFT JOIN flows.meter_commands AS c ON c.kind = k.kind AND c.status IN ('pending', 'running')
GROUP BY k.kind;

-- The fleet per ESCO: active meters, unhealthy, offline (no contact for 3
-- hours), never contacted, low on credit, and the credit they hold.
CREATE VIEW monitoring.fleet AS
SELECT e.code AS esco,
       count(m.id) AS meters,
       count(m.id) FILTER (WHERE s.health = 'unhealthy') AS unhealthy,
       count(m.id) FILTER (WHERE s.last_healthy_at < now() - interval '3 hours') AS offline,
       count(m.id) FILTER (WHERE s.last_healthy_at IS NULL) AS never_contacted,
       count(m.id) FILTER (WHERE m.prepay_enabled AND s.balance < e.low_balance_threshold) AS low_balance,
       coalesce(sum(s.balance) FILTER (WHERE m.prepay_enabled), 0) AS balance_gbp
FROM flows.escos AS e
LEFT JOIN flows.meter_registry AS m ON m.esco = e.id AND m.mode = 'active'
LEFT JOIN flows.meter_shadows AS s ON s.id = m.id
GROUP BY e.code;

-- Commands that ended in the last hour per ESCO and kind: done and failed
-- (the sync success rate is done / (done + failed)), and top-up money. The
-- index keeps each scrape to the last hour's rows as the table grows.
CREATE INDEX meter_commands_finished_idx ON flows.meter_commands (finished_at) WHERE finished_at IS NOT NULL;
CREATE VIEW monitoring.command_outcomes AS
SELECT e.code AS esco, k.kind,
       count(c.id) FILTER (WHERE c.status = 'done') AS done_last_hour,
       count(c.id) FILTER (WHERE c.status = 'failed') AS failed_last_hour,
       coalesce(sum((c.parameters ->> 'amount')::numeric) FILTER (WHERE c.status = 'done'), 0)
           AS credited_gbp_last_hour
FROM flows.escos AS e
CROSS JOIN (VALUES ('sync'), ('send_token'), ('set_future_tariff'), ('read_profile_log'), ('set_clock')) AS k (kind)
LEFT JOIN flows.meter_commands AS c
       ON c.esco = e.id AND c.kind = k.kind AND c.finished_at > now() - interval '1 hour'
GROUP BY e.code, k.kind;

-- Tariff rollouts still running or finished in the last day: how far each got.
CREATE VIEW monitoring.tariff_rollouts AS
SELECT e.code AS esco, c.batch_id::text AS rollout_id,
       count(*) AS meters,
       count(*) FILTER (WHERE c.status = 'done') AS confirmed,
       count(*) FILTER (WHERE c.status = 'failed') AS failed,
       count(*) FILTER (WHERE c.status IN ('pending', 'running')) AS in_progress
FROM flows.meter_commands AS c
JOIN flows.escos AS e ON e.id = c.esco
WHERE c.kind = 'set_future_tariff' AND c.batch_id IS NOT NULL
GROUP BY e.code, c.batch_id
HAVING count(*) FILTER (WHERE c.status IN ('pending', 'running')) > 0
    OR max(c.finished_at) > now() - interval '1 day';

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

-- The notification outbox per channel: what waits (due or not), what is being
-- sent, how long the oldest due message has waited for a sender, and what
-- ended lately (sent in the last hour, dead letters in the last day).
CREATE VIEW monitoring.notifications AS
SELECT k.channel,
       count(n.id) FILTER (WHERE n.status = 'pending') AS pending,
       count(n.id) FILTER (WHERE n.status = 'pending' AND n.send_after <= now()) AS due,
       count(n.id) FILTER (WHERE n.status = 'sending') AS sending,
       coalesce(extract(epoch FROM now() - min(n.send_after) FILTER (WHERE n.status = 'pending'
                                                                         AND n.send_after <= now())), 0)
           AS oldest_due_seconds,
       (SELECT count(*) FROM flows.notification_outbox AS s
        WHERE s.channel = k.channel AND s.status = 'sent' AND s.updated_at > now() - interval '1 hour')
           AS sent_last_hour,
       (SELECT count(*) FROM flows.notification_outbox AS d
        WHERE d.channel = k.channel AND d.status = 'dead' AND d.updated_at > now() - interval '1 day')
           AS dead_last_day
FROM (VALUES ('email'), ('sms')) AS k (channel)
LEFT JOIN flows.notification_outbox AS n ON n.channel = k.channel AND n.status IN ('pending', 'sending')
GROUP BY k.channel;

-- Reconciliation per ESCO and exception kind (docs/reconciliation.md): the
-- exceptions of the last 31 UK days (as api.reconciliation_exceptions) not
-- resolved (open, or acknowledged: being worked), the money they are about,
-- those nobody has decided on yet (open) and how long the oldest of them has
-- waited (from the start of its UK day). The exceptions are computed (the
-- shadow ledger of every meter): the exporter caches them (cache_seconds), and
-- reads them through a definer function that gives the kind, amount, status
-- and the start of the UK day of each, nothing else.
CREATE FUNCTION monitoring.unresolved_reconciliation_exceptions()
RETURNS TABLE (esco uuid, kind text, amount numeric, status text, since timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
SELECT x.esco, x.kind, x.amount, x.status, flows.uk_day_start(x.day)
FROM flows.escos AS e
CROSS JOIN LATERAL billing.reconciliation_exceptions(e.id, (now() AT TIME ZONE 'Europe/London')::date - 30,
                                                     (now() AT TIME ZONE 'Europe/London')::date) AS x
WHERE x.status <> 'resolved'
$$;
COMMENT ON FUNCTION monitoring.unresolved_reconciliation_exceptions() IS
    'Kind, amount, status and start of the UK day of every reconciliation exception of the last 31 UK days not '
    'resolved, of every ESCO: what monitoring.reconciliation counts (definer: the exporter reads the monitoring '
    'views only).';

CREATE VIEW monitoring.reconciliation AS
SELECT e.code AS esco, k.kind,
       count(x.kind) AS open,
       coalesce(sum(x.amount), 0) AS open_gbp,
       count(x.kind) FILTER (WHERE x.status = 'open') AS undecided,
       coalesce(extract(epoch FROM now() - min(x.since) FILTER (WHERE x.status = 'open')), 0)
           AS oldest_undecided_seconds
FROM flows.escos AS e
CROSS JOIN (VALUES ('payment_without_topup'), ('topup_without_credit'), ('credit_without_topup'),
                   ('emergency_credit_taken'), ('unexplained_deduction')) AS k (kind)
LEFT JOIN (SELECT * FROM monitoring.unresolved_reconciliation_exceptions() OFFSET 0) AS x  -- computed once
       ON x.esco = e.id AND x.kind = k.kind
GROUP BY e.code, k.kind;

-- The bank matching queue per ESCO: entries no rule matched, waiting for an
-- operator (docs/reconciliation.md, "Working the queue"), the money they carry
-- in and out, and how long the oldest has waited since it was imported.
CREATE VIEW monitoring.bank_queue AS
SELECT e.code AS esco,
       count(t.id) AS unmatched,
       coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0) AS unmatched_in_gbp,
       coalesce(-sum(t.amount) FILTER (WHERE t.amount < 0), 0) AS unmatched_out_gbp,
       coalesce(extract(epoch FROM now() - min(t.created_at)), 0) AS oldest_unmatched_seconds
FROM flows.escos AS e
LEFT JOIN billing.bank_transactions AS t ON t.esco = e.id AND t.status = 'unmatched'
GROUP BY e.code;

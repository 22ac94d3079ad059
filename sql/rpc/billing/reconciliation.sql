-- Reconciliation through the API (docs/reconciliation.md): the exceptions and
-- the day's picture over the last 31 UK days as views (each ESCO its own, by
-- RLS on what they are computed from), one day of any date as an RPC, and the
-- operator's decisions on exceptions.

CREATE VIEW api.reconciliation_exceptions WITH (security_invoker = true) AS
SELECT x.esco, e.code AS esco_code, x.day, x.kind, x.exception_key, x.meter_id, m.serial, x.account_id,
       a.account_number, x.amount, x.reason, x.evidence, x.status, x.note, x.decided_by, x.decided_at
FROM flows.escos AS e
CROSS JOIN LATERAL billing.reconciliation_exceptions(
    e.id, (now() AT TIME ZONE 'Europe/London')::date - 30, (now() AT TIME ZONE 'Europe/London')::date) AS x
LEFT JOIN flows.meter_registry AS m ON m.id = x.meter_id
LEFT JOIN billing.accounts AS a ON a.id = x.account_id;
COMMENT ON VIEW api.reconciliation_exceptions IS
    'Reconciliation exceptions of the last 31 UK days: kind payment_without_topup | topup_without_credit | '
    'credit_without_topup | emergency_credit_taken | unexplained_deduction, amount (GBP), reason, evidence, '
    'status open | acknowledged | resolved. Any other day: rpc/reconciliation.';

CREATE VIEW api.reconciliation_days WITH (security_invoker = true) AS
SELECT s.*, e.code AS esco_code
FROM flows.escos AS e
CROSS JOIN LATERAL billing.reconciliation_summary(
    e.id, (now() AT TIME ZONE 'Europe/London')::date - 30, (now() AT TIME ZONE 'Europe/London')::date) AS s;
COMMENT ON VIEW api.reconciliation_days IS
    'The three-way reconciliation per ESCO and UK day (last 31 days): payments and top-ups and how many matched, '
    'credit events, meters in the shadow ledger, exceptions by kind.';

CREATE VIEW api.shadow_ledger_days WITH (security_invoker = true) AS
SELECT e.id AS esco, l.*, m.serial
FROM flows.escos AS e
CROSS JOIN LATERAL billing.shadow_ledger(
    e.id, (now() AT TIME ZONE 'Europe/London')::date - 30, (now() AT TIME ZONE 'Europe/London')::date) AS l
JOIN flows.meter_registry AS m ON m.id = l.meter_id;
COMMENT ON VIEW api.shadow_ledger_days IS
    'The shadow prepay ledger per meter and UK day (last 31 days): expected and observed change of the balance, '
    'residual (GBP), finding beyond the tolerance.';

-- One UK day of an ESCO: its summary and exceptions, as flows reconcile prints them.
CREATE FUNCTION api.reconciliation(esco_code text, day date) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(reconciliation.esco_code);
BEGIN
    IF reconciliation.day IS NULL OR reconciliation.day > (pg_catalog.now() AT TIME ZONE 'Europe/London')::date THEN
        RAISE EXCEPTION 'day must be a UK day up to today, got %', coalesce(reconciliation.day::text, 'nothing')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (
        SELECT pg_catalog.jsonb_build_object(
            'esco', reconciliation.esco_code, 'day', reconciliation.day,
            'summary', (SELECT pg_catalog.to_jsonb(s) - 'esco' - 'day'
                        FROM billing.reconciliation_summary(esco_id, reconciliation.day, reconciliation.day) AS s),
            'exceptions', coalesce((
                SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                           'kind', x.kind, 'exception_key', x.exception_key, 'meter', m.serial,
                           'account', a.account_number, 'amount', x.amount, 'reason', x.reason,
                           'status', x.status, 'note', x.note, 'evidence', x.evidence)
                       ORDER BY x.kind, m.serial, x.exception_key)
                FROM billing.reconciliation_exceptions(esco_id, reconciliation.day, reconciliation.day) AS x
                LEFT JOIN flows.meter_registry AS m ON m.id = x.meter_id
                LEFT JOIN billing.accounts AS a ON a.id = x.account_id), '[]')));
END
$$;
COMMENT ON FUNCTION api.reconciliation(text, date) IS
    'The three-way reconciliation of an ESCO for one UK day: summary (matched counts, exceptions by kind) and the '
    'exceptions with kind, meter, account, amount, reason, status and evidence.';

-- An operator's decision on an exception: acknowledged (being worked) or
-- resolved, with a note; deciding again replaces it (audited).
CREATE FUNCTION api.decide_reconciliation_exception(esco_code text, exception_key text, status text, note text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(decide_reconciliation_exception.esco_code);
    kind text := pg_catalog.split_part(decide_reconciliation_exception.exception_key, ':', 1);
    decision billing.reconciliation_decisions;
BEGIN
    IF kind NOT IN ('payment_without_topup', 'topup_without_credit', 'credit_without_topup', 'emergency_credit_taken',
                    'unexplained_deduction') THEN
        RAISE EXCEPTION 'exception_key % is not a reconciliation exception''s key',
            coalesce(pg_catalog.quote_literal(decide_reconciliation_exception.exception_key), 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use the exception_key of api.reconciliation_exceptions';
    END IF;
    IF decide_reconciliation_exception.status IS NULL
       OR decide_reconciliation_exception.status NOT IN ('acknowledged', 'resolved') THEN
        RAISE EXCEPTION 'status must be acknowledged or resolved, got %',
            coalesce(decide_reconciliation_exception.status, 'nothing') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(btrim(decide_reconciliation_exception.note), '') = '' THEN
        RAISE EXCEPTION 'note must say what was found or done' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO billing.reconciliation_decisions AS d (esco, exception_key, kind, status, note, decided_by)
    VALUES (esco_id, decide_reconciliation_exception.exception_key, kind, decide_reconciliation_exception.status,
            decide_reconciliation_exception.note, flows.requester())
    ON CONFLICT ON CONSTRAINT reconciliation_decisions_pkey DO UPDATE
    SET status = excluded.status, note = excluded.note, decided_by = flows.requester(), decided_at = pg_catalog.now()
    RETURNING * INTO decision;
    RETURN pg_catalog.to_jsonb(decision);
END
$$;
COMMENT ON FUNCTION api.decide_reconciliation_exception(text, text, text, text) IS
    'Records an operator''s decision on a reconciliation exception (by its exception_key): acknowledged or '
    'resolved, with a note.';

-- The ESCO's reconciliation settings (grace period of a payment's top-up, the ledger's tolerance).
CREATE VIEW api.reconciliation_settings WITH (security_invoker = true) AS
SELECT s.esco, s.topup_grace, s.tolerance, s.updated_at FROM billing.reconciliation_settings AS s;
COMMENT ON VIEW api.reconciliation_settings IS
    'Per ESCO: topup_grace and tolerance (GBP) of the reconciliation; no row = 2 hours and 0.01.';

CREATE VIEW api.prepay_debts WITH (security_invoker = true) AS
SELECT d.meter_id, d.esco, d.amount, d.as_of, d.notes, d.recorded_by, d.created_at FROM billing.prepay_debts AS d;
COMMENT ON VIEW api.prepay_debts IS
    'Debt loaded on a prepay meter at as_of (GBP), recovered at the debt recovery rate each UK midnight.';

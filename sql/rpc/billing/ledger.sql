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

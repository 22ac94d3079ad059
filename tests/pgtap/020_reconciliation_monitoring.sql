-- What the exporter reads about reconciliation (sql/schema/monitoring.sql, docs/operations.md): open
-- exceptions per ESCO and kind with their amount and the age of the oldest undecided one, as decisions move
-- them; the bank matching queue per ESCO; both read as flows_monitor, the exporter's login, which reads
-- nothing else; and the daily summary's ledger tallies from the same computation of the ledger.
BEGIN;
SELECT plan(12);

INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000017a1', 'TAPMON', 'Mon');
INSERT INTO flows.sites (id, esco, code, name)
VALUES ('00000000-0000-4000-8000-0000000017a2', '00000000-0000-4000-8000-0000000017a1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot)
VALUES ('00000000-0000-4000-8000-000000001701', '00000000-0000-4000-8000-0000000017a1',
        '00000000-0000-4000-8000-0000000017a2', 'P-1');
SELECT api.register_meter(serial => 'EML3300000171', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000017a1') ->> 'id' AS m1 \gset
INSERT INTO flows.service_head_registry (id, esco, name)
VALUES ('00000000-0000-4000-8000-000000001711', '00000000-0000-4000-8000-0000000017a1', 'H1');
INSERT INTO flows.properties_service_head
VALUES ('00000000-0000-4000-8000-000000001701', '00000000-0000-4000-8000-000000001711', '00000000-0000-4000-8000-0000000017a1');
INSERT INTO flows.service_head_meter
VALUES ('00000000-0000-4000-8000-000000001711', :'m1', '00000000-0000-4000-8000-0000000017a1');
SELECT api.onboard_customer('00000000-0000-4000-8000-000000001701', 'Ann', move_in => '2025-01-01T00:00:00Z') -> 'accounts' -> 0 ->> 'id' AS acct \gset

-- Two cash payments three hours ago whose top-ups never happened (past the default grace of 2 hours).
SELECT id AS p1 FROM api.record_payment(:'acct', 12.00, 'cash', 'M-1', now() - interval '3 hours') \gset
SELECT id AS p2 FROM api.record_payment(:'acct', 8.50, 'cash', 'M-2', now() - interval '3 hours') \gset
UPDATE billing.payments SET created_at = received_at WHERE id IN (:'p1', :'p2');

CREATE TEMP VIEW seen AS SELECT * FROM monitoring.reconciliation WHERE esco = 'TAPMON';
SET LOCAL ROLE flows_monitor;
SELECT results_eq(
    $$SELECT kind, open, open_gbp, undecided FROM monitoring.reconciliation WHERE esco = 'TAPMON' ORDER BY kind$$,
    $$VALUES ('credit_without_topup', 0::bigint, 0::numeric, 0::bigint), ('emergency_credit_taken', 0, 0, 0),
             ('payment_without_topup', 2, 20.50, 2), ('topup_without_credit', 0, 0, 0),
             ('unexplained_deduction', 0, 0, 0)$$,
    'the exporter sees every kind of the ESCO, the two payments without a top-up and their money');
SELECT ok((SELECT oldest_undecided_seconds BETWEEN 3 * 3600 AND 86400 FROM monitoring.reconciliation
           WHERE esco = 'TAPMON' AND kind = 'payment_without_topup'),
          'the oldest undecided one has waited since the start of its UK day');
SELECT is((SELECT oldest_undecided_seconds FROM monitoring.reconciliation
           WHERE esco = 'TAPMON' AND kind = 'topup_without_credit'), 0::numeric, 'nothing waiting: 0');
SELECT throws_ok($$SELECT * FROM billing.reconciliation_exceptions('00000000-0000-4000-8000-0000000017a1',
                                                                    current_date, current_date)$$,
                 '42501', NULL, 'the exporter''s login cannot compute the reconciliation itself');
RESET ROLE;

-- An operator acknowledges one (still open: being worked), then resolves the other.
-- (a SQL login's claims come from flows.sql_login_claims: this session's, for this test)
INSERT INTO flows.sql_login_claims (login, claims) VALUES (session_user, '{"esco": "TAPMON", "sub": "olga"}');
SET LOCAL ROLE flows_operator;
SELECT is(api.decide_reconciliation_exception('TAPMON', 'payment_without_topup:' || :'p1', 'acknowledged',
                                              'calling Ann') ->> 'status', 'acknowledged', 'one acknowledged');
RESET ROLE;
SELECT results_eq($$SELECT open, undecided FROM seen WHERE kind = 'payment_without_topup'$$,
                  $$VALUES (2::bigint, 1::bigint)$$, 'acknowledged: still open, no longer undecided');
SET LOCAL ROLE flows_operator;
SELECT is(api.decide_reconciliation_exception('TAPMON', 'payment_without_topup:' || :'p2', 'resolved',
                                              'refunded in cash') ->> 'status', 'resolved', 'the other resolved');
RESET ROLE;
SELECT results_eq($$SELECT open, open_gbp, undecided FROM seen WHERE kind = 'payment_without_topup'$$,
                  $$VALUES (1::bigint, 12.00::numeric, 0::bigint)$$, 'resolved: no longer counted');

-- The bank queue: two entries no rule took (one in, one out), imported a day ago, and one matched.
INSERT INTO billing.bank_accounts (id, esco, name, iban)
VALUES ('00000000-0000-4000-8000-0000000017b1', '00000000-0000-4000-8000-0000000017a1', 'main', 'GB82WEST12345698765432');
INSERT INTO billing.bank_statements (id, esco, bank_account_id, file_hash, source_format, period_start, period_end,
                                     balance_check, entries, entries_added, imported_by)
VALUES ('00000000-0000-4000-8000-0000000017b2', '00000000-0000-4000-8000-0000000017a1',
        '00000000-0000-4000-8000-0000000017b1', repeat('a', 64), 'csv', current_date - 1, current_date - 1,
        'unchecked', 3, 3, 'tap');
INSERT INTO billing.bank_transactions (esco, bank_account_id, statement_id, booking_date, amount, dedup_key, status,
                                       created_at)
VALUES ('00000000-0000-4000-8000-0000000017a1', '00000000-0000-4000-8000-0000000017b1',
        '00000000-0000-4000-8000-0000000017b2', current_date - 1, 25.00, 'k1', 'unmatched', now() - interval '1 day'),
       ('00000000-0000-4000-8000-0000000017a1', '00000000-0000-4000-8000-0000000017b1',
        '00000000-0000-4000-8000-0000000017b2', current_date - 1, -4.20, 'k2', 'unmatched', now() - interval '2 hours'),
       ('00000000-0000-4000-8000-0000000017a1', '00000000-0000-4000-8000-0000000017b1',
        '00000000-0000-4000-8000-0000000017b2', current_date - 1, 99.00, 'k3', 'matched', now() - interval '3 days');
SET LOCAL ROLE flows_monitor;
SELECT results_eq(
    $$SELECT unmatched, unmatched_in_gbp, unmatched_out_gbp, round(oldest_unmatched_seconds / 3600)
      FROM monitoring.bank_queue WHERE esco = 'TAPMON'$$,
    $$VALUES (2::bigint, 25.00::numeric, 4.20::numeric, 24::numeric)$$,
    'the bank queue: what waits, money in and out, and how long the oldest has waited since its import');
SELECT throws_ok($$SELECT count(*) FROM billing.bank_transactions$$, '42501', NULL,
                 'the exporter reads the monitoring views, not the entries');
RESET ROLE;

-- The summary's ledger tallies come from the same computation as the exceptions.
SELECT results_eq(
    $$SELECT meters_ledgered, meter_days_explained, meter_days_incomplete, exceptions ->> 'payment_without_topup',
             open_exceptions
      FROM billing.reconciliation_summary('00000000-0000-4000-8000-0000000017a1',
                                          (now() AT TIME ZONE 'Europe/London')::date,
                                          (now() AT TIME ZONE 'Europe/London')::date)$$,
    $$VALUES (0, 0, 0, '2', 1)$$,
    'the day''s picture: no balances read (nothing in the ledger), the two payments, one still open');
SELECT is((SELECT count(*)::integer FROM billing.reconciliation_findings('00000000-0000-4000-8000-0000000017a1',
                                                                         current_date - 1, current_date)
           WHERE kind IS NULL), 0, 'no tally for days without balances');

SELECT * FROM finish();
ROLLBACK;

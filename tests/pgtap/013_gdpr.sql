-- Personal data: the registry and its completeness check, consent and the
-- half hours a customer sees, the export, erasure's refusals and effects, the
-- guards of frozen rows, who may ask; and the security rules of the gdpr schema.
-- Claims come from flows.sql_login_claims for this login (as for any SQL login).
BEGIN;
SELECT plan(79);

-- The gdpr schema keeps the rules the other schemas keep -----------------------------
SELECT is_empty($$
    SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p')
      AND NOT c.relrowsecurity
$$, 'every gdpr table has row-level security');
SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
           WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'r'
             AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid)),
          ARRAY['erasure_checks', 'not_personal', 'personal_columns', 'personal_data'],
          'only the registry has no policy (its definer functions read it)');
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND c.relowner <> 'flows_owner'::regrole
    UNION ALL
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'gdpr'::regnamespace AND p.proowner <> 'flows_owner'::regrole
$$, 'flows_owner owns every gdpr table, view and function');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = 'gdpr'::regnamespace
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
$$, 'no gdpr function is executable by PUBLIC');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
           WHERE p.pronamespace = 'gdpr'::regnamespace AND p.prosecdef),
          ARRAY['customer_data', 'erase_customer', 'erase_late_processor_event', 'erasing', 'retention'],
          'the SECURITY DEFINER functions of gdpr are the reviewed ones');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'gdpr'::regnamespace AND (l.lanname = 'plpgsql' OR p.prosecdef)
      AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')
$$, 'every PL/pgSQL and definer function of gdpr pins its search_path');
SELECT is_empty($$
    SELECT p.oid::regprocedure, c.message
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang,
         LATERAL plpgsql_check_function_tb(p.oid) c
    WHERE p.pronamespace = 'gdpr'::regnamespace AND l.lanname = 'plpgsql' AND p.prokind = 'f'
      AND p.prorettype <> 'trigger'::regtype AND c.level IN ('error', 'warning')
    UNION ALL
    SELECT 'gdpr.erase_late_processor_event()'::regprocedure, c.message
    FROM plpgsql_check_function_tb('gdpr.erase_late_processor_event()', 'billing.processor_events') c
    WHERE c.level IN ('error', 'warning')
$$, 'plpgsql_check finds nothing in gdpr (its trigger function checked on its table)');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind = 'v'
      AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
$$, 'gdpr views are security_invoker');

-- The registry covers every column that looks like personal data ----------------------
SELECT is_empty($$ SELECT * FROM gdpr.unregistered_personal_columns $$,
                'every column named like personal data is registered or declared not personal');
SET LOCAL ROLE flows_owner;
CREATE TABLE flows.tap_outbox (id uuid PRIMARY KEY, recipient_email text, body text);
RESET ROLE;
SELECT is((SELECT array_agg(relation || '.' || column_name) FROM gdpr.unregistered_personal_columns),
          ARRAY['flows.tap_outbox.recipient_email'], 'a new table with a recipient column is noticed');
CALL gdpr.register('flows.tap_outbox', subject => '{row}.id = {customer}', retention => 'tests',
                   personal => '{"recipient_email": "null", "body": "scrub"}');
SELECT is_empty($$ SELECT * FROM gdpr.unregistered_personal_columns $$, 'and registering it with one line is enough');
SELECT throws_ok($$ CALL gdpr.register('flows.sites', subject => '{row}.no_such = {customer}', retention => 'x') $$,
                 '42703', NULL, 'a subject condition that cannot run is refused when registered');
SELECT throws_ok($$ CALL gdpr.register('flows.circuits', subject => '{row}.esco = {customer}', retention => 'x',
                                       personal => '{"nickname": "null"}') $$,
                 '42703', NULL, 'so is a column the table does not have');
SELECT throws_ok($$ CALL gdpr.register('flows.feeder_registry', subject => '{row}.esco = {customer}', retention => 'x',
                                       personal => '{"name": "keep"}') $$,
                 '23514', NULL, 'keeping a column must say why');
DROP TABLE flows.tap_outbox;
SELECT is((SELECT array_agg(problem) FROM gdpr.unregistered_personal_columns),
          ARRAY['registered, but no such table'], 'a registry line naming a table that went is noticed');
DELETE FROM gdpr.personal_data WHERE relation = 'flows.tap_outbox';

-- Scrubbing free text --------------------------------------------------------------------
SELECT is(gdpr.scrub('Dear OLIVE owner, your email olive@example.com', gdpr.identity_pattern('{Olive Owner,olive@example.com}'), 'X'),
          'Dear X, your email X', 'identities are replaced in any case');
SELECT is(gdpr.scrub('Site and Sitemap', gdpr.identity_pattern('{Site}'), 'X'), 'X and Sitemap',
          'as whole tokens only');
SELECT is(gdpr.scrub('{"site": "Site", "n": ["Site 2"]}'::jsonb, gdpr.identity_pattern('{Site}'), 'X'),
          '{"site": "X", "n": ["X 2"]}'::jsonb, 'in a JSON value''s strings, never its keys');

-- A community: two homes (a prepay and a credit meter) and their half hours of March 2026 -----
INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000d1', 'TAPGDPR', 'GDPR');
INSERT INTO flows.sites (id, esco, code, name)
VALUES ('00000000-0000-4000-8000-0000000000d2', '00000000-0000-4000-8000-0000000000d1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot, address) VALUES
    ('00000000-0000-4000-8000-0000000000d3', '00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-0000000000d2', 'P-1', '1 Lane'),
    ('00000000-0000-4000-8000-0000000000e3', '00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-0000000000d2', 'P-2', '2 Lane');
INSERT INTO flows.service_head_registry (id, esco, name) VALUES
    ('00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-0000000000d1', 'H1'),
    ('00000000-0000-4000-8000-0000000000e4', '00000000-0000-4000-8000-0000000000d1', 'H2');
INSERT INTO flows.properties_service_head VALUES
    ('00000000-0000-4000-8000-0000000000d3', '00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-0000000000d1'),
    ('00000000-0000-4000-8000-0000000000e3', '00000000-0000-4000-8000-0000000000e4', '00000000-0000-4000-8000-0000000000d1');
SELECT api.register_meter(serial => 'EML3200000001', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000000d1',
    registers => '[{"element": "SINGLE", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3200000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000000d1',
    prepay_enabled => false, registers => '[{"element": "SINGLE", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m2 \gset
INSERT INTO flows.service_head_meter VALUES
    ('00000000-0000-4000-8000-0000000000d4', :'m1', '00000000-0000-4000-8000-0000000000d1'),
    ('00000000-0000-4000-8000-0000000000e4', :'m2', '00000000-0000-4000-8000-0000000000d1');
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(t), array_agg(0.25::numeric), NULL, 'profile_log')
FROM flows.meter_registers r,
     generate_series(flows.uk_day_start('2026-03-01'), flows.uk_day_start('2026-04-01') - interval '30 minutes',
                     interval '30 minutes') t
WHERE r.meter_id IN (:'m1', :'m2');
SELECT flows.ensure_partitions('flows.meter_prepay_balance', '2026-03-01T00:00:00Z', '2026-04-01T00:00:00Z');
INSERT INTO flows.meter_prepay_balance (meter_id, "timestamp", balance)
VALUES (:'m1', '2026-03-01T00:00:00Z', 20), (:'m1', '2026-03-18T12:00:00Z', 12.5);
INSERT INTO billing.benchmark_tariffs VALUES ('south_west', '2026-01-01', 0.24500, 0.60970) ON CONFLICT DO NOTHING;
INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount)
VALUES ('00000000-0000-4000-8000-0000000000d1', '2026-01-01', 'south_west', 20);
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000d3', 'Olive Owner', 'olive@example.com',
                            '+44 7700 900001', move_in => '2026-01-01T00:00:00Z') AS olive \gset
SELECT (:'olive'::jsonb -> 'customer' ->> 'id') AS olive_id, (:'olive'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct1 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000e3', 'Larry Landlord', 'larry@example.com',
                            role => 'owner', move_in => '2026-01-01T00:00:00Z') -> 'customer' ->> 'id' AS larry \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000e3', 'Tina Tenant', 'tina@example.com',
                            role => 'occupier', move_in => '2026-01-01T00:00:00Z') AS tina \gset
SELECT (:'tina'::jsonb -> 'customer' ->> 'id') AS tina_id, (:'tina'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct2 \gset
UPDATE billing.customers SET status = 'onboarding' WHERE esco = '00000000-0000-4000-8000-0000000000d1';
SELECT api.generate_customer_tariffs('TAPGDPR', '2026-01-01');
-- Olive confirms a new phone number through the portal (her token's subject is her email).
INSERT INTO flows.sql_login_claims (login, claims)
VALUES (session_user, jsonb_build_object('role', 'flows_operator', 'esco', 'TAPGDPR', 'sub', 'olive@example.com'));
UPDATE billing.customers SET phone = '+44 7700 900002' WHERE id = :'olive_id';

-- Consent and the half hours a customer sees ---------------------------------------------
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('esco', 'TAPGDPR', 'customer', :'tina_id')
WHERE login = session_user;
SET LOCAL ROLE flows_customer;
SELECT is((SELECT count(*)::int FROM api.register_interval_hh), 0, 'without consent a customer sees no half hours');
SELECT is((SELECT count(*)::int FROM api.property_interval_hh), 0, 'nor their home''s');
SELECT is((SELECT count(*)::int FROM api.register_interval_daily), 31, 'but every day of March');
SELECT is((SELECT count(*)::int FROM api.register_interval_monthly), 1, 'and the month');
SELECT is((SELECT given::text || ' ' || source FROM api.record_consent(true)), 'true customer',
          'a customer gives their consent');
SELECT is((SELECT count(*)::int FROM api.register_interval_hh), 1486, 'and sees the month''s half hours');
SELECT is((SELECT count(*)::int FROM api.record_consent(true)), 1, 'giving it again is the consent in force');
SELECT is((SELECT given FROM api.record_consent(false)), false, 'they withdraw it');
SELECT is((SELECT count(*)::int FROM api.register_interval_hh), 0, 'and the half hours are gone');
SELECT is((SELECT count(*)::int FROM api.register_interval_daily), 31, 'the days stay');
SELECT is((SELECT array_agg(given::text || ':' || in_force ORDER BY recorded_at) FROM api.consents),
          ARRAY['true:false', 'false:true'], 'every give and withdraw is kept, the latest in force');
SELECT throws_ok(format($$ SELECT * FROM api.record_consent(true, customer_id => '%s') $$, :'olive_id'),
                 'PT404', NULL, 'a customer records only their own consent');
SELECT throws_ok($$ SELECT * FROM api.record_consent(true, 'marketing') $$, '23514', NULL,
                 'purposes are the known ones');
RESET ROLE;
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('esco', 'TAPGDPR', 'customer', :'larry')
WHERE login = session_user;
SET LOCAL ROLE flows_customer;
SELECT lives_ok($$ SELECT api.record_consent(true) $$, 'the landlord consents too');
SELECT is((SELECT count(*)::int FROM api.register_interval_hh), 0, 'but the half hours are the tenant''s, not theirs');
SELECT is((SELECT count(*)::int FROM api.register_interval_daily), 31, 'they see the days');
RESET ROLE;
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('esco', 'TAPGDPR', 'customer', :'olive_id',
                                                              'sub', 'olive@example.com')
WHERE login = session_user;
SET LOCAL ROLE flows_customer;
SELECT lives_ok($$ SELECT api.record_consent(true) $$, 'Olive consents');
RESET ROLE;

-- Erasure is refused while something is not settled, saying why ----------------------------
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('role', 'flows_operator', 'esco', 'TAPGDPR')
WHERE login = session_user;
SET LOCAL ROLE flows_operator;
SELECT throws_like(format($$ SELECT api.erase_customer('%s') $$, :'tina_id'),
                   '%cannot be erased yet: they are still the occupier of account%', 'not while they live there');
RESET ROLE;
SELECT * FROM api.move_out(:'acct1', '2026-03-18T14:30:00Z');
SELECT * FROM api.move_out(:'acct2', '2026-03-18T14:30:00Z');
SELECT throws_like(format($$ SELECT api.erase_customer('%s') $$, :'olive_id'),
                   '%their supply on account % is billed up to nothing, not to their move-out at 2026-03-18 14:30%',
                   'not before their supply is billed up to the move-out');
SELECT id AS run FROM api.create_billing_run('TAPGDPR', '2026-03-01') \gset
SELECT throws_like(format($$ SELECT api.erase_customer('%s') $$, :'olive_id'),
                   '%a statement of account % for March 2026 is open in the draft billing run%',
                   'not while a statement is open (a draft run)');
SELECT api.finalise_billing_run(:'run');
SELECT throws_ok(format($$ SELECT api.erase_customer('%s') $$, :'tina_id'), 'PT409', NULL,
                 'not while money is owed: refused with 409');
SELECT total AS tina_total FROM billing.invoices WHERE customer_id = :'tina_id' AND status = 'final' \gset
SELECT throws_like(format($$ SELECT api.erase_customer('%s') $$, :'tina_id'),
                   format('%%account %% owes £%s (by the ledger: their statements less what they paid)%%', :'tina_total'),
                   'saying what is owed by the ledger (a credit meter''s statement)');
SELECT is((SELECT array_agg(check_name ORDER BY check_name) FROM gdpr.erasure_refusals(:'olive_id')), NULL,
          'Olive (prepay, moved out, billed, in credit) can be erased');
-- Tina pays her statement: the money is hers (she paid the account then), on a credit meter it stays the
-- account's credit, and the ledger says she owes nothing.
SELECT id AS tina_cash FROM api.record_payment(:'acct2', :'tina_total'::numeric - 1, 'cash', 'TAP-1',
                                               '2026-03-10T12:00:00Z') \gset
SELECT is((SELECT reason FROM gdpr.erasure_refusals(:'tina_id')),
          format('account %s owes £1.00 (by the ledger: their statements less what they paid)',
                 (SELECT account_number FROM billing.accounts WHERE id = :'acct2')), 'what is left');
SELECT api.record_payment(:'acct2', 1, 'bank_transfer', 'TAP-2', '2026-03-11T12:00:00Z');
SELECT is((SELECT array_agg(check_name) FROM gdpr.erasure_refusals(:'tina_id')), NULL,
          'a credit-meter customer who paid their statements can be erased');
SELECT api.record_payment(:'acct2', 5, 'cash', 'TAP-3', '2026-03-12T12:00:00Z') \gset
SELECT is((SELECT array_agg(check_name || ': ' || reason) FROM gdpr.erasure_refusals(:'tina_id')),
          ARRAY[format('credit_held: £5.00 of theirs is held on account %s (received or given, not on the meter nor '
                       'refunded)', (SELECT account_number FROM billing.accounts WHERE id = :'acct2'))],
          'one who paid too much is paid back first');
SELECT api.refund_payment(id, 'paid twice') FROM billing.payments WHERE provider_reference = 'TAP-3';
SELECT is((SELECT r.status FROM billing.refunds r JOIN billing.payments p ON p.id = r.payment_id
           WHERE p.provider_reference = 'TAP-3'), 'succeeded', 'cash is paid back at once');
-- A card payment on its way holds the erasure until the processor settles it.
INSERT INTO billing.payments (esco, account_id, customer_id, amount, status, provider, origin, provider_reference,
                              submitted_at, requested_by)
VALUES ('00000000-0000-4000-8000-0000000000d1', :'acct2', :'tina_id', 12, 'processing', 'stripe', 'processor',
        'pi_tap_1', now(), 'tap');
SELECT is((SELECT array_agg(check_name || ': ' || split_part(reason, ' (since', 1)) FROM gdpr.erasure_refusals(:'tina_id')),
          ARRAY['payment_in_flight: their stripe payment of £12.00 is processing'], 'a payment in flight holds it');
SELECT is((SELECT outcome FROM billing.apply_processor_event_v1('stripe', jsonb_build_object(
              'id', 'evt_tap_1', 'type', 'payment_intent.payment_failed', 'created', 1773000000,
              'data', jsonb_build_object('object', jsonb_build_object(
                  'id', 'pi_tap_1', 'object', 'payment_intent', 'amount', 1200, 'currency', 'gbp',
                  'status', 'requires_payment_method', 'last_payment_error', jsonb_build_object('message', 'declined')))))),
          'applied', 'the processor says it failed');
SELECT is((SELECT array_agg(check_name) FROM gdpr.erasure_refusals(:'tina_id')), NULL, 'and nothing holds it now');


-- Erasure --------------------------------------------------------------------------------
SELECT id AS olive_invoice, net, vat, total, md5((details - 'customer')::text) AS facts FROM billing.invoices
WHERE customer_id = :'olive_id' \gset
SELECT md5(string_agg(l::text, '|' ORDER BY l.position)) AS lines FROM billing.invoice_lines l
WHERE invoice_id = :'olive_invoice' \gset
SELECT billing.store_invoice_document(:'olive_invoice', convert_to('%PDF-1.4 Olive Owner', 'UTF8'), 'tap');
SET LOCAL ROLE flows_owner;
SELECT throws_like($$ UPDATE flows.audit_log SET after = '{}' WHERE esco = '00000000-0000-4000-8000-0000000000d1' $$,
                   '%append-only%', 'outside an erasure the owner cannot touch audit copies');
RESET ROLE;
SELECT throws_ok(format($$ UPDATE billing.invoices SET details = '{}' WHERE id = '%s' $$, :'olive_invoice'), '55000',
                 NULL, 'nor what a final statement prints');
SELECT is((SELECT count(*)::int FROM flows.audit_log WHERE esco = '00000000-0000-4000-8000-0000000000d1'
           AND concat_ws(' ', before::text, after::text, actor_sub) ~* 'olive'), 3,
          'the audit trail has copies of Olive''s rows and her own change');
SET LOCAL ROLE flows_operator;
SELECT api.erase_customer(:'olive_id', 'DSR-7 from Olive Owner') AS erased \gset
RESET ROLE;
SELECT is(:'erased'::jsonb ->> 'pseudonym', 'Erased customer ' || left(:'olive_id', 8), 'she carries a pseudonym');
SELECT is((SELECT fullname || ' ' || coalesce(email, '-') || ' ' || coalesce(phone, '-') || ' ' || status
           FROM billing.customers WHERE id = :'olive_id'),
          'Erased customer ' || left(:'olive_id', 8) || ' - - archived', 'her name, email and phone are gone');
SELECT is((SELECT details -> 'customer' FROM billing.invoices WHERE id = :'olive_invoice'),
          jsonb_build_object('email', NULL, 'fullname', 'Erased customer ' || left(:'olive_id', 8)),
          'her statement prints the pseudonym');
SELECT is((SELECT ARRAY[net, vat, total]::text FROM billing.invoices WHERE id = :'olive_invoice'),
          ARRAY[:'net', :'vat', :'total']::text, 'its figures are unchanged');
SELECT is((SELECT md5((details - 'customer')::text) FROM billing.invoices WHERE id = :'olive_invoice'), :'facts',
          'and so is everything else it prints');
SELECT is((SELECT md5(string_agg(l::text, '|' ORDER BY l.position)) FROM billing.invoice_lines l
           WHERE invoice_id = :'olive_invoice'), :'lines', 'and its lines');
SELECT is((SELECT count(*)::int FROM billing.invoice_documents WHERE invoice_id = :'olive_invoice'), 0,
          'its PDF is deleted');
SELECT ok(:'olive_invoice' IN (SELECT billing.invoices_to_render(100)::text), 'to be rendered again');
SELECT is((SELECT count(*)::int FROM flows.audit_log
           WHERE concat_ws(' ', before::text, after::text, actor_sub) ~* 'olive|900001|900002'
             AND relation <> 'flows.sql_login_claims'),  -- this test's own stand-in for her token, no ESCO's row
          0, 'no audit row holds her name, email or phones, nor her as the actor');
SELECT is((SELECT count(*)::int FROM gdpr.consents WHERE recorded_by ~* 'olive'), 0,
          'nor does her consent record');
SELECT is((SELECT reference FROM gdpr.erasures WHERE customer_id = :'olive_id'),
          'DSR-7 from Erased customer ' || left(:'olive_id', 8), 'nor the erasure''s reference');
SELECT ok((SELECT count(*) FROM flows.audit_log WHERE concat_ws(' ', before::text, after::text) ~ 'Tina Tenant') > 0,
          'the other customers are untouched');
SELECT is((SELECT operation || ' ' || actor_role FROM flows.audit_log WHERE relation = 'gdpr.erasures'
           AND after ->> 'customer_id' = :'olive_id' ORDER BY id LIMIT 1), 'INSERT flows_operator',
          'the erasure is in the audit trail, with who asked');
SELECT is((api.erase_customer(:'olive_id') ->> 'already_erased')::boolean, true, 'erasing again changes nothing');
SELECT throws_ok(format($$ UPDATE billing.invoices SET details = '{}' WHERE customer_id = '%s' $$, :'tina_id'),
                 '55000', NULL, 'even while erasing, another customer''s statement stays frozen');
SELECT throws_like($$ UPDATE flows.audit_log SET relation = 'x' WHERE esco = '00000000-0000-4000-8000-0000000000d1' $$,
                   '%append-only%', 'and an audit row''s other columns cannot change');

-- The export -------------------------------------------------------------------------------
SELECT billing.store_invoice_document(id, convert_to('%PDF-1.4 Tina Tenant', 'UTF8'), 'tap') FROM billing.invoices
WHERE customer_id = :'tina_id';
SELECT api.customer_data_export(:'tina_id') AS export \gset
SELECT is_empty(format($$ SELECT relation FROM gdpr.personal_data
                          EXCEPT SELECT jsonb_object_keys(%L::jsonb -> 'tables') $$, :'export'),
                'the export has every table of the registry');
SELECT is(:'export'::jsonb -> 'tables' -> 'billing.customers' -> 0 ->> 'fullname', 'Tina Tenant', 'the customer row');
SELECT ok(NOT (:'export'::jsonb -> 'tables' -> 'billing.customers' -> 0 ? 'invite_token'), 'without the invitation token');
SELECT ok(NOT (:'export'::jsonb -> 'tables' -> 'billing.invoice_documents' -> 0 ? 'content')
          AND jsonb_array_length(:'export'::jsonb -> 'tables' -> 'billing.invoices') = 1,
          'her statement, and documents'' metadata without the PDF');
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(:'export'::jsonb -> 'tables' -> 'flows.register_interval_hh') h
           WHERE (h ->> 'timestamp')::timestamptz < '2026-03-18T14:30:00Z'),
          jsonb_array_length(:'export'::jsonb -> 'tables' -> 'flows.register_interval_hh'),
          'half hours of her meter up to her move-out only');
SELECT is(jsonb_array_length(:'export'::jsonb -> 'tables' -> 'flows.register_interval_hh'), 845,
          'all of them (1 to 18 March, 14:30)');
SELECT ok(jsonb_array_length(:'export'::jsonb -> 'audit_log') >= 3, 'the audit entries about her');
SELECT is(:'export'::jsonb -> 'consents', '{"half_hourly_data": false}', 'her consent');
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('role', 'flows_operator', 'esco', 'TAPBILLX')
WHERE login = session_user;
INSERT INTO flows.escos (code, name) VALUES ('TAPBILLX', 'Another');
SET LOCAL ROLE flows_operator;
SELECT throws_ok(format($$ SELECT api.customer_data_export('%s') $$, :'tina_id'), 'PT404', NULL,
                 'an operator of another ESCO is told there is no such customer');
SELECT throws_ok(format($$ SELECT api.erase_customer('%s') $$, :'tina_id'), 'PT404', NULL, 'and cannot erase them');
RESET ROLE;
UPDATE flows.sql_login_claims SET claims = jsonb_build_object('esco', 'TAPGDPR', 'customer', :'tina_id')
WHERE login = session_user;
SET LOCAL ROLE flows_customer;
SELECT is((SELECT relation FROM api.data_retention WHERE relation = 'billing.invoices' AND rows = 1
           AND retain_until = '2032-04-01'), 'billing.invoices', 'a customer sees how long their statements are kept');
SELECT throws_ok(format($$ SELECT api.customer_data_export('%s') $$, :'larry'), 'PT404', NULL,
                 'and exports only their own data');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

-- Billing in SQL: the rounding rule, UK days, energy between any two half
-- hours, who pays when, the run, numbering, frozen statements, the customer
-- lifecycle, what a customer sees; and the security rules of the billing schema.
BEGIN;
SELECT plan(57);

-- The billing schema keeps the rules the flows schema keeps ---------------------------
SELECT is_empty($$
    SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p')
      AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))
$$, 'every billing table has row-level security and policies');
SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND c.relowner <> 'flows_owner'::regrole
    UNION ALL
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'billing'::regnamespace AND p.proowner <> 'flows_owner'::regrole
$$, 'flows_owner owns every billing table, view and function');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = 'billing'::regnamespace
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
$$, 'no billing function is executable by PUBLIC');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'billing'::regnamespace
      AND (p.prosecdef OR (l.lanname = 'plpgsql' AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c
                                                                  WHERE c LIKE 'search_path=%')))
$$, 'no SECURITY DEFINER in billing, and every PL/pgSQL function pins its search_path');
SELECT is_empty($$
    SELECT p.oid::regprocedure, c.message
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
         LEFT JOIN LATERAL (SELECT t.tgrelid, t.tgnewtable FROM pg_trigger t WHERE t.tgfoid = p.oid LIMIT 1) AS t ON true,
         LATERAL plpgsql_check_function_tb(p.oid, coalesce(t.tgrelid, 0), newtable => t.tgnewtable) c
    WHERE p.pronamespace = 'billing'::regnamespace AND l.lanname = 'plpgsql' AND c.level IN ('error', 'warning')
$$, 'plpgsql_check finds nothing in billing');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind = 'v'
      AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
$$, 'billing views are security_invoker');
SELECT fk_ok('billing', 'accounts', ARRAY['meter_id', 'esco'], 'flows', 'meter_registry', ARRAY['id', 'esco']);
SELECT fk_ok('billing', 'invoice_lines', ARRAY['invoice_id', 'esco'], 'billing', 'invoices', ARRAY['id', 'esco']);

-- One rounding rule ----------------------------------------------------------------
SELECT is(billing.round_half_up(0.125, 2), 0.13, 'a half penny rounds up');
SELECT is(billing.round_half_up(-0.125, 2), -0.13, 'and a credit mirrors it');
SELECT is(billing.round_half_up(0.1249999, 2), 0.12, 'below a half rounds down');
SELECT is(billing.discounted_rate(0.26240, 25), 0.19680, 'cap x (1 - 25%)');
SELECT is(billing.discounted_rate(0.24567, 33.33), 0.16379, 'rates are rounded half-up to 5 decimals');
SELECT is(billing.vat_rate('residential', 5000, 30), 0.05, 'homes pay 5% VAT');
SELECT is(billing.vat_rate('commercial', 1500, 30), 0.20, 'a business over 33 kWh a day pays 20%');

-- UK days ----------------------------------------------------------------------------
SELECT is(billing.uk_days('2026-03-29T00:00:00+00', '2026-03-30T00:00:00+01'), 1.00000, 'the 23-hour day is one day');
SELECT is(billing.uk_days('2026-10-25T00:00:00+01', '2026-10-26T00:00:00+00'), 1.00000, 'so is the 25-hour day');
SELECT is(billing.uk_days('2026-03-01T00:00:00+00', '2026-04-01T00:00:00+01'), 31.00000, 'March has 31 UK days');
SELECT is(billing.uk_days('2026-06-01T00:00:00+01', '2026-06-01T12:00:00+01'), 0.50000, 'half a summer day');

-- A community to bill -------------------------------------------------------------------
INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-0000000000b1', 'TAPBILL', 'Billing');
INSERT INTO flows.sites (id, esco, code, name)
VALUES ('00000000-0000-4000-8000-0000000000b2', '00000000-0000-4000-8000-0000000000b1', 'S', 'Site');
INSERT INTO flows.properties (id, esco, site, plot, address) VALUES
    ('00000000-0000-4000-8000-0000000000b3', '00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000b2', 'P-1', '1 Lane'),
    ('00000000-0000-4000-8000-0000000000c3', '00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000b2', 'P-2', '2 Lane');
INSERT INTO flows.service_head_registry (id, esco, name) VALUES
    ('00000000-0000-4000-8000-0000000000b4', '00000000-0000-4000-8000-0000000000b1', 'H1'),
    ('00000000-0000-4000-8000-0000000000c4', '00000000-0000-4000-8000-0000000000b1', 'H2');
INSERT INTO flows.properties_service_head VALUES
    ('00000000-0000-4000-8000-0000000000b3', '00000000-0000-4000-8000-0000000000b4', '00000000-0000-4000-8000-0000000000b1'),
    ('00000000-0000-4000-8000-0000000000c3', '00000000-0000-4000-8000-0000000000c4', '00000000-0000-4000-8000-0000000000b1');
SELECT api.register_meter(serial => 'EML3100000001', hardware => 'C1.w', esco => '00000000-0000-4000-8000-0000000000b1',
    registers => '[{"element": "A", "start_time": "2026-01-01T00:00:00Z"}, {"element": "B", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m1 \gset
SELECT api.register_meter(serial => 'EML3100000002', hardware => 'B1.w', esco => '00000000-0000-4000-8000-0000000000b1',
    registers => '[{"element": "SINGLE", "start_time": "2026-01-01T00:00:00Z"}]') ->> 'id' AS m2 \gset
INSERT INTO flows.service_head_meter VALUES
    ('00000000-0000-4000-8000-0000000000b4', :'m1', '00000000-0000-4000-8000-0000000000b1'),
    ('00000000-0000-4000-8000-0000000000c4', :'m2', '00000000-0000-4000-8000-0000000000b1');
-- March 2026 (the clocks go forward on the 29th): a kWh that grows with each half hour
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(t),
                                array_agg(0.1 + (extract(epoch FROM t)::bigint / 1800 % 7) * 0.05), NULL, 'profile_log')
FROM flows.meter_registers r,
     generate_series(flows.uk_day_start('2026-03-01'), flows.uk_day_start('2026-04-01') - interval '30 minutes',
                     interval '30 minutes') t
WHERE r.meter_id IN (:'m1', :'m2');
SELECT register_id AS ra FROM flows.meter_registers WHERE meter_id = :'m1' AND element = 'A' \gset

-- Energy between any two instants equals the sum of their half hours ---------------------
SELECT is((SELECT import_kwh FROM billing.energy_between(:'ra', '2026-03-01T00:00:00Z', '2026-04-01T00:00:00+01')),
          (SELECT sum(import_kwh) FROM flows.register_interval_hh WHERE register_id = :'ra'),
          'a whole month: the daily rollup gives the half hours'' sum');
SELECT is((SELECT import_kwh FROM billing.energy_between(:'ra', '2026-03-10T07:30:00Z', '2026-03-29T13:00:00Z')),
          (SELECT sum(import_kwh) FROM flows.register_interval_hh WHERE register_id = :'ra'
           AND "timestamp" >= '2026-03-10T07:30:00Z' AND "timestamp" < '2026-03-29T13:00:00Z'),
          'part-days at both edges, across the clock change');
SELECT is((SELECT import_kwh FROM billing.energy_between(:'ra', '2026-03-12T10:00:00Z', '2026-03-12T11:30:00Z')),
          (SELECT sum(import_kwh) FROM flows.register_interval_hh WHERE register_id = :'ra'
           AND "timestamp" >= '2026-03-12T10:00:00Z' AND "timestamp" < '2026-03-12T11:30:00Z'),
          'within one day');
SELECT is((SELECT a.import_kwh + b.import_kwh
           FROM billing.energy_between(:'ra', '2026-03-01T00:00:00Z', '2026-03-17T09:30:00Z') AS a,
                billing.energy_between(:'ra', '2026-03-17T09:30:00Z', '2026-04-01T00:00:00+01') AS b),
          (SELECT import_kwh FROM billing.energy_between(:'ra', '2026-03-01T00:00:00Z', '2026-04-01T00:00:00+01')),
          'splitting at a half hour changes nothing');

-- Tariffs, customers, occupancy ------------------------------------------------------------
INSERT INTO billing.benchmark_tariffs VALUES ('south_west', '2026-01-01', 0.24500, 0.60970);
INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount)
VALUES ('00000000-0000-4000-8000-0000000000b1', '2026-01-01', 'south_west', 20);
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000b3', 'Olive Owner', 'olive@example.com',
                            move_in => '2026-01-01T00:00:00Z') AS olive \gset
SELECT (:'olive'::jsonb -> 'customer' ->> 'id') AS olive_id, (:'olive'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct1 \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000c3', 'Larry Landlord', role => 'owner',
                            move_in => '2026-01-01T00:00:00Z') -> 'customer' ->> 'id' AS larry \gset
SELECT api.onboard_customer('00000000-0000-4000-8000-0000000000c3', 'Tina Tenant', role => 'occupier',
                            move_in => '2026-01-01T00:00:00Z') AS tina \gset
SELECT (:'tina'::jsonb -> 'customer' ->> 'id') AS tina_id, (:'tina'::jsonb -> 'accounts' -> 0 ->> 'id') AS acct2 \gset
SELECT is(jsonb_array_length(:'olive'::jsonb -> 'customer_accounts'), 2, 'an owner-occupier is owner and occupier');
SELECT ok(:'olive'::jsonb ->> 'invite_token' ~ '^[0-9a-f]{32}$', 'and is invited with a token');
SELECT is((SELECT invite_expires_at::date FROM billing.customers WHERE id = :'olive_id'), (now() + interval '7 days')::date,
          'that expires in 7 days');
SELECT throws_ok(format($$ SELECT api.move_in('%s', '%s', '2026-02-01T00:00:00Z') $$, :'acct2', :'olive_id'),
                 '23P01', NULL, 'occupiers of an account never overlap');
SELECT throws_ok($$ UPDATE billing.customers SET status = 'live' WHERE fullname = 'Tina Tenant' $$,
                 '23514', NULL, 'pending cannot jump to live');
UPDATE billing.customers SET status = 'onboarding';
SELECT throws_like($$ UPDATE billing.customers SET status = 'live' WHERE fullname = 'Tina Tenant' $$,
                   '%details not confirmed, no payment method, no signed contract in force%',
                   'live needs confirmed details, a payment method and a signed contract');
SELECT * FROM api.move_out(:'acct2', '2026-03-18T14:30:00Z');
SELECT is((SELECT array_agg(customer_id::text || ':' || role || ':' || lower(period) ORDER BY lower(period))
           FROM billing.payer_periods WHERE account_id = :'acct2'),
          ARRAY[:'tina_id' || ':occupier:2026-01-01 00:00:00+00', :'larry' || ':owner:2026-03-18 14:30:00+00'],
          'the landlord pays from the tenant''s move-out');
SELECT is((api.generate_customer_tariffs('TAPBILL', '2026-01-01') ->> 'customer_tariffs_added')::int, 3,
          'every customer with an account gets the quarter''s rates');
SELECT is((api.generate_customer_tariffs('TAPBILL', '2026-01-01') ->> 'customer_tariffs_added')::int, 0,
          'and again adds nothing');
SELECT is((SELECT unit_rate FROM billing.customer_tariffs WHERE customer_id = :'olive_id'), 0.19600,
          'at the cap less the discount');
SELECT lives_ok(format($$ SELECT api.set_customer_discount('%s', 30, '2026-03-10T07:00:00Z') $$, :'olive_id'),
                'a discount changes mid-month');
SELECT throws_ok($$ SELECT api.generate_customer_tariffs('TAPBILL', '2026-02-01') $$, '22023', NULL,
                 'tariffs go by quarter');

-- The run -------------------------------------------------------------------------------
SELECT throws_like(format($$ SELECT api.create_billing_run('TAPBILL', '%s') $$, date_trunc('month', now())::date),
                   '%has not ended yet%', 'a month not over is refused');
SELECT id AS run FROM api.create_billing_run('TAPBILL', '2026-03-01') \gset
SELECT is((SELECT count(*)::int FROM billing.invoices WHERE run_id = :'run'), 3,
          'a statement per account and payer: the tenant and, after they left, the landlord');
SELECT is((SELECT count(*)::int FROM billing.all_invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id
           WHERE i.customer_id = :'olive_id' AND l.kind = 'energy'), 4,
          'the owner''s energy splits per element and at the discount change');
SELECT is((SELECT sum(l.amount) FROM billing.all_invoice_lines l WHERE l.invoice_id = i.id), i.net,
          'lines add up to the net') FROM billing.invoices i WHERE i.customer_id = :'olive_id';
SELECT is((SELECT sum(quantity) FROM billing.all_invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id
           WHERE i.customer_id = :'olive_id' AND l.kind = 'energy'),
          (SELECT sum(import_kwh) FROM flows.register_interval_hh h JOIN flows.meter_registers r USING (register_id)
           WHERE r.meter_id = :'m1'), 'every half hour of the month is billed once');
SELECT is_empty(format($$
    SELECT l.id FROM billing.all_invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id
    CROSS JOIN LATERAL billing.energy_between(l.register_id, l.period_from, l.period_to) AS e
    WHERE i.run_id = '%s' AND l.kind = 'energy'
      AND (l.quantity, l.half_hours, l.estimated_half_hours) IS DISTINCT FROM (e.import_kwh, e.half_hours::int, e.estimated_half_hours::int)
$$, :'run'), 'every energy line is what billing.energy_between says for its register and period');
SELECT ok(NOT EXISTS (SELECT FROM billing.invoices WHERE run_id = :'run' AND total <> net + vat
                      OR abs(vat - net * 0.05) > 0.005), 'VAT is 5% of the net, to the half penny');

SELECT is((SELECT count(*)::int FROM billing.invoices WHERE run_id = :'run' AND details = '{}'), 3,
          'a draft holds no printed details: they are frozen when it is issued');
CREATE TEMP TABLE draft_documents AS
SELECT id, details FROM api.invoices WHERE run_id = :'run';
SELECT is((SELECT count(*)::int FROM draft_documents
           WHERE details ->> 'account_number' IS NOT NULL AND jsonb_array_length(details -> 'usage_12_months') = 12
             AND details -> 'customer' ->> 'fullname' IS NOT NULL),
          3, 'a draft read through the API shows what it would print');

SELECT is((SELECT count(*)::int FROM billing.invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id
           WHERE i.run_id = :'run'), 0, 'a draft''s lines are its own, not rows of billing.invoice_lines');
SELECT throws_ok(format($$ INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description,
                                                              period_from, period_to, quantity, unit, rate,
                                                              amount_exact, amount)
                           SELECT esco, id, 9, 'standing_charge', 'x', period_from, period_to, 1, 'day', 0, 0, 0
                           FROM billing.invoices WHERE run_id = '%s' LIMIT 1 $$, :'run'),
                 '55000', NULL, 'nor can a draft have rows there');
CREATE TEMP TABLE draft_lines AS SELECT * FROM billing.all_invoice_lines
WHERE invoice_id IN (SELECT id FROM billing.invoices WHERE run_id = :'run');

SELECT * FROM api.finalise_billing_run(:'run');
SELECT set_eq($$ SELECT * FROM billing.invoice_lines $$, $$ SELECT * FROM draft_lines $$,
              'issuing writes the lines the drafts held into billing.invoice_lines, ids and all');
SELECT is((SELECT count(*)::int FROM billing.invoices WHERE run_id = :'run' AND lines IS NULL), 3,
          'and empties the drafts'' own');
SELECT is((SELECT count(*)::int FROM billing.invoices AS i JOIN draft_documents AS d USING (id)
           WHERE i.details = d.details), 3,
          'finalising freezes what the drafts showed');
SELECT is((SELECT array_agg(number ORDER BY number) FROM billing.invoices WHERE run_id = :'run'), ARRAY[1, 2, 3],
          'finalised statements are numbered 1, 2, 3');
SELECT throws_ok($$ UPDATE billing.invoices SET net = 0 WHERE number = 1 $$, '55000', NULL,
                 'a final statement never changes');
SELECT throws_ok($$ DELETE FROM billing.invoice_lines WHERE invoice_id IN (SELECT id FROM billing.invoices WHERE number = 1) $$,
                 '55000', NULL, 'nor do its lines');
SELECT throws_ok($$ INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description,
                                                       customer_tariff_id, period_from, period_to, quantity, unit,
                                                       rate, amount_exact, amount)
                    SELECT l.esco, l.invoice_id, 9, l.kind, l.description, l.customer_tariff_id, l.period_from,
                           l.period_to, 1, l.unit, 0, 0, 0
                    FROM billing.invoice_lines AS l JOIN billing.invoices AS i ON i.id = l.invoice_id
                    WHERE i.number = 1 AND l.kind = 'standing_charge' LIMIT 1 $$,
                 '55000', NULL, 'nor are lines added to it');

-- What a customer sees ----------------------------------------------------------------------
-- (a SQL login's claims come from flows.sql_login_claims: this session's, for this test)
INSERT INTO flows.sql_login_claims (login, claims)
VALUES (session_user, jsonb_build_object('esco', 'TAPBILL', 'customer', :'tina_id'));
SET LOCAL ROLE flows_customer;
SELECT is((SELECT array_agg(DISTINCT customer_id::text) FROM api.invoices), ARRAY[:'tina_id'],
          'a customer sees only their own statements');
SELECT is((SELECT count(*)::int FROM api.properties), 0, 'and, moved out, no longer their former home');
RESET ROLE;

-- A whole month comes from the monthly rollup, its estimated half hours from the days that have any:
-- February 2026, half of it estimated from reads, billed as its half hours say
SELECT flows.record_interval_hh(array_agg(r.register_id), array_agg(t), array_agg(0.3 + (extract(hour FROM t) % 5) * 0.1),
                                NULL, CASE WHEN p.part = 1 THEN 'reads' ELSE 'profile_log' END)
FROM flows.meter_registers r,
     (VALUES (1, flows.uk_day_start('2026-02-01'), flows.uk_day_start('2026-02-15')),
             (2, flows.uk_day_start('2026-02-15'), flows.uk_day_start('2026-03-01'))) AS p (part, from_time, to_time),
     generate_series(p.from_time, p.to_time - interval '30 minutes', interval '30 minutes') t
WHERE r.meter_id IN (:'m1', :'m2')
GROUP BY p.part;
SELECT is((SELECT count(*)::int FROM billing.statement_lines('00000000-0000-4000-8000-0000000000b1', '2026-02-01') l
           WHERE l.kind = 'energy' AND l.period_from = flows.uk_day_start('2026-02-01')
             AND l.period_to = flows.uk_day_start('2026-03-01') AND l.estimated_half_hours = 14 * 48
             AND l.half_hours = 28 * 48), 3,
          'February: a whole-month line per register, a half of its half hours estimated');
SELECT is_empty($$
    SELECT l.register_id FROM billing.statement_lines('00000000-0000-4000-8000-0000000000b1', '2026-02-01') l
    CROSS JOIN LATERAL billing.energy_between(l.register_id, l.period_from, l.period_to) AS e
    WHERE l.kind = 'energy'
      AND (l.quantity, l.half_hours, l.estimated_half_hours) IS DISTINCT FROM (e.import_kwh, e.half_hours::int, e.estimated_half_hours::int)
$$, 'a whole month billed from the monthly rollup is what the half hours say');

SELECT * FROM finish();
ROLLBACK;

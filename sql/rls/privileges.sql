-- Every grant in one place. Tables are reached through the security_invoker
-- views in `api`, so a role needs the privilege on the view and on what it
-- reads; row-level security (policies.sql) then decides which rows.
--
--   anon      api.health only
--   customer  reads own properties, meters, readings and property figures
--   analyst   reads everything of its ESCO (grafanareader is an analyst)
--   operator  analyst + writes configuration and topology of its ESCO
--   service   reads everything, writes meter state and readings (workers)
--   admin     everything, every ESCO

-- == Foundation: schemas, identity, ESCOs ==================================

GRANT USAGE ON SCHEMA api
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON SCHEMA flows
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Helpers that policies, views and column defaults call.
GRANT EXECUTE ON FUNCTION
    flows.jwt_claims(),
    flows.current_esco_id(),
    flows.customer_property_ids(),
    flows.uk_day(timestamptz),
    flows.uk_day_start(date),
    flows.uk_month(date),
    flows.is_iso_time(text)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT EXECUTE ON FUNCTION api.health()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- ESCOs: admins manage them; operators may rename theirs and set its threshold.
GRANT SELECT ON flows.escos, api.escos
    TO flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (name, low_balance_threshold) ON flows.escos, api.escos TO flows_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.escos, api.escos TO flows_admin;


-- == Topology and meters ===================================================

GRANT EXECUTE ON FUNCTION flows.tariff_field_limit(text), flows.tariff_is_valid(jsonb, boolean),
                          flows.is_three_phase(flows.meter_registry)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
-- What each model of meter is (read by is_three_phase): everyone reads, migrations write.
GRANT SELECT ON flows.hardware_kinds TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Configuration and topology: operators and admins write; analysts and workers read.
GRANT SELECT ON
    flows.sites, api.sites, api.sites_new,
    flows.properties, api.properties,
    flows.feeder_registry, api.feeder_registry,
    flows.service_head_registry, api.service_head_registry,
    flows.properties_service_head, api.properties_service_head,
    flows.service_head_meter, api.service_head_meter,
    flows.circuits, api.circuits,
    flows.circuit_register, api.circuit_register,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_analyst, flows_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    flows.sites, api.sites, api.sites_new,
    flows.properties, api.properties,
    flows.feeder_registry, api.feeder_registry,
    flows.service_head_registry, api.service_head_registry,
    flows.properties_service_head, api.properties_service_head,
    flows.service_head_meter, api.service_head_meter,
    flows.circuits, api.circuits,
    flows.circuit_register, api.circuit_register,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_admin, flows_operator;
-- What workers learn about a meter's make.
GRANT UPDATE (hardware, firmware_version) ON flows.meter_registry TO flows_service;
-- Customers: their properties and the meters behind them (rows: policies.sql).
GRANT SELECT ON
    flows.properties, api.properties,
    flows.properties_service_head,
    flows.service_head_meter,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_customer;

-- The digital twin: workers (and admins) write it, everyone signed in reads it.
GRANT SELECT ON flows.meter_shadows, api.meter_shadows, api.meter_shadows_tariffs
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE ON flows.meter_shadows TO flows_service, flows_admin;

-- Sync cadence: admins set it, others read it.
GRANT SELECT ON flows.meter_metrics, api.meter_metrics TO flows_operator, flows_analyst, flows_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.meter_metrics, api.meter_metrics TO flows_admin;

GRANT EXECUTE ON FUNCTION api.get_meters_for_cli(text, text)
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT EXECUTE ON FUNCTION api.register_meter(text, text, inet, text, integer, uuid, text, boolean, boolean,
                                            boolean, text, text, uuid, jsonb)
    TO flows_admin, flows_operator;


-- == Readings and meter history ============================================

-- Recording meter data: the workers, and admins (e.g. for passive digital twins).
-- record_interval_hh and record_register_reads are SECURITY DEFINER and the
-- only writers of readings and their rollups: nobody gets INSERT on those.
GRANT EXECUTE ON FUNCTION
    flows.record_meter_states(jsonb),
    flows.record_interval_hh(uuid[], timestamptz[], numeric[], numeric[], text),
    flows.record_register_reads(uuid[], timestamptz[], numeric[], text),
    flows.record_meter_events(uuid, timestamptz[], integer[], integer[]),
    flows.interval_hh_from_reads(uuid[], timestamptz[]),
    flows.estimate_interval_hh(),
    flows.check_meter_state(jsonb),
    flows.meter_state_rows(jsonb),
    flows.newer(anyelement, timestamptz, anyelement, timestamptz),
    flows.check_reading_times(timestamptz, timestamptz),
    flows.ensure_partitions(regclass, timestamptz, timestamptz),
    flows.maintain_partitions()
TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION api.record_meter_state(uuid, timestamptz, jsonb)
    TO flows_admin, flows_service;

-- Everyone signed in reads readings and history; workers (and admins) write history.
GRANT SELECT ON
    flows.register_import, api.register_import,
    flows.register_export, api.register_export,
    flows.register_interval_hh, api.register_interval_hh,
    flows.register_interval_daily, api.register_interval_daily,
    flows.register_interval_monthly, api.register_interval_monthly,
    flows.meter_prepay_balance, api.meter_prepay_balance,
    flows.meter_csq, api.meter_csq,
    flows.meter_voltage, api.meter_voltage,
    flows.meter_3p_voltage, api.meter_3p_voltage,
    flows.meter_health_history, api.meter_health_history,
    flows.meter_clock_drift, api.meter_clock_drift,
    flows.meter_tariff_history, api.meter_tariff_history,
    flows.meter_event_log, api.meter_event_log,
    flows.meter_event_log_type, api.meter_event_log_type
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT ON
    flows.meter_prepay_balance, flows.meter_csq, flows.meter_voltage, flows.meter_3p_voltage,
    flows.meter_health_history, flows.meter_clock_drift, flows.meter_tariff_history,
    flows.meter_event_log, flows.meter_event_log_type
TO flows_service, flows_admin;
-- Embedding a reading's register (computed relationships, rpc/readings.sql).
GRANT EXECUTE ON FUNCTION
    api.meter_registers(api.register_import),
    api.meter_registers(api.register_export),
    api.meter_registers(api.register_interval_hh)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;


-- == Monitoring and aggregates =============================================

GRANT SELECT ON
    api.meters_low_balance, api.meters_offline_all, api.meters_offline_recently, api.meters_clock_drift,
    api.register_interval_hh_missing,
    flows.circuit_ranges, flows.circuit_edge_half_hours, flows.circuit_daily_parts, flows.circuit_monthly_parts,
    api.circuit_interval_hh, api.circuit_interval_daily, api.circuit_interval_monthly,
    api.site_interval_hh, api.site_interval_daily, api.site_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON
    flows.property_registers,
    api.property_interval_hh, api.property_interval_daily, api.property_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;


-- == Commands and scheduling ===============================================

-- Operators (and admins) request meter operations; analysts watch them.
GRANT SELECT ON flows.meter_commands, api.meter_commands, api.tariff_rollouts
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON flows.meter_commands TO flows_admin, flows_operator, flows_service;
GRANT EXECUTE ON FUNCTION
    api.request_sync(uuid[], text[]),
    api.send_token(uuid, numeric, text, text, text),
    api.set_future_tariff(jsonb, uuid[], boolean),
    api.read_profile_log(uuid, timestamptz, timestamptz),
    api.set_clock(uuid),
    api.cancel_meter_command(uuid),
    flows.meters_to_command(uuid[], boolean),
    flows.queue_meter_command(uuid, text, jsonb, boolean, text),
    flows.requester()
TO flows_admin, flows_operator;
-- An index of pending top-ups (meter_commands_first_idx) evaluates it on every request.
GRANT EXECUTE ON FUNCTION flows.command_priority(text) TO flows_operator;

-- The workers: claim, renew, finish or fail commands; run the scheduler.
GRANT SELECT, INSERT, UPDATE ON flows.meter_metric_runs TO flows_service, flows_admin;
GRANT SELECT ON flows.meter_metric_runs TO flows_operator, flows_analyst;
GRANT EXECUTE ON FUNCTION
    flows.claim_meter_commands_v1(text, integer, interval),
    flows.claim_meter_commands_v2(text, integer, interval),
    flows.command_priority(text),
    flows.emop_session_patience(),
    flows.expire_meter_commands(),
    flows.fence_meter_command(uuid, text, integer),
    flows.renew_meter_command_leases_v1(text, uuid[], integer[], interval),
    flows.note_meter_command_progress_v1(uuid, text, integer, jsonb),
    flows.record_command_outcomes(uuid[], jsonb[], boolean),
    flows.notify_due_meter_commands(uuid[]),
    flows.finish_meter_commands_v1(text, jsonb),
    flows.finish_meter_command_v1(uuid, text, integer, jsonb),
    flows.goes_before(flows.meter_commands, text),
    flows.command_waiting_before(flows.meter_commands),
    flows.commands_waited_for_v1(text),
    flows.hand_back_meter_command(uuid),
    flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean),
    flows.fail_meter_command_v1(uuid, text, integer, text, boolean, interval),
    flows.release_meter_command_v1(uuid, text, integer),
    flows.retry_delay(integer, interval),
    flows.note_metrics_synced(uuid[], jsonb[]),
    flows.metric_interval(text),
    flows.schedule_syncs(),
    flows.schedule_profile_log_reads(integer),
    flows.schedule_tariff_checks(),
    flows.run_scheduler_v1(),
    flows.meter_command_queue_depth_v1(),
    flows.last_meter_event_time_v1(uuid),
    flows.lock_key(text)
TO flows_service, flows_admin;


-- == Billing: customers, accounts, tariffs, statements ======================
-- Operators run their ESCO's billing through the api RPCs (invoker rights,
-- so they need the table privileges the RPCs use); nobody writes statements,
-- runs or documents through the views. Customers read their own.

GRANT USAGE ON SCHEMA billing
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT EXECUTE ON FUNCTION
    flows.current_customer_id(),
    billing.round_half_up(numeric, integer),
    billing.included_vat_rate(),
    billing.net_of_vat(numeric),
    billing.discounted_rate(numeric, numeric),
    billing.vat_rate(text, numeric, numeric),
    billing.uk_day_fraction(timestamptz),
    billing.uk_days(timestamptz, timestamptz),
    billing.quarter_start(date),
    billing.month_range(date)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Reading: operators and analysts their ESCO, admins and workers all (rows: policies.sql).
GRANT SELECT ON
    billing.esco_billing, api.esco_billing,
    billing.customers, api.customers,
    billing.accounts, api.accounts,
    billing.customer_accounts, api.customer_accounts,
    billing.contracts, api.contracts,
    billing.payer_periods,
    billing.benchmark_tariffs, api.benchmark_tariffs,
    billing.microgrid_tariffs, api.microgrid_tariffs,
    billing.customer_tariffs, api.customer_tariffs,
    api.meters_with_incorrect_tariffs,
    billing.billing_runs, api.billing_runs,
    billing.invoices, api.invoices,
    billing.invoice_lines, billing.all_invoice_lines, api.invoice_lines,
    billing.invoice_documents, api.invoice_documents,
    api.monthly_usage, api.monthly_costs
TO flows_admin, flows_operator, flows_analyst, flows_service;
-- Customers: their own customer row, accounts, links, contracts, tariffs,
-- statements, usage and costs; the price cap is public.
GRANT SELECT ON
    billing.customers, api.customers,
    billing.accounts, api.accounts,
    billing.customer_accounts, api.customer_accounts,
    billing.contracts, api.contracts,
    billing.benchmark_tariffs, api.benchmark_tariffs,
    billing.microgrid_tariffs,
    billing.customer_tariffs, api.customer_tariffs,
    billing.invoices, api.invoices,
    billing.invoice_lines, billing.all_invoice_lines, api.invoice_lines,
    billing.invoice_documents, api.invoice_documents,
    api.monthly_usage, api.monthly_costs
TO flows_customer;

-- Writing: operators (and admins) manage customers, contracts and their
-- ESCO's contact details directly; the rest goes through the RPCs.
GRANT INSERT, UPDATE ON billing.customers, billing.contracts TO flows_admin, flows_operator;
GRANT INSERT (esco, fullname, email, phone, status, details_confirmed_at, payment_method),
      UPDATE (fullname, email, phone, status, details_confirmed_at, payment_method)
    ON api.customers TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON api.contracts TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.esco_billing TO flows_admin, flows_operator;
GRANT UPDATE (legal_name, address, email, phone, website, vat_number) ON api.esco_billing
    TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.accounts, billing.customer_accounts, billing.microgrid_tariffs,
                        billing.customer_tariffs
    TO flows_admin, flows_operator;
GRANT INSERT (esco, period_start, region, discount, emergency_credit, ecredit_availability, debt_recovery_rate),
      UPDATE (discount, emergency_credit, ecredit_availability, debt_recovery_rate)
    ON api.microgrid_tariffs TO flows_admin, flows_operator;
GRANT INSERT, UPDATE, DELETE ON billing.billing_runs, billing.invoices, billing.invoice_lines
    TO flows_admin, flows_operator;
-- The price cap is the regulator's: admins enter it.
GRANT INSERT, UPDATE, DELETE ON billing.benchmark_tariffs, api.benchmark_tariffs TO flows_admin;
-- Rendered documents: stored once by the renderer (workers or the CLI), never changed.
GRANT INSERT ON billing.invoice_documents TO flows_admin, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.customer_esco_code(uuid),
    billing.store_invoice_document(uuid, bytea, text),
    billing.invoices_to_render(integer),
    api.statement_document(uuid)
TO flows_admin, flows_service;
GRANT EXECUTE ON FUNCTION api.statement_document(uuid) TO flows_operator;
-- What a draft would print (api.invoices computes it for drafts; customers see no drafts).
GRANT EXECUTE ON FUNCTION billing.statement_details(uuid[])
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT EXECUTE ON FUNCTION api.statement_pdf(integer, text)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
-- Embedding lines in statements and back (computed relationships).
GRANT EXECUTE ON FUNCTION api.invoice_lines(api.invoices), api.invoices(api.invoice_lines)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON DOMAIN api."application/pdf"
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- The operator workflows.
GRANT EXECUTE ON FUNCTION
    billing.take_numbers(uuid, text, integer),
    billing.reads_at(uuid, timestamptz),
    billing.check_move_time(text, timestamptz),
    billing.link_customer(uuid, uuid, text, timestamptz),
    billing.esco_by_code(text),
    billing.check_quarter_start(date),
    billing.meter_tariff(billing.customer_tariffs, billing.microgrid_tariffs, timestamptz),
    billing.energy_between(uuid, timestamptz, timestamptz),
    billing.billed_periods(uuid, date, uuid[]),
    billing.statement_lines(uuid, date, uuid[]),
    billing.refuse_periods_without_tariff(text),
    billing.compute_statements(uuid, uuid[]),
    billing.issue_invoices(uuid, uuid[]),
    api.onboard_customer(uuid, text, text, text, text, timestamptz, uuid),
    api.move_out(uuid, timestamptz, jsonb),
    api.move_in(uuid, uuid, timestamptz, text),
    api.generate_customer_tariffs(text, date, numeric),
    api.set_customer_discount(uuid, numeric, timestamptz),
    api.roll_out_customer_tariffs(text, date),
    api.create_billing_run(text, date),
    api.finalise_billing_run(uuid),
    api.credit_invoice(uuid, text)
TO flows_admin, flows_operator;
-- Analysts may compute what a statement would say, without writing.
GRANT EXECUTE ON FUNCTION
    billing.energy_between(uuid, timestamptz, timestamptz),
    billing.billed_periods(uuid, date, uuid[]),
    billing.statement_lines(uuid, date, uuid[]),
    billing.refuse_periods_without_tariff(text)
TO flows_analyst, flows_service;


-- == Realtime ===============================================================

-- The gateway logs in as flows_authenticator, like PostgREST, and switches to
-- each subscriber's role and claims to read rows (the statements of
-- flows.realtime_query): it reads the change log (ids only) through these
-- functions and nothing else itself.
-- Writers need nothing: the capture triggers are SECURITY DEFINER.
GRANT USAGE ON SCHEMA flows TO flows_authenticator;
GRANT SELECT ON flows.realtime_relations TO flows_authenticator;
GRANT EXECUTE ON FUNCTION
    flows.realtime_head(),
    flows.realtime_pruned_through(),
    flows.realtime_changes(bigint, bigint),
    flows.realtime_column_type(text, text),
    flows.realtime_condition(text, jsonb, text[]),
    flows.realtime_query(text, jsonb, boolean),
    flows.realtime_snapshot(text, jsonb, jsonb, integer),
    flows.realtime_visible_escos(jsonb, uuid[]),
    flows.prune_realtime_events(interval)
TO flows_authenticator;
GRANT EXECUTE ON FUNCTION flows.prune_realtime_events(interval) TO flows_service, flows_admin;


-- == Operations: request checks, audit trail, API keys, monitoring =========

-- PostgREST runs the request check (db-pre-request) as the request's role, anonymous included.
GRANT USAGE ON SCHEMA flows TO flows_anon;
GRANT EXECUTE ON FUNCTION flows.check_request()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- The audit trail: written only by its trigger (a definer function); read by
-- admins (every ESCO) and operators (their ESCO). Nobody may change or remove
-- a row, the owner included.
GRANT SELECT ON flows.audit_log, api.audit_log TO flows_admin, flows_operator;
REVOKE UPDATE, DELETE, TRUNCATE ON flows.audit_log FROM flows_owner;

-- API keys: operators list and revoke their ESCO's; `flows api-key create` records them as an admin.
GRANT SELECT ON flows.api_keys, api.api_keys TO flows_admin, flows_operator;
GRANT INSERT ON flows.api_keys TO flows_admin;
GRANT UPDATE (revoked_at, revoked_by) ON flows.api_keys TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION api.revoke_api_key(uuid) TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION flows.create_api_key(text, text, text, timestamptz) TO flows_admin;

-- The exporter's login reads the monitoring views only.
GRANT USAGE ON SCHEMA monitoring TO flows_monitor;
GRANT SELECT ON monitoring.command_queue, monitoring.fleet, monitoring.command_outcomes, monitoring.tariff_rollouts
    TO flows_monitor;


-- == Meter operations: workers, drains, emop sessions =======================
-- Workers register, beat and stop (flows_service); administrators see them
-- and drain them (api.workers, api.drain_worker).
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.workers TO flows_service;
GRANT SELECT ON flows.workers, api.workers TO flows_admin;
GRANT UPDATE (drain_requested_at, drain_requested_by) ON flows.workers TO flows_admin;
GRANT EXECUTE ON FUNCTION flows.worker_state(flows.workers) TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION
    flows.register_worker_v1(text, text, integer, text, integer, text[], interval),
    flows.worker_heartbeat_v1(text, integer, bigint),
    flows.worker_stopped_v1(text, bigint)
TO flows_service;
GRANT EXECUTE ON FUNCTION api.drain_worker(uuid) TO flows_admin;

-- Operators' emop sessions: the emop CLI, logged in as a worker or an administrator.
GRANT EXECUTE ON FUNCTION
    flows.open_emop_session(text, text, text),
    flows.hold_emop_session(uuid, text, interval),
    flows.close_emop_session(uuid, text, text)
TO flows_service, flows_admin;

-- == Money in: payments, top-ups, gifts, solar credit, wallets, the ledger ==
-- Operators act through the api RPCs (invoker rights: they hold the table
-- privileges the RPCs use, within their ESCO by policies.sql), the workers
-- (payments job, meter commands) and the gateway (processor webhooks, as
-- flows_service) likewise. The ledger is insert-only for everyone, the owner
-- included. Customers read their payments, top-ups and wallet, and change their
-- wallet (its preference columns only).

GRANT SELECT ON
    billing.payment_methods, api.payment_methods,
    billing.wallets, api.wallets,
    billing.payments, api.payments,
    billing.refunds, api.refunds,
    billing.processor_events, api.processor_events,
    billing.gifts, api.gifts,
    billing.topups, api.topups,
    billing.solar_rates, api.solar_rates,
    billing.solar_installations, api.solar_installations,
    billing.solar_allocations, api.solar_allocations,
    billing.solar_credits, api.solar_credits,
    billing.ledger_accounts, api.ledger_accounts,
    billing.journals, api.journals,
    billing.journal_entries, api.journal_entries,
    api.account_balances, api.esco_books
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON billing.payments, api.payments, billing.topups, api.topups, billing.wallets, api.wallets
    TO flows_customer;

-- Writing money rows: operators and admins (RPCs, and the views below), the workers and the gateway.
GRANT INSERT, UPDATE ON billing.payments, billing.refunds, billing.topups, billing.gifts, billing.wallets,
                        billing.solar_credits
    TO flows_admin, flows_operator, flows_service;
GRANT INSERT, UPDATE ON billing.processor_events TO flows_admin, flows_service;
GRANT INSERT ON billing.journals, billing.journal_entries TO flows_admin, flows_operator, flows_service;
REVOKE UPDATE, DELETE, TRUNCATE ON billing.journals, billing.journal_entries FROM flows_owner;
-- The exporter's counts of money in (sql/schema/monitoring.sql).
GRANT SELECT ON monitoring.money_in, monitoring.processor_events, monitoring.billing TO flows_monitor;
-- (PostgreSQL checks a foreign key by locking the row it points at, FOR KEY SHARE, as the owner of its
-- table, which needs an UPDATE privilege: entries and reversals point at journals, so the owner keeps it
-- on journals.id alone; the append-only trigger refuses any UPDATE all the same.)
GRANT UPDATE (id) ON billing.journals TO flows_owner;
-- Payment methods and solar installations: operators write the views directly.
GRANT INSERT, UPDATE ON billing.payment_methods, billing.solar_rates, billing.solar_installations,
                        billing.solar_allocations
    TO flows_admin, flows_operator;
GRANT DELETE ON billing.solar_allocations, api.solar_allocations TO flows_admin, flows_operator;
GRANT INSERT (esco, customer_id, provider, kind, processor_customer, processor_method, label),
      UPDATE (label, status)
    ON api.payment_methods TO flows_admin, flows_operator;
GRANT INSERT (esco, effective_from, pence_per_kwp_year), UPDATE (pence_per_kwp_year)
    ON api.solar_rates TO flows_admin, flows_operator;
GRANT INSERT (esco, property, mcs_certificate, declared_net_capacity_kwp, commissioned_on, decommissioned_on),
      UPDATE (declared_net_capacity_kwp, commissioned_on, decommissioned_on)
    ON api.solar_installations TO flows_admin, flows_operator;
GRANT INSERT (esco, installation_id, property, ratio), UPDATE (ratio)
    ON api.solar_allocations TO flows_admin, flows_operator;
-- A customer's wallet: its preferences (api.set_wallet).
GRANT INSERT (esco, account_id, meter_id, target_balance, minimum_balance, auto_top_up, payment_timing,
              regular_amount, payment_day),
      UPDATE (target_balance, minimum_balance, auto_top_up, payment_timing, regular_amount, payment_day)
    ON billing.wallets TO flows_customer;

-- What money events run (RPCs, the command mirror, statement postings), whoever causes them.
GRANT EXECUTE ON FUNCTION
    flows.requester(),
    billing.payer_at(uuid, timestamptz),
    billing.default_payment_method(uuid),
    billing.check_amount(text, numeric, numeric, numeric),
    billing.payment_status_rank(text),
    billing.stripe_payment_status(text, jsonb),
    billing.payment_received(billing.payments),
    billing.apply_payment_intent(uuid, jsonb, text),
    billing.refund_succeeded(uuid),
    billing.apply_refund_object(uuid, jsonb),
    billing.give_gift(uuid),
    billing.generate_solar_credits(uuid, date),
    billing.topup_problem(billing.accounts, boolean),
    billing.token_failure_kind(text),
    billing.create_topup(uuid, uuid, uuid, numeric, text, uuid, uuid, uuid, uuid, text, text),
    billing.topup_for_payment(billing.payments),
    billing.start_topup_round(uuid, boolean),
    billing.mirror_topup_command(flows.meter_commands),
    billing.cancel_topup(uuid, text),
    billing.post_journal(uuid, text, text, jsonb, uuid, uuid, uuid, uuid, uuid, uuid),
    billing.reverse_journal(uuid, text),
    billing.post_statement_charges(uuid[]),
    billing.check_journal_balanced(uuid),
    billing.regular_payment_times(billing.wallets, timestamptz, timestamptz),
    billing.wallet_payer(billing.wallets)
TO flows_admin, flows_operator, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.payable_account(uuid),
    billing.topup_for_update(uuid),
    billing.topup_account(uuid),
    api.record_payment(uuid, numeric, text, text, timestamptz, text),
    api.schedule_payment(uuid, numeric, timestamptz, text, uuid),
    api.cancel_payment(uuid, text),
    api.refund_payment(uuid, text, numeric),
    api.retry_topup(uuid),
    api.cancel_topup(uuid, text),
    api.create_adjustment_topup(uuid, numeric, text),
    api.create_gift(uuid, numeric, text, timestamptz),
    api.cancel_gift(uuid, text),
    api.generate_solar_credits(text, date),
    api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid)
TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION
    api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid),
    billing.topup_problem(billing.accounts, boolean),
    billing.check_amount(text, numeric, numeric, numeric)
TO flows_customer;
-- The payments job (workers) and the webhook (the gateway, as flows_service).
GRANT EXECUTE ON FUNCTION
    billing.apply_intent_event(text, jsonb),
    billing.apply_refund_event(jsonb),
    billing.apply_processor_event_v1(text, jsonb),
    billing.claim_payment_work_v1(text, integer, interval, interval),
    billing.fence_payment(uuid, text),
    billing.record_payment_intent_v1(uuid, text, jsonb, boolean),
    billing.fail_payment_work_v1(uuid, text, text, boolean, interval),
    billing.claim_refund_work_v1(text, integer, interval),
    billing.fence_refund(uuid, text),
    billing.record_refund_v1(uuid, text, jsonb),
    billing.fail_refund_work_v1(uuid, text, text, boolean, interval),
    billing.run_money_pass_v1(interval, interval)
TO flows_admin, flows_service;
-- == Notifications: rules, outbox, settings, preferences ====================
-- The rules run and the senders send as the workers (flows_service); operators
-- watch their ESCO's outbox, retry dead letters and cancel what is not sent,
-- and set their ESCO's settings and their customers' preferences; customers
-- set their own preferences; everyone signed in reads the rules.

GRANT EXECUTE ON FUNCTION
    flows.are_emails(text[]),
    flows.are_phone_numbers(text[]),
    flows.phone_e164(text),
    flows.after_quiet_hours(timestamptz, time, time)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT SELECT ON flows.notification_rules, api.notification_rules
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (enabled, lookback) ON flows.notification_rules, api.notification_rules TO flows_admin;
GRANT UPDATE (last_run_at, last_queued, last_error) ON flows.notification_rules TO flows_service, flows_admin;

GRANT SELECT ON flows.notification_settings, api.notification_settings
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT UPDATE (operator_emails, operator_phones, offline_hours, sms_quiet_from, sms_quiet_to)
    ON flows.notification_settings, api.notification_settings TO flows_admin, flows_operator;
-- (a new ESCO's row is made by its creator, an admin: flows.create_notification_settings)
GRANT INSERT ON flows.notification_settings TO flows_admin;

GRANT SELECT ON flows.notification_preferences, api.notification_preferences
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT, UPDATE, DELETE ON flows.notification_preferences, api.notification_preferences
    TO flows_admin, flows_operator, flows_customer;

GRANT SELECT ON flows.notification_outbox, api.notifications
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON flows.notification_outbox TO flows_service, flows_admin;
GRANT UPDATE (status, attempts, send_after, last_error) ON flows.notification_outbox TO flows_operator;
GRANT EXECUTE ON FUNCTION api.retry_notification(uuid), api.cancel_notification(uuid)
    TO flows_admin, flows_operator;

-- The rules' memory: the workers (and admins) only.
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.notification_balance_watch, flows.notification_offline_meters
    TO flows_service, flows_admin;

-- Running the rules and sending (the workers).
GRANT EXECUTE ON FUNCTION
    flows.meter_payer(uuid, timestamptz),
    flows.low_balance_events(timestamptz, timestamptz),
    flows.statement_ready_events(timestamptz, timestamptz),
    flows.meter_offline_events(timestamptz, timestamptz),
    flows.tariff_rollout_failed_events(timestamptz, timestamptz),
    flows.payment_due_events(timestamptz, timestamptz),
    flows.payment_failed_events(timestamptz, timestamptz),
    flows.topup_applied_events(timestamptz, timestamptz),
    flows.queue_notifications(text, flows.notification_event[]),
    flows.run_notification_rules_v1(),
    flows.claim_notifications_v1(text, text, integer, interval),
    flows.fence_notification(uuid, text, integer),
    flows.record_notification_sent_v1(uuid, text, integer, text),
    flows.record_notification_failed_v1(uuid, text, integer, text, boolean, interval),
    flows.release_notifications_v1(text, uuid[], integer[]),
    flows.notification_attachment_v1(uuid)
TO flows_service, flows_admin;

GRANT SELECT ON monitoring.notifications TO flows_monitor;
-- The exporter's reconciliation counts (sql/schema/monitoring.sql): the exceptions through their definer function.
GRANT SELECT ON monitoring.reconciliation, monitoring.bank_queue TO flows_monitor;
GRANT EXECUTE ON FUNCTION monitoring.unresolved_reconciliation_exceptions() TO flows_monitor;

-- == Personal data (GDPR) ===================================================
-- The export, erasure and retention functions are SECURITY DEFINER and check
-- the caller themselves (schema/gdpr/access.sql); the api functions and
-- views over them are granted to who may ask.

GRANT USAGE ON SCHEMA gdpr
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Consents: everyone who sees a customer sees theirs; the customer and the
-- operators of their ESCO record them (rpc/record_consent); the half-hourly
-- gate reads them as the customer.
GRANT SELECT ON gdpr.consents, api.consents
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT ON gdpr.consents TO flows_admin, flows_operator, flows_customer;
GRANT EXECUTE ON FUNCTION
    gdpr.has_consent(uuid, text),
    gdpr.half_hourly_periods()
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT EXECUTE ON FUNCTION api.record_consent(boolean, text, uuid) TO flows_admin, flows_operator, flows_customer;
GRANT EXECUTE ON FUNCTION flows.requester() TO flows_customer;  -- who recorded a consent

-- The export: admins, workers, operators (their ESCO's customers), the customer themself.
GRANT EXECUTE ON FUNCTION gdpr.customer_data(uuid), api.customer_data_export(uuid)
    TO flows_admin, flows_operator, flows_service, flows_customer;
-- Retention dates: whoever sees the customer.
GRANT EXECUTE ON FUNCTION gdpr.retention(uuid)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT SELECT ON api.data_retention TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Erasure: admins and operators (their ESCO's customers); the erasures are read like the audit trail.
GRANT EXECUTE ON FUNCTION gdpr.erase_customer(uuid, text), api.erase_customer(uuid, text)
    TO flows_admin, flows_operator;
GRANT SELECT ON gdpr.erasures, api.erasures TO flows_admin, flows_operator;
-- The guard of final statements asks whether an erasure is under way (whoever may write statements).
GRANT EXECUTE ON FUNCTION gdpr.erasing(uuid, uuid) TO flows_admin, flows_operator, flows_service;
-- The one change the audit trail allows: erasure (run as the owner) pseudonymises row copies and actors.
GRANT UPDATE (before, after, actor_sub) ON flows.audit_log TO flows_owner;

-- == Bank statements and matching ==========================================
-- Operators set up the ESCO's bank accounts (and their CSV mapping) through
-- the view, import statements and work the queue through the api RPCs (invoker
-- rights: they hold the table privileges those use, within their ESCO);
-- analysts read. Customers see none of it.
GRANT SELECT ON
    billing.bank_accounts, api.bank_accounts,
    billing.bank_statements, api.bank_statements,
    billing.bank_transactions, api.bank_transactions, api.bank_queue,
    billing.bank_decisions, billing.bank_matches, api.bank_decisions,
    billing.processor_payouts, billing.processor_payout_payments, api.processor_payouts
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON billing.bank_accounts TO flows_admin, flows_operator;
GRANT INSERT (esco, name, bank_name, sort_code, account_number, iban, processor_counterparty, payout_fee_rate,
              payout_fee_fixed, csv_mapping),
      UPDATE (bank_name, processor_counterparty, payout_fee_rate, payout_fee_fixed, csv_mapping)
    ON api.bank_accounts TO flows_admin, flows_operator;
GRANT INSERT ON billing.bank_statements, billing.bank_decisions, billing.bank_matches, billing.processor_payouts,
                billing.processor_payout_payments
    TO flows_admin, flows_operator;
GRANT INSERT, UPDATE ON billing.bank_transactions TO flows_admin, flows_operator;
GRANT UPDATE (entries_added) ON billing.bank_statements TO flows_admin, flows_operator;
GRANT EXECUTE ON FUNCTION
    billing.iban_valid(text),
    billing.csv_mapping_problem(jsonb),
    billing.check_bank_account(),
    billing.bank_reference_keys(text),
    billing.account_key(text),
    billing.bank_account_named(text, text),
    billing.decide_bank_transaction(uuid, text, jsonb, text, text),
    billing.match_bank_transaction(uuid, jsonb, text),
    billing.payout_batch(billing.bank_accounts, date, numeric),
    billing.match_bank_transactions(uuid),
    billing.bank_entry_problem(jsonb),
    billing.describe_bank_entry(bigint, date, numeric, text, text),
    billing.import_bank_statement(billing.bank_accounts, text, text, text, integer, jsonb),
    api.import_bank_statement(text, jsonb, text),
    api.rematch_bank_transactions(uuid),
    api.match_bank_transaction_to_account(uuid, uuid, text),
    api.match_bank_transaction_to_payment(uuid, uuid, text),
    api.match_bank_transaction_to_payout(uuid, uuid[], text),
    api.split_bank_transaction(uuid, jsonb, text),
    api.dismiss_bank_transaction(uuid, text)
TO flows_admin, flows_operator;


-- == Reconciliation ==========================================================
-- Computed by invoker functions from what the caller may read; operators and
-- admins record decisions, settings and debts (analysts read).
GRANT SELECT ON billing.reconciliation_settings, api.reconciliation_settings, billing.prepay_debts, api.prepay_debts,
                billing.reconciliation_decisions, billing.meter_tariff_periods,
                api.reconciliation_exceptions, api.reconciliation_days, api.shadow_ledger_days
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON billing.reconciliation_settings, billing.prepay_debts, billing.reconciliation_decisions
    TO flows_admin, flows_operator;
GRANT INSERT (esco, topup_grace, tolerance), UPDATE (topup_grace, tolerance)
    ON api.reconciliation_settings TO flows_admin, flows_operator;
GRANT INSERT (meter_id, esco, amount, as_of, notes), UPDATE (amount, as_of, notes)
    ON api.prepay_debts TO flows_admin, flows_operator;
-- The shadow ledger's days: written by their triggers and the rollups' writers only (definers).
GRANT SELECT ON flows.meter_ledger_days TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT EXECUTE ON FUNCTION
    billing.prepay_daily_charges(uuid, date, date, uuid[]),
    billing.split_at(timestamptz, numeric, timestamptz, numeric, timestamptz),
    billing.shadow_ledger_intervals(uuid, date, date, uuid[], date[]),
    billing.shadow_ledger(uuid, date, date),
    billing.reconciliation_findings(uuid, date, date),
    billing.reconciliation_exceptions(uuid, date, date),
    billing.reconciliation_summary(uuid, date, date),
    api.reconciliation(text, date)
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT EXECUTE ON FUNCTION api.decide_reconciliation_exception(text, text, text, text) TO flows_admin, flows_operator;
-- (the exceptions ask whether an account takes top-ups, for analysts too)
GRANT EXECUTE ON FUNCTION billing.topup_problem(billing.accounts, boolean) TO flows_analyst;

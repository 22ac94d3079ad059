-- Rollback of 0007_billing.
DROP VIEW api.monthly_costs, api.monthly_usage, api.invoice_documents, api.invoice_lines, api.meters_with_incorrect_tariffs,
          api.esco_billing;
DROP FUNCTION api.statement_pdf(integer, text), api.statement_document(uuid), api.credit_invoice(uuid, text),
              api.finalise_billing_run(uuid), api.create_billing_run(text, date),
              api.roll_out_customer_tariffs(text, date), api.set_customer_discount(uuid, numeric, timestamptz),
              api.generate_customer_tariffs(text, date, numeric), api.move_in(uuid, uuid, timestamptz, text),
              api.move_out(uuid, timestamptz, jsonb),
              api.onboard_customer(uuid, text, text, text, text, timestamptz, uuid);
DROP DOMAIN api."application/pdf";
DROP VIEW api.invoices, api.billing_runs, api.customer_tariffs, api.microgrid_tariffs, api.benchmark_tariffs,
          api.contracts, api.customer_accounts, api.accounts, api.customers;

-- Customers see properties through the "properties" claim again.
CREATE OR REPLACE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(array_agg(p.value::uuid), '{}')
    FROM pg_catalog.jsonb_array_elements_text(
        CASE WHEN pg_catalog.jsonb_typeof(flows.jwt_claims() -> 'properties') = 'array'
             THEN flows.jwt_claims() -> 'properties' ELSE '[]' END) AS p (value)
$$;
COMMENT ON FUNCTION flows.customer_property_ids() IS 'Property ids in the "properties" claim of a customer token.';
DROP SCHEMA billing CASCADE;
DROP INDEX flows.meter_registers_meter_idx;
DROP FUNCTION flows.current_customer_id();

-- Rollback of 0013_gdpr.
SET LOCAL ROLE flows_owner;
REVOKE UPDATE (before, after, actor_sub) ON flows.audit_log FROM flows_owner;
REVOKE EXECUTE ON FUNCTION flows.requester() FROM flows_customer;
DROP POLICY register_interval_hh_customer ON flows.register_interval_hh;
DROP POLICY register_import_customer ON flows.register_import;
DROP POLICY register_export_customer ON flows.register_export;
ALTER POLICY register_import_visible_register ON flows.register_import
    TO flows_operator, flows_analyst, flows_customer;
ALTER POLICY register_export_visible_register ON flows.register_export
    TO flows_operator, flows_analyst, flows_customer;
ALTER POLICY register_interval_hh_visible_register ON flows.register_interval_hh
    TO flows_operator, flows_analyst, flows_customer;
DROP VIEW api.erasures, api.data_retention;
DROP FUNCTION api.record_consent(boolean, text, uuid);
DROP VIEW api.consents;
DROP FUNCTION api.erase_customer(uuid, text), api.customer_data_export(uuid);
CREATE OR REPLACE FUNCTION billing.guard_final_invoice() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'final' AND NEW.status = 'void'
       AND (to_jsonb(NEW) - 'status') = (to_jsonb(OLD) - 'status') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% % is % and cannot be changed', replace(OLD.kind, '_', ' '), OLD.number, OLD.status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'correct a final statement with a credit note (rpc/credit_invoice)';
END
$$;
CREATE OR REPLACE FUNCTION flows.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; record a correction as a new change';
END
$$;
DROP TRIGGER processor_events_erased_payer ON billing.processor_events;
DROP TABLE gdpr.erasures;  -- with its audit triggers
DROP SCHEMA gdpr CASCADE;  -- the registry, consents and their functions: nothing outside gdpr depends on them now

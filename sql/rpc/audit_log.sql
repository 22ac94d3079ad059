CREATE VIEW api.audit_log WITH (security_invoker = true) AS
SELECT id, at, esco, relation, operation, row_key, before, after, actor_sub, actor_role, actor_esco, api_key,
       request_id, transaction_id
FROM flows.audit_log;
COMMENT ON VIEW api.audit_log IS
    'Who changed what and when: configuration, commands (top-ups, tariffs), logins and API keys of your ESCO. '
    'Filter e.g. ?relation=eq.flows.meter_registry&row_key->>id=eq.<meter id>&order=id.desc.';
COMMENT ON COLUMN api.audit_log.row_key IS 'Primary key of the changed row, e.g. {"id": "..."}.';
COMMENT ON COLUMN api.audit_log.before IS 'The row before the change (null for an insert).';
COMMENT ON COLUMN api.audit_log.after IS 'The row after the change (null for a delete).';
COMMENT ON COLUMN api.audit_log.actor_sub IS 'The token''s subject (sub claim): who made the change.';
COMMENT ON COLUMN api.audit_log.request_id IS 'X-Request-Id of the HTTP request, to find it in the proxy''s logs.';

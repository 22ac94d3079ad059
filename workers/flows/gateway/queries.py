"""The SQL the gateway runs, by name (sql/schema/realtime.sql has the functions)."""

HEAD = "SELECT flows.realtime_head()"
PRUNED_THROUGH = "SELECT flows.realtime_pruned_through()"
RELATIONS = "SELECT relation, key_column FROM flows.realtime_relations"
CHANGES = ("SELECT commit_position, committed_at, relation, key, esco, may_leave, inserted"
           " FROM flows.realtime_changes($1, $2)")
STATEMENT = 'SELECT query, "values" FROM flows.realtime_query($1, $2::jsonb, $3)'
# Who the next statements run as: exactly what PostgREST does for a request (the gateway's
# session user is flows_authenticator, so flows.jwt_claims() reads these claims).
AS_AUDIENCE = "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)"
AS_GATEWAY = "SELECT set_config('role', 'none', true), set_config('request.jwt.claims', '', true)"
SNAPSHOT = "SELECT key, row_data FROM flows.realtime_snapshot($1, $2::jsonb, $3::jsonb, $4)"
VISIBLE_ESCOS = "SELECT audience, esco FROM flows.realtime_visible_escos($1::jsonb, $2::uuid[])"
PRUNE = "SELECT flows.prune_realtime_events(make_interval(secs => $1))"
LISTEN_CHANNEL = "flows_realtime"
# Processor webhooks are applied as the workers' role, whoever logged in (a processor has no JWT).
AS_PROCESSOR = "SELECT set_config('role', 'flows_service', true), set_config('request.jwt.claims', $1, true)"
APPLY_PROCESSOR_EVENT = "SELECT outcome, detail, payment_id FROM billing.apply_processor_event_v1($1, $2::jsonb)"
# Bank statements (POST /bank/statements): as the caller's own role and claims, like PostgREST.
BANK_ACCOUNT = "SELECT to_jsonb(b)::text FROM billing.bank_account_named($1, $2) AS b"
IMPORT_BANK_STATEMENT = "SELECT api.import_bank_statement($1, $2::jsonb, $3)::text"

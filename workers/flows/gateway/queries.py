"""The SQL the gateway runs, by name (sql/schema/realtime.sql has the functions)."""

HEAD = "SELECT flows.realtime_head()"
PRUNED_THROUGH = "SELECT flows.realtime_pruned_through()"
RELATIONS = "SELECT relation, key_column FROM flows.realtime_relations"
CHANGES = ("SELECT commit_position, committed_at, relation, key, esco, may_leave, inserted"
           " FROM flows.realtime_changes($1, $2)")
VISIBLE = "SELECT audience, key, row_data, matches FROM flows.realtime_visible($1, $2, $3::jsonb, $4)"
SNAPSHOT = "SELECT key, row_data FROM flows.realtime_snapshot($1, $2::jsonb, $3::jsonb, $4)"
VISIBLE_ESCOS = "SELECT audience, esco FROM flows.realtime_visible_escos($1::jsonb, $2::uuid[])"
PRUNE = "SELECT flows.prune_realtime_events(make_interval(secs => $1))"
LISTEN_CHANNEL = "flows_realtime"

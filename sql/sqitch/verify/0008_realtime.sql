-- Verify flows:0008_realtime
BEGIN;
DO $$
BEGIN
    PERFORM xid, relation, key, op, esco FROM flows.realtime_events WHERE false;
    PERFORM xid, position, committed_at FROM flows.realtime_commits WHERE false;
    PERFORM pruned_through FROM flows.realtime_state WHERE false;
    ASSERT (SELECT count(*) FROM flows.realtime_relations
            WHERE relation IN ('meter_shadows', 'meter_commands', 'tariff_rollouts', 'meter_registry')) = 4,
        'the followed relations are not registered';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger
            WHERE tgname LIKE '%\_realtime\_%' AND tgfoid = 'flows.capture_realtime_changes()'::regprocedure) = 15,
        'capture triggers missing';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgname = 'realtime_commits_number' AND tgdeferrable),
        'commits are not numbered at commit time';
    ASSERT pg_catalog.has_function_privilege('flows_authenticator',
        'flows.realtime_query(text, jsonb, boolean)', 'EXECUTE'), 'the gateway cannot read rows';
    PERFORM flows.realtime_head();
END
$$;
ROLLBACK;

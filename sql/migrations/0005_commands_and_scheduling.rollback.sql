-- Rollback of 0005_commands_and_scheduling.
DROP FUNCTION api.cancel_meter_command(uuid), api.set_clock(uuid),
              api.read_profile_log(uuid, timestamptz, timestamptz), api.set_future_tariff(jsonb, uuid[], boolean),
              api.send_token(uuid, numeric, text, text, text), api.request_sync(uuid[], text[]);
DROP VIEW api.tariff_rollouts, api.meter_commands;
DROP FUNCTION flows.requester(), flows.meters_to_command(uuid[], boolean);
DROP FUNCTION flows.run_scheduler(), flows.schedule_tariff_checks(), flows.schedule_profile_log_reads(integer),
              flows.schedule_syncs(), flows.note_metrics_synced(uuid, jsonb), flows.metric_interval(text);
DROP TABLE flows.meter_metric_runs;
DROP FUNCTION flows.release_meter_command(uuid, text, integer), flows.retry_delay(integer, interval),
              flows.fail_meter_command(uuid, text, integer, text, boolean, interval),
              flows.finish_meter_command(uuid, text, integer, jsonb),
              flows.note_meter_command_progress(uuid, text, integer, jsonb),
              flows.renew_meter_command_leases(text, uuid[], integer[], interval),
              flows.fence_meter_command(uuid, text, integer),
              flows.claim_meter_commands(text, integer, interval);
DROP TABLE flows.meter_commands;
DROP FUNCTION flows.notify_meter_commands();
ALTER TABLE flows.escos DROP COLUMN max_running_commands;

-- Rollback of 0023_sync_speed: every insert into payments, refunds and the outbox wakes their job (as 0011 and
-- 0012 made it); every inserted balance recomputes its days, as 0021_daily_ledger made it.
SET LOCAL ROLE flows_owner;

CREATE OR REPLACE FUNCTION flows.meter_ledger_days_follow_balances() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- whoever writes the rows (a worker, an operator) keeps the days, which nobody writes directly
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.refresh_meter_ledger_days_of_balances(array_agg(n.meter_id), array_agg(n."timestamp"))
    FROM new_rows AS n;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION flows.meter_ledger_days_follow_balances() IS
    'Trigger: keeps flows.meter_ledger_days exact when balance observations are inserted.';
CREATE OR REPLACE FUNCTION flows.add_to_interval_rollups(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_estimated    boolean
) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH daily AS (
        SELECT x.register_id, flows.uk_day(x.ts) AS day, coalesce(sum(x.import_kwh), 0) AS import_kwh,
               coalesce(sum(x.export_kwh), 0) AS export_kwh, count(*) AS intervals
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS x (register_id, ts, import_kwh, export_kwh)
        GROUP BY 1, 2
    ),
    added_days AS (
        INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
        SELECT daily.*, CASE WHEN p_estimated THEN daily.intervals ELSE 0 END FROM daily ORDER BY register_id, day
        ON CONFLICT (register_id, day) DO UPDATE
            SET import_kwh = d.import_kwh + excluded.import_kwh,
                export_kwh = d.export_kwh + excluded.export_kwh,
                intervals = d.intervals + excluded.intervals,
                estimated = d.estimated + excluded.estimated
    )
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT register_id, flows.uk_month(day), sum(import_kwh), sum(export_kwh), sum(intervals)
    FROM daily GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = m.import_kwh + excluded.import_kwh,
            export_kwh = m.export_kwh + excluded.export_kwh,
            intervals = m.intervals + excluded.intervals;
    -- The ledger's days whose last observation's tail the new half hours may reach (a day of the batch's meters,
    -- from its first day to its last, with half hours from its last observation's on): recomputed. (Half hours
    -- estimated from reads end before the read, which comes with its balance: they do not.)
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM flows.meter_ledger_days AS s
    WHERE s.meter_id IN (SELECT r.meter_id FROM flows.meter_registers AS r WHERE r.register_id = ANY (p_register_ids))
      AND s.day BETWEEN (SELECT flows.uk_day(min(t)) FROM unnest(p_timestamps) AS t)
                    AND (SELECT flows.uk_day(max(t)) FROM unnest(p_timestamps) AS t)
      AND EXISTS (SELECT FROM flows.meter_registers AS r
                  JOIN flows.register_interval_hh AS h ON h.register_id = r.register_id
                  WHERE r.meter_id = s.meter_id AND h."timestamp" > s.last_at - interval '30 minutes'
                    AND h."timestamp" < flows.uk_day_start(s.day + 1));
END;
DROP FUNCTION flows.append_to_meter_ledger_days(uuid[], timestamptz[], numeric[]);
DROP TRIGGER payments_notify ON billing.payments;
DROP TRIGGER refunds_notify ON billing.refunds;
CREATE OR REPLACE FUNCTION billing.notify_processor_work() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('billing_processor_work', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER payments_notify AFTER INSERT ON billing.payments
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
CREATE TRIGGER refunds_notify AFTER INSERT ON billing.refunds
    FOR EACH STATEMENT EXECUTE FUNCTION billing.notify_processor_work();
DROP TRIGGER notification_outbox_doorbell ON flows.notification_outbox;
CREATE OR REPLACE FUNCTION flows.ring_notification_senders() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('flows_notifications', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_outbox_doorbell AFTER INSERT ON flows.notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION flows.ring_notification_senders();

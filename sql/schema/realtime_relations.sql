-- The api relations that can be followed live (flows gateway), one line each.
-- A relation that is one table's rows with an esco column is one line:
--     CALL flows.follow_realtime('payments', 'billing.payments', 'id');
-- A relation derived from other tables, or whose visibility depends on other
-- tables, adds rows to flows.realtime_sources (see meter_shadows below).

CALL flows.follow_realtime('meter_commands', 'flows.meter_commands', 'id',
                           p_notes => 'Commands and their progress: status, result, last_error.');

CALL flows.follow_realtime('meter_registry', 'flows.meter_registry', 'id',
                           p_notes => 'Meter configuration (serial, name, mode).');

-- Money in (customers follow their own: the gateway reads rows as each subscriber).
CALL flows.follow_realtime('payments', 'billing.payments', 'id',
                           p_notes => 'Payments: status, received_at, refunds.');
CALL flows.follow_realtime('topups', 'billing.topups', 'id',
                           p_notes => 'Top-ups: status, why one waits, when it was credited on the meter.');
CALL flows.follow_realtime('wallets', 'billing.wallets', 'id',
                           p_notes => 'Wallet preferences: target and minimum balance, auto top-up, regular payments.');

-- Tariff rollouts: one row per batch of set_future_tariff commands.
INSERT INTO flows.realtime_relations (relation, key_column, notes)
VALUES ('tariff_rollouts', 'rollout_id', 'How far each tariff rollout got (confirmed, failed, summary).'),
       ('meter_shadows', 'id', 'Last known state of each meter: balance, health, reads.');

INSERT INTO flows.realtime_sources (relation, source, operation, changes, scope) VALUES
    ('tariff_rollouts', 'flows.meter_commands', 'INSERT',
     'SELECT batch_id, esco FROM new_rows WHERE kind = ''set_future_tariff'' AND batch_id IS NOT NULL', false),
    ('tariff_rollouts', 'flows.meter_commands', 'UPDATE',
     'SELECT batch_id, esco FROM new_rows WHERE kind = ''set_future_tariff'' AND batch_id IS NOT NULL', false),
    ('tariff_rollouts', 'flows.meter_commands', 'DELETE',
     'SELECT batch_id, esco FROM old_rows WHERE kind = ''set_future_tariff'' AND batch_id IS NOT NULL', false),
    -- The shadow row itself (created with its meter, deleted with it).
    ('meter_shadows', 'flows.meter_shadows', 'INSERT',
     'SELECT s.id, m.esco FROM new_rows AS s JOIN flows.meter_registry AS m ON m.id = s.id', false),
    ('meter_shadows', 'flows.meter_shadows', 'UPDATE',
     'SELECT s.id, m.esco FROM new_rows AS s JOIN flows.meter_registry AS m ON m.id = s.id', false),
    ('meter_shadows', 'flows.meter_registry', 'DELETE', 'SELECT id, esco FROM old_rows', false),
    -- Who sees a shadow (and its meter): the meter's ESCO, and for customers the
    -- properties behind its service heads.
    ('meter_shadows', 'flows.meter_registry', 'UPDATE',
     'SELECT n.id, NULL::uuid FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id WHERE n.esco <> o.esco', true),
    ('meter_shadows', 'flows.service_head_meter', 'INSERT', 'SELECT meter, esco FROM new_rows', true),
    ('meter_shadows', 'flows.service_head_meter', 'UPDATE',
     'SELECT meter, esco FROM new_rows UNION SELECT meter, esco FROM old_rows', true),
    ('meter_shadows', 'flows.service_head_meter', 'DELETE', 'SELECT meter, esco FROM old_rows', true),
    ('meter_shadows', 'flows.properties_service_head', 'INSERT',
     'SELECT m.meter, m.esco FROM new_rows AS p JOIN flows.service_head_meter AS m USING (service_head)', true),
    ('meter_shadows', 'flows.properties_service_head', 'UPDATE',
     'SELECT m.meter, m.esco FROM (SELECT service_head FROM new_rows UNION SELECT service_head FROM old_rows) AS p'
     ' JOIN flows.service_head_meter AS m USING (service_head)', true),
    ('meter_shadows', 'flows.properties_service_head', 'DELETE',
     'SELECT m.meter, m.esco FROM old_rows AS p JOIN flows.service_head_meter AS m USING (service_head)', true),
    -- meter_registry is seen by customers through the same junctions.
    ('meter_registry', 'flows.service_head_meter', 'INSERT', 'SELECT meter, esco FROM new_rows', true),
    ('meter_registry', 'flows.service_head_meter', 'UPDATE',
     'SELECT meter, esco FROM new_rows UNION SELECT meter, esco FROM old_rows', true),
    ('meter_registry', 'flows.service_head_meter', 'DELETE', 'SELECT meter, esco FROM old_rows', true),
    ('meter_registry', 'flows.properties_service_head', 'INSERT',
     'SELECT m.meter, m.esco FROM new_rows AS p JOIN flows.service_head_meter AS m USING (service_head)', true),
    ('meter_registry', 'flows.properties_service_head', 'UPDATE',
     'SELECT m.meter, m.esco FROM (SELECT service_head FROM new_rows UNION SELECT service_head FROM old_rows) AS p'
     ' JOIN flows.service_head_meter AS m USING (service_head)', true),
    ('meter_registry', 'flows.properties_service_head', 'DELETE',
     'SELECT m.meter, m.esco FROM old_rows AS p JOIN flows.service_head_meter AS m USING (service_head)', true);

CALL flows.capture_realtime('flows.meter_shadows');
CALL flows.capture_realtime('flows.service_head_meter');
CALL flows.capture_realtime('flows.properties_service_head');

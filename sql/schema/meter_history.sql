-- History of meter state, appended by flows.record_meter_states whenever a
-- meter is read: one row per meter and observation time.

CALL flows.create_timeseries('meter_prepay_balance', $columns$
    meter_id         uuid           NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp"      timestamptz    NOT NULL,
    balance          numeric(12, 5) NOT NULL,
    emergency_credit numeric(12, 5),
    PRIMARY KEY (meter_id, "timestamp")
$columns$);
COMMENT ON TABLE flows.meter_prepay_balance IS 'Prepay balance (GBP) and emergency credit taken, over time.';

CALL flows.create_timeseries('meter_csq', $columns$
    meter_id    uuid        NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz NOT NULL,
    csq         smallint    NOT NULL,
    PRIMARY KEY (meter_id, "timestamp"),
    CONSTRAINT meter_csq_range CHECK (csq BETWEEN 0 AND 31 OR csq = 99)
$columns$);
COMMENT ON TABLE flows.meter_csq IS 'Cellular signal quality (0-31, 99 unknown) over time.';

CALL flows.create_timeseries('meter_voltage', $columns$
    meter_id    uuid          NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz   NOT NULL,
    voltage     numeric(5, 1) NOT NULL,
    PRIMARY KEY (meter_id, "timestamp"),
    CONSTRAINT meter_voltage_range CHECK (voltage BETWEEN 0 AND 500)
$columns$);
COMMENT ON TABLE flows.meter_voltage IS 'Instantaneous voltage (V) of single-phase meters over time.';

CALL flows.create_timeseries('meter_3p_voltage', $columns$
    meter_id    uuid          NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz   NOT NULL,
    l1          numeric(5, 1),
    l2          numeric(5, 1),
    l3          numeric(5, 1),
    PRIMARY KEY (meter_id, "timestamp"),
    CONSTRAINT meter_3p_voltage_range CHECK (l1 BETWEEN 0 AND 500 AND l2 BETWEEN 0 AND 500 AND l3 BETWEEN 0 AND 500)
$columns$);
COMMENT ON TABLE flows.meter_3p_voltage IS 'Per-phase voltages (V) of three-phase meters over time.';

CALL flows.create_timeseries('meter_health_history', $columns$
    meter_id    uuid        NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz NOT NULL,
    health      text        NOT NULL,
    reason      text,
    PRIMARY KEY (meter_id, "timestamp"),
    CONSTRAINT meter_health_history_health_valid CHECK (health IN ('healthy', 'unhealthy'))
$columns$);
COMMENT ON TABLE flows.meter_health_history IS 'Every health verdict on a meter and why.';

CALL flows.create_timeseries('meter_clock_drift', $columns$
    meter_id    uuid        NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz NOT NULL,
    seconds     integer     NOT NULL,
    PRIMARY KEY (meter_id, "timestamp")
$columns$);
COMMENT ON TABLE flows.meter_clock_drift IS 'Meter clock minus server clock (seconds) when checked.';

CREATE TABLE flows.meter_tariff_history (
    meter_id    uuid        NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz NOT NULL,
    kind        text        NOT NULL,
    tariff      jsonb       NOT NULL,
    PRIMARY KEY (meter_id, kind, "timestamp"),
    CONSTRAINT meter_tariff_history_kind_valid CHECK (kind IN ('active', 'future'))
);
COMMENT ON TABLE flows.meter_tariff_history IS 'Tariffs read from a meter, one row each time they changed.';

CREATE TABLE flows.meter_event_log_type (
    id   smallint PRIMARY KEY,
    name text     NOT NULL UNIQUE
);
COMMENT ON TABLE flows.meter_event_log_type IS
    'Names of meter event ids. Ids a meter reports that are not known yet are added as unknown_<id>.';

CALL flows.create_timeseries('meter_event_log', $columns$
    meter_id    uuid        NOT NULL REFERENCES flows.meter_registry (id),
    "timestamp" timestamptz NOT NULL,
    event_type  smallint    NOT NULL REFERENCES flows.meter_event_log_type (id),
    event_set   smallint    NOT NULL,
    PRIMARY KEY (meter_id, "timestamp", event_type, event_set)
$columns$);
COMMENT ON TABLE flows.meter_event_log IS 'Events from the meter''s own log; event_set counts events per type.';

-- Event ids as Emlite meters report them (emop-frame-protocol's EventIdType).
INSERT INTO flows.meter_event_log_type (id, name) VALUES
    (1, 'bm_over_current'), (2, 'bm_faulty_contactor'), (3, 'bm_reverse_energy_detect'),
    (4, 'bm_terminal_cover_removed'), (5, 'bm_watchdog_reset'), (6, 'bm_nv_write_exceeded'),
    (7, 'bm_metrology_error'), (8, 'bm_memory_error'), (9, 'bm_module_removed'), (10, 'bm_magnetic_fraud'),
    (11, 'bm_non_legal_time'), (15, 'bm_spad_1_write'), (16, 'bm_spad_2_write'), (17, 'dsp_error'),
    (18, 'bm_comms_error'), (19, 'gw_comms_error'), (20, 'pf_tag_1_error'), (21, 'pf_tag_2_error'),
    (22, 'spare_0020'), (23, 'spare_0040'), (24, 'spare_0080'), (25, 'non_legal_time'), (26, 'memory_type'),
    (27, 'memory_error'), (28, 'watchdog_reset'), (29, 'sw_image_wdog'), (30, 'sw_image_hes_previous'),
    (31, 'sw_image_applied'), (32, 'sw_image_bad'), (33, 'event_power_up'), (34, 'event_power_dn'),
    (35, 'event_image_received'), (36, 'event_log_reset_id'), (37, 'event_image_error'),
    (38, 'daily_log_snapshot'), (39, 'billing_log_snapshot'), (40, 'do_bind_command'),
    (41, 'do_unbind_command'), (42, 'new_image_applied'), (43, 'watchdog_image_applied'),
    (44, 'previous_image_applied'), (61, 'hes_msg_pending'), (62, 'sm_comms_error'), (63, 'wan_comms_error'),
    (64, 'han_comms_error_gas'), (65, 'han_comms_error_ihu'), (66, 'han_api_not_responding'),
    (67, 'spare_0040_2'), (68, 'spare_0080_2'), (69, 'non_legal_time_2'), (70, 'memory_type_2'),
    (71, 'memory_error_2'), (72, 'watchdog_reset_2'), (73, 'sw_image_wdog_2'), (74, 'sw_image_hes_previous_2'),
    (75, 'sw_image_applied_2'), (76, 'sw_image_bad_2'), (77, 'event_image_received_2'),
    (78, 'event_log_reset_id_2'), (80, 'han_device_joined'), (81, 'han_device_left'),
    (83, 'invalid_wan_message'), (84, 'event_power_up_2'), (85, 'event_power_down'),
    (86, 'last_gasp_sent_to_hes'), (87, 'alarm_sent_to_hes'), (88, 'event_image_error_2'),
    (89, 'gw_do_unbind_command'), (90, 'gw_do_bind_command'), (91, 'gw_new_image_applied'),
    (92, 'gw_watchdog_image_applied'), (93, 'gw_previous_image_applied'), (94, 'gsm_reset_no_connection'),
    (95, 'status_word_reset'), (96, 'zigbee_get_sw_ver_err'), (97, 'zigbee_send_mac_link_err'),
    (98, 'zigbee_shutodwn_err'), (99, 'zigbee_active_image_err'), (104, 'listening_socket_aborted'),
    (105, 'auto_roaming_disable');

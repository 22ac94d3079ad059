"""The 232 golden frames of vectors.json: parsed to the documented values, rebuilt byte for byte."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from flows.emop import messages
from flows.emop.client import firmware_text, hardware_name
from flows.emop.frame import Frame, build_frame, parse_frame
from flows.emop.objects import by_id, lookup
from flows.emop.units import datetime_to_epoch2000, epoch2000_to_datetime
from flows.emop.values import THREE_PHASE_FLAGS

from .conftest import VECTORS

REQUESTS = [v for v in VECTORS if v["direction"] == "request"]
RESPONSES = [v for v in VECTORS if v["direction"] == "response"]


def ids(vectors):
    return [f"{i}:{v['name'][:70]}" for i, v in enumerate(vectors)]


def test_the_vector_file_is_complete():
    assert len(VECTORS) == 232
    assert sum(v["decoded"].get("source", "").startswith("real meter") for v in VECTORS) == 32


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_frame_fields_decode_and_every_frame_rebuilds(vector):
    raw = bytes.fromhex(vector["hex"])
    expected = vector["decoded"]["frame"]
    frame = parse_frame(raw)
    assert expected["crc_ok"] is True
    assert len(raw) - 1 == expected["frame_length"]
    assert frame.destination_type == int(expected["destination_device_type"], 16)
    assert frame.destination_address == int(expected["destination_address"], 16)
    assert frame.source_type == int(expected["source_device_type"], 16)
    assert frame.source_address == int(expected["source_address"], 16)
    assert frame.control == expected["control"]
    assert frame.sequence == expected["control_seq_bits_0_2"]
    assert frame.nak_code == expected["control_acknak_bits_3_7"]
    assert frame.format == expected["format"]
    assert frame.message.hex() == expected["message_hex"]
    assert raw[-2:].hex() == expected["crc16"]
    if "object_id" in expected:
        message = messages.parse_default(frame.data)
        assert f"{message.object_id:06x}" == expected["object_id"]
        assert message.read_write == expected["read_write"]
        assert message.payload.hex() == expected["payload_hex"]
    assert frame.to_bytes() == raw


def _request_from_meaning(vector) -> bytes:
    """Build a request from what it means (object, typed value, page, time), not from its bytes."""
    raw = bytes.fromhex(vector["hex"])
    frame = parse_frame(raw)
    header = dict(
        destination_type=frame.destination_type,
        destination_address=frame.destination_address,
        source_type=frame.source_type,
        source_address=frame.source_address,
        control=frame.control,
    )
    fields = vector["decoded"].get("request_fields", {})
    if frame.format == 1:
        message = messages.parse_default(frame.data)
        if message.read_write == messages.READ:
            data = messages.read_request(message.object_id)
        else:
            codec = by_id(message.object_id).codec
            value = codec.decode(message.payload)  # bytes -> typed value -> bytes again
            data = messages.write_request(message.object_id, codec.encode(value))
    elif frame.format == 5:
        data = messages.event_log_request(fields["log_idx"])
    elif frame.format in (3, 4):
        data = messages.profile_log_request(frame.format - 2, datetime.fromisoformat(fields["timestamp_utc"]))
    else:
        data = messages.three_phase_intervals_request(
            datetime.fromisoformat(fields["start_utc"]),
            datetime.fromisoformat(fields["end_utc"]),
            fields["profile_number"]["value"],
        )
    return build_frame(data, **header)


@pytest.mark.parametrize("vector", REQUESTS, ids=ids(REQUESTS))
def test_builder_reproduces_every_request_byte_for_byte(vector):
    assert _request_from_meaning(vector).hex() == vector["hex"]


def _library_view(record: str, value, payload: bytes) -> dict:
    """Our typed value, expressed in the library's field names and raw units."""
    if record in ("SerialRec",):
        return {"serial": value}
    if record == "HardwareRec":
        return {"hardware": value}
    if record == "FirmwareRec":
        return {"version_bytes": list(value)}
    if record == "TimeRec":
        weekday = (value.weekday() + 1) % 7
        return {
            "year": value.year - 2000,
            "month": value.month,
            "date": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "day_of_week": {"enum": "DayOfWeekType", "name": value.strftime("%A").lower(), "value": weekday},
        }
    if record == "CsqNetOpRec":
        return {"network_operator": value.network_operator, "csq": value.csq}
    if record in (
        "InstantaneousVoltageRec",
        "ThreePhaseInstantaneousVoltageL1Rec",
        "ThreePhaseInstantaneousVoltageL2Rec",
        "ThreePhaseInstantaneousVoltageL3Rec",
    ):
        return {"voltage": int(value * 10)}
    if record == "InstantaneousActivePowerRec":
        return {"power": int(value * 1000)}
    if record == "ReadingRec":
        return {
            k: int(getattr(value, k) * 1000)
            for k in ("import_active", "export_active", "import_reactive", "export_reactive")
        }
    if record == "FlagRec":
        return {"enabled_flag": int(value)}
    if record in ("BacklightRec", "LoadSwitchRec"):
        enum = {"BacklightRec": "BacklightSettingType", "LoadSwitchRec": "LoadSwitchSettingType"}[record]
        return {"setting": {"enum": enum, "name": value.name, "value": int(value)}}
    if record == "PrepayBalanceRec":
        return {"balance": int(value * 100000)}
    if record == "MonetaryInfoTransactionCountRec":
        return {"count": value}
    if record == "U4leValueRec":
        if isinstance(value, datetime):
            return {"value": datetime_to_epoch2000(value)}
        return {"value": int(value * 100000) if isinstance(value, Decimal) else value}
    if record == "U1ValueRec":
        return {"value": value}
    if record == "TariffThresholdMaskRec":
        return {f"rate{n}": value[n - 1] for n in range(8, 0, -1)}
    if record == "TariffThresholdValuesRec":
        return {f"th{n}": value[n - 1] for n in range(1, 8)}
    if record == "TariffTimeSwitchSettingsRec":
        return {"switch_settings": {"hex": value.hex()}}
    if record == "ThreePhaseHardwareConfigurationRec":

        def flag(on):
            return {
                "enum": "ThreePhaseFittedFlag",
                "name": "fitted" if on else "not_fitted",
                "value": int(on),
            }

        return {
            "meter_type": {
                "enum": "ThreePhaseMeterType",
                "name": "ax_whole_current" if value.whole_current else "cx_ct_operated",
                "value": int(value.whole_current),
            },
            "middle_output_terminals": {
                "enum": "ThreePhaseMiddleOutput",
                "name": "pulse_output_fitted" if value.middle_output_terminals else "auxiliary_relay_fitted",
                "value": int(value.middle_output_terminals),
            },
            **{name: flag(getattr(value, name)) for name in THREE_PHASE_FLAGS[1:]},
            "unused": {"hex": value.unused.hex()},
        }
    raise AssertionError(f"no mapping for {record}")


WITH_RECORD = [v for v in RESPONSES if "library_record" in v["decoded"]]


@pytest.mark.parametrize("vector", WITH_RECORD, ids=ids(WITH_RECORD))
def test_payloads_decode_to_the_documented_values(vector):
    frame = parse_frame(bytes.fromhex(vector["hex"]))
    message = messages.parse_default(frame.data)
    obj = by_id(message.object_id)
    value = obj.codec.decode(message.payload)
    record = vector["decoded"]["library_record"]
    assert _library_view(record, value, message.payload) == vector["decoded"]["library_fields"]
    # and the typed value encodes back to the very payload
    assert obj.codec.encode(value) == message.payload


API_RESULTS = {
    "serial": lambda v: v.strip(),
    "hardware_version": hardware_name,
    "firmware_version": firmware_text,
    "time": lambda v: v.isoformat(),
    "csq_net_op": lambda v: v.csq,
    "monetary_info_transaction_count": lambda v: v,
    "daylight_savings_correction_flag": lambda v: v,
    "prepay_enabled_flag": lambda v: v,
    "prepay_no_debt_recovery_when_emergency_credit_flag": lambda v: v,
    "prepay_no_standing_charge_when_power_fail_flag": lambda v: v,
    "prepay_balance": lambda v: {"decimal": str(v)},
    "backlight": lambda v: {"enum": "BacklightSettingType", "name": v.name, "value": int(v)},
    "load_switch": lambda v: {"enum": "LoadSwitchSettingType", "name": v.name, "value": int(v)},
    "three_phase_serial": lambda v: v.strip(),
}
SINGLE_API = [
    v
    for v in RESPONSES
    if v["decoded"].get("object_id_name") in API_RESULTS
    and "api_result" in v["decoded"]
    and v["decoded"]["api_result"] is not None
    and v["decoded"]["frame"]["control_acknak_bits_3_7"] == 0
]


@pytest.mark.parametrize("vector", SINGLE_API, ids=ids(SINGLE_API))
def test_single_object_results_match_the_production_api(vector):
    frame = parse_frame(bytes.fromhex(vector["hex"]))
    message = messages.parse_default(frame.data)
    value = lookup(vector["decoded"]["object_id_name"]).codec.decode(message.payload)
    assert API_RESULTS[vector["decoded"]["object_id_name"]](value) == vector["decoded"]["api_result"]


def test_units_of_the_production_api():
    """Voltage (simt-emlite keeps 0.1 V units), power (kW), registers (kWh), three-phase scaling."""
    by_name = {v["name"]: v for v in RESPONSES}

    def value(name):
        frame = parse_frame(bytes.fromhex(by_name[name]["hex"]))
        message = messages.parse_default(frame.data)
        return by_id(message.object_id).codec.decode(message.payload)

    assert value("instantaneous_voltage response") * 10 == Decimal(
        str(by_name["instantaneous_voltage response"]["decoded"]["api_result"])
    )
    assert value("instantaneous_active_power response") == Decimal("1.234")
    reading = value("read_element_a response")
    api = by_name["read_element_a response"]["decoded"]["api_result"]
    assert {k: float(getattr(reading, k)) for k in api} == api
    for scaling, divisor in (("P1.ax scaling /1000", 1000), ("P1.cx scaling /10000", 10000)):
        names = [f"three_phase_read ({scaling}) [{i}/6] response" for i in range(1, 7)]
        api = by_name[names[-1]]["decoded"]["api_result"]
        ours = [Decimal(value(n)) / divisor for n in names]
        assert [float(x) for x in ours] == list(api.values())


def test_naks_carry_code_and_echo():
    naks = [v for v in RESPONSES if v["decoded"]["frame"]["control_acknak_bits_3_7"]]
    assert {v["decoded"]["frame"]["control_acknak_bits_3_7"] for v in naks} == {5, 6}
    for vector in naks:
        frame = parse_frame(bytes.fromhex(vector["hex"]))
        assert messages.parse_default(frame.data).payload == b""


def test_event_log_pages_decode_and_rebuild():
    for vector in [v for v in RESPONSES if v["decoded"].get("kind") == "event_log"]:
        frame = parse_frame(bytes.fromhex(vector["hex"]))
        page = messages.parse_event_log(frame.data)
        api = vector["decoded"]["api_result"]
        assert [(datetime_to_epoch2000(e.timestamp), e.event_id, e.event_set) for e in page.events] == [
            (e["timestamp"], e["event_id"]["value"], e["event_set"]) for e in api["events"]
        ]
        assert [e.name for e in page.events] == [e["event_id"]["name"] for e in api["events"]]
        assert messages.event_log_response(page.index, page.events) == frame.data


@pytest.mark.parametrize("kind", ["profile_log_1", "profile_log_2"])
def test_profile_logs_decode_and_rebuild(kind):
    for vector in [v for v in RESPONSES if v["decoded"].get("kind") == kind]:
        frame = parse_frame(bytes.fromhex(vector["hex"]))
        api = vector["decoded"]["api_result"]
        twin = api.get("is_twin_element", False)
        page = messages.parse_profile_log(frame.data, twin=twin)
        assert int.from_bytes(page.header, "big") == api["request_timestamp"]
        assert len(page.records) >= len(api["records"])  # the library stops after 4 records of log 1
        for ours, theirs in zip(page.records, api["records"], strict=False):
            assert datetime_to_epoch2000(ours.timestamp) == theirs["timestamp"]
            flags = {
                name.lower()
                for name in ("VALID_DATA", "POWER_FAIL", "RESET")
                if messages.ProfileStatus[name] in ours.status
            }
            assert flags == {k for k in ("valid_data", "power_fail", "reset") if theirs["status"][k]}
            for key, expected in theirs.items():
                if key in ("timestamp", "status", "is_twin_element"):
                    continue
                got = getattr(ours, key)
                assert (got if key == "voltage" else int(got * 1000)) == expected, key
        rebuilt = messages.profile_log_response(page.format - 2, page.header, page.records, twin=twin)
        assert rebuilt == frame.data


def test_three_phase_intervals_decode_and_rebuild():
    vector = next(
        v for v in RESPONSES if v["name"].startswith("three_phase_intervals 2025-02-20 00:00-02:00Z [2/2]")
    )
    frame = parse_frame(bytes.fromhex(vector["hex"]))
    block = messages.parse_three_phase_intervals(frame.data)
    api = vector["decoded"]["api_result"]
    assert block.start == datetime.fromisoformat(api["block_start_time"])
    assert block.interval_minutes == api["interval_duration"]
    assert [f"{c:06x}" for c in block.channel_ids] == [c["hex"] for c in api["channel_ids"]]
    assert [list(i.values) for i in block.intervals] == [i["channel_data"] for i in api["intervals"]]
    assert all(i.status == 0x0080 for i in block.intervals)
    assert [i["status"]["valid_data"] for i in api["intervals"]] == [True] * len(block.intervals)
    assert messages.three_phase_intervals_response(block) == frame.data


def test_captured_real_frames_keep_their_addresses():
    captured = [v for v in VECTORS if v["decoded"].get("source", "").startswith("real meter")]
    for vector in captured:
        frame = parse_frame(bytes.fromhex(vector["hex"]))
        assert (
            Frame(
                frame.data,
                frame.destination_type,
                frame.destination_address,
                frame.source_type,
                frame.source_address,
                frame.control,
            )
            .to_bytes()
            .hex()
            == vector["hex"]
        )
    nak = next(v for v in captured if v["name"] == "captured real session 800309 response")
    frame = parse_frame(bytes.fromhex(nak["hex"]))
    assert (frame.sequence, frame.nak_code) == (1, 5)


def test_epoch_2000():
    assert epoch2000_to_datetime(796780800) == datetime(2025, 4, 1, tzinfo=UTC)

"""Interop with the production client: simt-emlite 1.2.12 and emop-frame-protocol 0.4.14 (Python 3.13 venv).

scripts/setup.sh builds .venv-interop; these tests run scripts in it against our emulator.
"""

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from flows.emop import messages
from flows.emop.client import EmopClient
from flows.emop.frame import parse_frame
from flows.emop.objects import by_id
from flows.emop.results import TARIFF_KEYS
from flows.emop.units import datetime_to_epoch2000
from flows.emop.values import Backlight, LoadSwitch
from flows.emulator import MeterConfig

from .conftest import ROOT, connect

INTEROP_PYTHON = ROOT / ".venv-interop" / "bin" / "python"
SCRIPTS = Path(__file__).parent / "interop"


@pytest.fixture(scope="module")
def interop_python() -> Path:
    if not INTEROP_PYTHON.exists():
        pytest.fail(f"{INTEROP_PYTHON} is missing: run `make setup` (scripts/setup.sh builds it)")
    return INTEROP_PYTHON


async def run_script(python: Path, script: str, *args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, "EMLITE_TIMEOUT_SECONDS": "5"}  # simt-emlite reads it at import time
    for name in ("SOCKS_HOST", "SOCKS_PORT", "SOCKS_USERNAME", "SOCKS_PASSWORD"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(SCRIPTS / script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode().strip().splitlines()[-1]  # simt-emlite also prints a CSV for three_phase_intervals


async def test_simt_emlite_reads_writes_and_tops_up_against_the_emulator(
    start_fleet, interop_python, vendor, client
):
    fleet = await start_fleet(
        meters=[
            MeterConfig("EML2400000001", hardware="C1.w"),
            MeterConfig("EML2400000020", hardware="P1.ax"),
        ],
        time_factor=0,
    )
    twin, three = fleet.meters
    now = fleet.clock.now()
    token = await vendor.vend(twin.serial, Decimal("7.50"))
    job = {
        "meters": [twin.describe(), three.describe()],
        "single": {
            "serial": twin.serial,
            "token": token.token,
            "future": {
                "standing_charge": "0.7125",
                "unit_rate": "0.24567",
                "emergency_credit": "15",
                "ecredit_availability": "10",
                "debt_recovery_rate": "0.25",
            },
            "profile_from": (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0).isoformat(),
        },
        "three_phase": {
            "serial": three.serial,
            "intervals_from": (now - timedelta(hours=5))
            .replace(minute=0, second=0, microsecond=0)
            .isoformat(),
        },
    }
    balance_before = twin.model.balance
    simt = json.loads(await run_script(interop_python, "simt_session.py", json.dumps(job)))

    ours = connect(client, twin)
    assert simt["serial"] == twin.serial
    assert simt["hardware"] == "C1.w"
    assert simt["firmware"] == await ours.firmware_version()
    assert abs(datetime.fromisoformat(simt["clock"]) - await ours.clock_time_read()) <= timedelta(seconds=1)
    assert simt["csq"] == await ours.csq()
    assert Decimal(str(simt["voltage"])) == await ours.instantaneous_voltage() * 10  # simt-emlite keeps 0.1 V
    a, b = twin.model.registers("A"), twin.model.registers("B")
    for theirs, mine in ((simt["element_a"], a), (simt["element_b"], b)):
        assert theirs == {k: float(getattr(mine, k)) for k in theirs}
    assert simt["read"] == [simt["element_a"], simt["element_b"]]

    active = twin.model.tariff("active")
    for key in TARIFF_KEYS:
        assert Decimal(simt["tariffs_active"][key]) == active[key], key

    future = twin.model.tariff("future")
    assert future["activation_datetime"] == datetime(2030, 4, 1, tzinfo=UTC)
    assert (future["standing_charge"], future["unit_rate_element_a"], future["unit_rate_element_b"]) == (
        Decimal("0.7125"),
        Decimal("0.24567"),
        Decimal("0.24567"),
    )
    assert simt["tariffs_future"]["activation_datetime"] == "2030-04-01T00:00:00+00:00"
    assert Decimal(simt["tariffs_future"]["standing_charge"]) == Decimal("0.7125")

    records = await ours.profile_log_1(datetime.fromisoformat(job["single"]["profile_from"]))
    assert simt["profile_log_1"] == [
        {
            "timestamp": datetime_to_epoch2000(r.timestamp),
            "import_a": int(r.import_a * 1000),
            "import_b": int(r.import_b * 1000),
        }
        for r in records[:4]
    ]
    page = messages.parse_event_log((await ours.exchange(messages.event_log_request(0))).data)
    # read after simt-emlite's token, so ours begins with its credit event (48), which pushed one off the page
    assert page.events[0].event_id == 48
    assert [(e["timestamp"], e["event_set"]) for e in simt["event_log"]][:9] == [
        (datetime_to_epoch2000(e.timestamp), e.event_set) for e in page.events[1:]
    ]
    assert {e["event_id"] for e in simt["event_log"]} >= {"daily_log_snapshot"}

    # the token: balance rose by exactly its amount (time is frozen), one more transaction
    assert Decimal(simt["balance_before"]) == balance_before
    assert Decimal(simt["balance_after"]) - Decimal(simt["balance_before"]) == Decimal("7.50")
    assert simt["transactions_after"] == simt["transactions_before"] + 1
    assert twin.model.balance == Decimal(simt["balance_after"])
    assert twin.model.used_sequences == {token.sequence}

    mine = await connect(client, three).three_phase_read()
    assert simt["three_phase"]["hardware"] == "P1.ax"
    assert simt["three_phase"]["read"] == {k: float(getattr(mine, k)) for k in simt["three_phase"]["read"]}
    assert simt["three_phase"]["serial"] == three.serial
    assert [Decimal(str(v)) for v in simt["three_phase"]["voltages"]] == list(
        await connect(client, three).three_phase_instantaneous_voltage()
    )
    assert simt["three_phase"]["intervals"] == 4
    assert twin.stats.rejected_busy == three.stats.rejected_busy == 0


async def test_emop_frame_protocol_parses_every_request_our_client_produces(
    start_fleet, interop_python, vendor
):
    fleet = await start_fleet(
        meters=[
            MeterConfig("EML2400000001"),
            MeterConfig("EML2400000002", hardware="B1.w"),
            MeterConfig("EML2400000003", hardware="P1.cx"),
        ],
        time_factor=0,
    )
    frames: list[bytes] = []
    client = EmopClient(
        pacing=0,
        timeout=2,
        attempts=1,
        backoff=0,
        trace=lambda d, _, raw: d == "request" and frames.append(raw),
    )
    twin, single, three = (connect(client, m) for m in fleet.meters)
    now = fleet.clock.now()
    for meter in (twin, single):
        for name in (
            "serial_read",
            "hardware",
            "firmware_version",
            "clock_time_read",
            "csq",
            "instantaneous_voltage",
            "instantaneous_active_power",
            "read",
            "read_element_a",
            "read_element_b",
            "prepay_balance",
            "prepay_enabled",
            "tariffs_active_read",
            "tariffs_future_read",
            "backlight",
            "load_switch",
            "monetary_info_transaction_count",
            "monetary_info_transaction_details",
            "event_log_since",
            "daylight_savings_correction_enabled",
        ):
            await getattr(meter, name)()
        await meter.profile_log_1_range(now - timedelta(hours=6), now)
        await meter.profile_log_2(now - timedelta(hours=2))
    await twin.tariffs_future_write(
        from_ts=now + timedelta(days=3),
        standing_charge="0.61",
        unit_rate="0.25",
        unit_rate_b="0.1",
        emergency_credit="15",
        ecredit_availability="10",
        debt_recovery_rate="0.2",
    )
    await twin.clock_time_write(now)
    await twin.backlight_write(Backlight.always_on_sp)
    await twin.load_switch_write(LoadSwitch.no_button_credit_mode)
    await twin.prepay_enabled_write(True)
    await twin.daylight_savings_correction_enabled_write(False)
    await twin.prepay_top_up((await vendor.vend(twin.serial, Decimal("1.23"))).token)
    await twin.obis_write("tariff_time_switch_element_b", bytes(80))
    for name in (
        "read",
        "three_phase_serial",
        "three_phase_instantaneous_voltage",
        "three_phase_hardware_configuration",
    ):
        await getattr(three, name)()
    await three.three_phase_intervals(now - timedelta(hours=9), now - timedelta(hours=1))

    unique = list(dict.fromkeys(frames))
    assert len(unique) > 60
    parsed = json.loads(
        await run_script(interop_python, "efp_parse.py", stdin=json.dumps([f.hex() for f in unique]).encode())
    )
    formats = set()
    for raw, theirs in zip(unique, parsed, strict=True):
        assert "error" not in theirs, (raw.hex(), theirs)
        frame = parse_frame(raw)
        formats.add(frame.format)
        assert theirs["frame_length"] == len(raw) - 1
        assert (theirs["destination_address"], theirs["source_address"]) == ("000000", "21ae42")
        assert theirs["control"] == frame.control and theirs["format"] == frame.format
        assert theirs["crc16"] == raw[-2:].hex()
        if frame.format == 1:
            message = messages.parse_default(frame.data)
            assert (theirs["object_id"], theirs["read_write"], theirs["payload"]) == (
                message.object_id,
                message.read_write,
                message.payload.hex(),
            )
            if message.payload:
                _same_value(by_id(message.object_id), message.payload, theirs["record"])
        elif frame.format == 5:
            assert (theirs["object_id"], theirs["log_idx"]) == (messages.EVENT_LOG_OBJECT, frame.data[4])
        elif frame.format in (3, 4):
            _, moment = messages.parse_profile_log_request(frame.data)
            assert theirs["timestamp"] == datetime_to_epoch2000(moment)
        else:
            request = messages.parse_three_phase_intervals_request(frame.data)
            assert (theirs["start_time"], theirs["end_time"]) == (
                datetime_to_epoch2000(request.start),
                datetime_to_epoch2000(request.end),
            )
            assert (theirs["profile_number"], theirs["trailing_fixed"]) == (0, "ffffffff")
    assert formats == {1, 3, 4, 5, 0x14}


def _same_value(obj, payload: bytes, record: dict | None) -> None:
    """The library's decoding of a written payload agrees with our typed value."""
    value = obj.codec.decode(payload)
    if record is None or not record:
        return
    if "value" in record and isinstance(value, Decimal):
        assert Decimal(record["value"]) / 100000 == value
    elif "value" in record and isinstance(value, datetime):
        assert record["value"] == datetime_to_epoch2000(value)
    elif "value" in record:
        assert record["value"] == value
    elif "enabled_flag" in record:
        assert bool(record["enabled_flag"]) is value
    elif "setting" in record:
        assert record["setting"] == int(value)
    elif "year" in record:
        assert (record["year"] + 2000, record["month"], record["date"], record["hour"]) == (
            value.year,
            value.month,
            value.day,
            value.hour,
        )
        assert record["day_of_week"] == (value.weekday() + 1) % 7
    elif "token" in record or obj.name == "prepay_token_send":
        assert record.get("token", payload.hex()) in (value, payload.hex())
    elif "switch_settings" in record:
        assert record["switch_settings"] == payload.hex()
    elif "rate1" in record:
        assert tuple(record[f"rate{n}"] for n in range(1, 9)) == value
    elif "th1" in record:
        assert tuple(record[f"th{n}"] for n in range(1, 8)) == value
    else:
        raise AssertionError(f"unchecked record {record} for {obj.name}")

"""The emulator as a product: config files, state that survives a restart, accelerated time, the process."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from flows.emop.errors import Nak
from flows.emulator import Fleet, FleetConfig, MeterConfig, load_config
from flows.emulator.config import generate_meters
from flows.errors import ConfigError

from .conftest import SECRET, connect

START = datetime(2030, 1, 15, 8, 0, tzinfo=UTC)
FLOWS = Path(sys.executable).with_name("flows")


def frozen_with_state(state_file) -> FleetConfig:
    return FleetConfig(
        meters=[MeterConfig("EML2400000001")],
        time_factor=0,
        start=START,
        state_file=state_file,
        vendor_secret=SECRET,
    )


async def test_state_survives_a_restart(tmp_path, client, vendor):
    state = tmp_path / "state.json"
    config = frozen_with_state(state)
    async with Fleet(config) as fleet:
        emulated = fleet.meters[0]
        meter = connect(client, emulated)
        token = await vendor.vend(emulated.serial, Decimal("7.25"))
        await meter.prepay_top_up(token.token)
        await meter.tariffs_future_write(
            from_ts=START + timedelta(days=30),
            standing_charge="0.8",
            unit_rate="0.3",
            emergency_credit="15",
            ecredit_availability="10",
            debt_recovery_rate="0",
        )
        fleet.clock.advance(timedelta(hours=3))
        balance, registers = await meter.prepay_balance(), await meter.read_element_a()
        live_records = len(emulated.model.live)
    assert state.exists()
    config.start = fleet.clock.now()  # frozen time resumes where it stopped
    async with Fleet(config) as again:
        emulated = again.meters[0]
        meter = connect(client, emulated)
        assert await meter.prepay_balance() == balance
        assert await meter.read_element_a() == registers
        assert await meter.monetary_info_transaction_count() == 1
        assert (await meter.tariffs_future_read()).standing_charge == Decimal("0.8")
        assert len(emulated.model.live) == live_records == 6
        with pytest.raises(Nak):
            await meter.prepay_send_token(token.token)  # still used after the restart


async def test_state_is_saved_soon_after_a_write(tmp_path, client, vendor):
    state = tmp_path / "state.json"
    config = frozen_with_state(state)
    async with Fleet(config) as fleet:
        token = await vendor.vend("EML2400000001", Decimal("3"))
        await connect(client, fleet.meters[0]).prepay_send_token(token.token)
        for _ in range(50):  # saved within a second or so
            await asyncio.sleep(0.1)
            if json.loads(state.read_text())["meters"]["EML2400000001"]["used_sequences"] == [1]:
                break
        else:
            pytest.fail("the state file was not saved after the token")


async def test_accelerated_time(start_fleet, client):
    fleet = await start_fleet(count=1, time_factor=3600)  # an hour per second
    meter = connect(client, fleet.meters[0])
    first = (await meter.read_element_a()).import_active
    await asyncio.sleep(0.6)
    assert (await meter.read_element_a()).import_active - first > Decimal("0.02")


def test_config_files_json_and_toml(tmp_path):
    (tmp_path / "fleet.json").write_text(
        json.dumps(
            {
                "latency_ms": 300,
                "time_factor": 60,
                "state_file": "state.json",
                "generate": {"count": 2, "base_port": 47000},
                "meters": [
                    {
                        "serial": "EML2200000042",
                        "hardware": "P1.cx",
                        "port": 47100,
                        "balance": "5.50",
                        "tariff": {"standing_charge": "0.61"},
                        "latency_ms": 10,
                        "faults": {"rates": {"refuse": 0.1}, "script": ["silence", "nak:6"]},
                    }
                ],
            }
        )
    )
    config = load_config(tmp_path / "fleet.json")
    assert [m.serial for m in config.meters] == ["EML2400000001", "EML2400000002", "EML2200000042"]
    assert [m.port for m in config.meters] == [47000, 47001, 47100]
    special = config.meters[2]
    assert (special.hardware, special.balance, special.latency) == ("P1.cx", Decimal("5.50"), 0.01)
    assert special.tariff["standing_charge"] == "0.61" and special.tariff["unit_rate_element_a"] == "0.23812"
    assert special.faults.rates == {"refuse": 0.1}
    assert (config.latency, config.time_factor, config.state_file) == (0.3, 60.0, tmp_path / "state.json")
    (tmp_path / "fleet.toml").write_text(
        'host = "127.0.0.1"\n[[meters]]\nserial = "EML2400000077"\nhardware = "B1.w"\n'
    )
    assert load_config(tmp_path / "fleet.toml").meters[0].hardware == "B1.w"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"meters": [{"serial": "EML1", "hardwar": "C1.w"}]}, "unknown key"),
        ({"meters": [{"serial": "EML1", "balance": 1.5}]}, "not a float"),
        ({"meters": [{"serial": "EML1", "hardware": "Z9"}]}, "unknown hardware"),
        ({"meters": [{"serial": "EML1"}, {"serial": "EML1"}]}, "twice"),
        ({"meters": [{"serial": "EML1", "faults": {"rates": {"explode": 1}}}]}, "unknown fault"),
        ({"latency": 3}, "unknown key"),
    ],
)
def test_config_mistakes_are_reported(tmp_path, document, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_generated_fleet_mix():
    meters = generate_meters(40)
    kinds = [m.hardware for m in meters]
    assert kinds.count("P1.ax") == 2 and kinds.count("B1.w") == 6 and kinds.count("C1.w") == 32
    assert len({m.serial for m in meters}) == 40 and all(len(m.serial) == 13 for m in meters)


async def test_emulator_process_prints_json_and_stops_cleanly(tmp_path):
    env = {**os.environ, "FLOWS_TEST_VENDOR_SECRET": SECRET.decode(), "FLOWS_HOME": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        str(FLOWS),
        "emulator",
        "--meters",
        "3",
        "--json",
        "--state-file",
        str(tmp_path / "state.json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        described = json.loads(line)
        assert [m["serial"] for m in described["meters"]] == [
            "EML2400000001",
            "EML2400000002",
            "EML2400000003",
        ]
        assert described["pid"] == process.pid
        from flows.emop.client import EmopClient

        client = EmopClient(pacing=0, attempts=2, timeout=3, backoff=0)
        first = described["meters"][0]
        meter = client.meter(first["serial"], host=first["host"], port=first["port"])
        assert await meter.serial_read() == first["serial"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0
    assert "EML2400000003" in json.loads((tmp_path / "state.json").read_text())["meters"]

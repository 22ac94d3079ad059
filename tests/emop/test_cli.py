"""`emop` against a `flows emulator` process: output, --json, exit codes."""

import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli.emop import cli as emop
from flows.cli.main import cli as flows

from .conftest import SECRET

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A `flows emulator` process with a twin-element, a single-element and a three-phase meter."""
    home = tmp_path_factory.mktemp("emulator")
    config = home / "fleet.json"
    config.write_text(
        json.dumps(
            {
                "meters": [
                    {"serial": "EML2400000001", "hardware": "C1.w"},
                    {"serial": "EML2400000002", "hardware": "B1.w"},
                    {"serial": "EML2400000003", "hardware": "P1.ax"},
                ]
            }
        )
    )
    env = {"PATH": str(BIN), "FLOWS_TEST_VENDOR_SECRET": SECRET.decode(), "FLOWS_HOME": str(home)}
    process = subprocess.Popen(
        [BIN / "flows", "emulator", "--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    described = json.loads(process.stdout.readline())
    (home / "meters.json").write_text(json.dumps(described))
    described["file"] = home / "meters.json"
    yield described
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


@pytest.fixture(autouse=True)
def vendor_secret(monkeypatch):
    monkeypatch.setenv("FLOWS_TEST_VENDOR_SECRET", SECRET.decode())


def run(*args):
    result = CliRunner().invoke(emop, ["--pacing", "0", "--attempts", "1", "--timeout", "3", *map(str, args)])
    return result


def where(emulator, index):
    meter = emulator["meters"][index]
    return [meter["serial"], "--host", meter["host"], "--port", meter["port"]]


def test_serial_positional_or_before_the_command(emulator):
    result = run("csq", *where(emulator, 0))
    assert result.exit_code == 0, result.output
    assert 0 <= int(result.output) <= 31
    serial, _, host, _, port = where(emulator, 0)
    result = run("-s", serial, "--host", host, "--port", port, "--json", "serial_read")
    assert json.loads(result.stdout) == {"serial": serial, "serial_read": serial}
    assert run("serial-read", *where(emulator, 0)).output.strip() == serial  # dashes work too


def test_json_output_keeps_money_exact(emulator):
    result = run("prepay_balance", *where(emulator, 1), "--json")
    document = json.loads(result.stdout)
    assert document["prepay_balance"].startswith("19.9") or document["prepay_balance"] == "20"
    human = run("prepay_balance", *where(emulator, 1))
    assert human.output.strip().endswith("GBP")


def test_top_up_with_a_vended_token(emulator):
    serial = emulator["meters"][0]["serial"]
    vended = CliRunner().invoke(flows, ["vend", serial, "4.20"])
    assert vended.exit_code == 0, vended.output
    token = vended.output.strip()
    result = run("prepay_send_token", *where(emulator, 0), token, "--json")
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout)["prepay_send_token"]
    assert pushed["transactions_after"] == pushed["transactions_before"] + 1
    assert abs(Decimal(pushed["credited"]) - Decimal("4.20")) < Decimal(
        "0.001"
    )  # real time: a little is used
    again = run("prepay_send_token", *where(emulator, 0), token)
    assert again.exit_code == 4
    assert "NAK 6" in again.output


def test_future_tariff_round_trip(emulator):
    result = run(
        "tariffs_future_write",
        *where(emulator, 0),
        "--from-ts",
        "2031-04-01T00:00:00Z",
        "--unit-rate",
        "0.25",
        "--unit-rate-b",
        "0.12",
        "--standing-charge",
        "0.61",
        "--ecredit-availability",
        "10",
        "--debt-recovery-rate",
        "0.2",
        "--emergency-credit",
        "15",
        "--json",
    )
    assert result.exit_code == 0, result.output
    future = json.loads(run("tariffs_future_read", *where(emulator, 0), "--json").stdout)["tariffs_future"]
    assert (future["unit_rate_element_a"], future["unit_rate_element_b"], future["standing_charge"]) == (
        "0.25",
        "0.12",
        "0.61",
    )
    assert future["activation_datetime"] == "2031-04-01T00:00:00+00:00"


def test_profile_log_day_and_event_log(emulator):
    from datetime import UTC, datetime, timedelta

    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    records = json.loads(run("profile_log_1", *where(emulator, 0), "--day", day, "--json").stdout)[
        "profile_log_1"
    ]
    assert len(records) == 48 and records[0]["timestamp"] == f"{day}T00:00:00+00:00"
    assert records[0]["status"] == ["valid_data"]
    events = json.loads(run("event_log", *where(emulator, 0), "--json").stdout)["event_log"]
    assert events and {"timestamp", "event_id", "event_set", "name"} <= set(events[0])


def test_three_phase_commands_and_refusals(emulator):
    assert run("hardware", *where(emulator, 2)).output.strip() == "P1.ax"
    read = json.loads(run("read", *where(emulator, 2), "--json").stdout)["read"]
    assert read["three_phase"]["active_import"]
    refused = run("prepay_balance", *where(emulator, 2))
    assert refused.exit_code == 4 and "NAK 5 (unknown_object_id)" in refused.output


def test_exit_codes_for_usage_config_and_unreachable(emulator):
    assert run("csq").exit_code == 2  # no meter at all
    missing = run("csq", "EML2400000001")
    assert missing.exit_code == 2 and "--host" in missing.output
    assert run("no_such_command").exit_code == 2
    assert run("event_log", *where(emulator, 0), "--index", "12").exit_code == 2
    unreachable = run("csq", "EML2400000001", "--host", "127.0.0.1", "--port", "1")
    assert unreachable.exit_code == 3 and "refused the connection" in unreachable.output


def test_read_many_from_the_emulator_listing(emulator):
    result = run("read_many", emulator["file"], "--json")
    rows = json.loads(result.stdout)
    assert [r["serial"] for r in rows] == ["EML2400000001", "EML2400000002", "EML2400000003"]
    assert rows[0]["serial_read"] == "EML2400000001" and "read_element_a" in rows[1]
    assert "NAK 5" in rows[2]["error"]
    assert result.exit_code == 1  # one meter failed
    ok = run("read_many", emulator["file"], "-o", "csq", "-o", "clock_time_read", "--json")
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)) == 3

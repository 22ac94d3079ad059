"""Fixtures for the EMOP codec, client, emulator and vending tests (no database needed)."""

import json
from pathlib import Path

import pytest

from flows.emop.client import EmopClient
from flows.emulator import Fleet, FleetConfig, MeterConfig
from flows.vending import EmulatedVendor, MemorySequenceStore

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"tests-only-master-secret-0123456789"


# The test vectors docs/emop-protocol.md cites.
VECTORS = json.loads((ROOT / "tests" / "emop" / "data" / "vectors.json").read_text())


@pytest.fixture(autouse=True)
def flows_home(tmp_path, monkeypatch):
    """Keep secret and sequence files of the test vendor in a temporary home."""
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWS_TEST_VENDOR_SECRET", raising=False)
    return tmp_path / "home"


@pytest.fixture
def vendor():
    return EmulatedVendor(SECRET, MemorySequenceStore())


@pytest.fixture
def client():
    """A client for the emulator: no pacing, short timeouts, no backoff."""
    return EmopClient(pacing=0, timeout=2.0, attempts=3, backoff=0)


@pytest.fixture
async def start_fleet():
    """start_fleet(meters=[MeterConfig...] | count=N, **FleetConfig options) -> a started Fleet."""
    fleets = []

    async def start(meters=None, count=None, **options):
        if meters is None:
            meters = [MeterConfig(f"EML{2400000001 + i}") for i in range(count or 1)]
        options.setdefault("vendor_secret", SECRET)
        fleet = Fleet(FleetConfig(meters=meters, **options))
        fleets.append(fleet)
        return await fleet.start()

    yield start
    for fleet in fleets:
        await fleet.stop()


@pytest.fixture
async def meter(start_fleet):
    """One twin-element emulated meter, time frozen (advance with fleet.clock.advance)."""
    fleet = await start_fleet(count=1, time_factor=0)
    return fleet.meters[0]


def connect(client: EmopClient, emulated):
    return client.meter(emulated.serial, host=emulated.host, port=emulated.port)

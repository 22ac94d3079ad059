"""Our client's operations over the golden frames: each request must be byte-identical to simt-emlite's
(the replay only knows those), and each result must equal what the production API returned."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from flows.emop.client import EmopClient
from flows.emop.transport import read_frame

from .conftest import VECTORS


def pairs(prefix: str) -> dict[bytes, bytes]:
    """request -> response for the vectors whose name starts with ``prefix``."""
    group = [v for v in VECTORS if v["name"].startswith(prefix)]
    requests = [bytes.fromhex(v["hex"]) for v in group if v["direction"] == "request"]
    responses = [bytes.fromhex(v["hex"]) for v in group if v["direction"] == "response"]
    assert requests and len(requests) == len(responses)
    return dict(zip(requests, responses, strict=True))


def api_result(name: str):
    return next(v for v in VECTORS if v["name"] == name)["decoded"]["api_result"]


@pytest.fixture
async def replay():
    """replay(mapping) -> a MeterClient on a server answering golden responses (unknown requests: closed)."""
    servers, seen = [], []

    async def start(mapping: dict[bytes, bytes]):
        async def answer(reader, writer):
            try:
                request = await read_frame(reader)
                seen.append(request)
                if request in mapping:
                    writer.write(mapping[request])
                    await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return EmopClient(pacing=0, attempts=1, timeout=2).meter("EML2400000001", host="127.0.0.1", port=port)

    start.seen = seen
    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_tariffs_active_read(replay):
    meter = await replay(pairs("tariffs_active_read"))
    tariff = await meter.tariffs_active_read()
    api = api_result("tariffs_active_read [12/12] response")
    for key, value in tariff.to_json().items():
        assert Decimal(value) == Decimal(api[key]), key
    assert tariff.block_rate == api["block_rate"]
    assert tariff.element_b_tou_rate == api["element_b_tou_rate"]
    assert tariff.threshold_mask == tuple(api["threshold_mask"][f"rate{n}"] for n in range(1, 9))
    assert tariff.threshold_values == tuple(api["threshold_values"][f"th{n}"] for n in range(1, 8))


async def test_tariffs_future_read(replay):
    meter = await replay(pairs("tariffs_future_read"))
    tariff = await meter.tariffs_future_read(meter_local=False)
    api = api_result("tariffs_future_read [9/9] response")
    assert tariff.activation_datetime == datetime.fromisoformat(api["activation_datetime"])
    for key, value in tariff.to_json().items():
        if key != "activation_datetime":
            assert Decimal(value) == Decimal(api[key]), key


async def test_tariffs_future_write_sends_simt_emlites_eleven_frames(replay):
    mapping = pairs("tariffs_future_write")
    meter = await replay(mapping)
    await meter.tariffs_future_write(
        from_ts=datetime(2025, 4, 1, tzinfo=UTC),
        standing_charge=Decimal("0.7125"),
        unit_rate=Decimal("0.24567"),
        emergency_credit=Decimal("15"),
        ecredit_availability=Decimal("10"),
        debt_recovery_rate=Decimal("0.25"),
        meter_local=False,
    )
    assert replay.seen == list(mapping)  # same frames, same order


async def test_read_on_a_twin_element_meter(replay):
    mapping = pairs("hardware_version") | pairs("read (single phase twin element)")
    meter = await replay(mapping)
    result = await meter.read()
    a, b = api_result("read (single phase twin element) [2/2] response")
    assert result.hardware == "C1.w"
    assert {k: float(getattr(result.element_a, k)) for k in a} == a
    assert {k: float(getattr(result.element_b, k)) for k in b} == b


async def test_three_phase_hardware_and_read(replay):
    mapping = pairs("three phase hardware") | pairs("three_phase_read (P1.ax")
    meter = await replay(mapping)
    assert await meter.hardware() == api_result(
        "three phase hardware (hardware_version NAK then configuration) [2/2] response"
    )
    totals = await meter.three_phase_read()
    api = api_result("three_phase_read (P1.ax scaling /1000) [6/6] response")
    assert {k: float(getattr(totals, k)) for k in api} == api


async def test_three_phase_intervals_in_four_hour_chunks(replay):
    mapping = pairs("three phase hardware") | pairs("three_phase_intervals 2025-02-20 00:00-06:00Z")
    meter = await replay(mapping)
    start = datetime(2025, 2, 20, tzinfo=UTC)
    intervals = await meter.three_phase_intervals(start, start.replace(hour=6))
    assert [i.start.hour * 60 + i.start.minute for i in intervals] == list(range(0, 360, 30))
    assert intervals[0].values == {
        "010800": Decimal("1.2"),
        "020800": Decimal("0"),
        "030800": Decimal("0.3"),
        "040800": Decimal("0.005"),
    }


async def test_profile_log_1_and_event_log(replay):
    meter = await replay(pairs("profile_log_1 2024-08-21") | pairs("event_log idx 3"))
    records = await meter.profile_log_1(datetime(2024, 8, 21, 14, tzinfo=UTC))
    api = api_result("profile_log_1 2024-08-21T14:00Z response")
    assert [int(r.import_a * 1000) for r in records[:4]] == [r["import_a"] for r in api["records"]]
    events = await meter.event_log(3)
    assert [e.event_id for e in events] == [
        e["event_id"]["value"] for e in api_result("event_log idx 3 response")["events"]
    ]


async def test_a_token_write_and_the_balance_after(replay):
    meter = await replay(pairs("prepay_token_send re") | pairs("prepay_balance after token"))
    await meter.prepay_send_token("12345678901234567890")
    assert await meter.prepay_balance() == Decimal(
        api_result("prepay_balance after token response")["decimal"]
    )

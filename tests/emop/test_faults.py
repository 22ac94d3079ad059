"""Injected faults surface as the right typed error after the configured retries; one session per meter."""

import asyncio
import time

import pytest

from flows.emop.client import EmopClient
from flows.emop.errors import (
    BadCrc,
    ConnectionClosed,
    ConnectionRefused,
    MeterUnreachable,
    Nak,
    ReplyTimeout,
    TruncatedFrame,
)
from flows.errors import Refused, Unreachable

from .conftest import connect

ATTEMPTS = 3
RETRIED = [
    ("refuse", ConnectionRefused),
    ("silence", ReplyTimeout),
    ("close", ConnectionClosed),
    ("bad_crc", BadCrc),
    ("truncated", TruncatedFrame),
]


@pytest.fixture
def fast_client():
    return EmopClient(pacing=0, timeout=0.3, attempts=ATTEMPTS, backoff=0)


@pytest.mark.parametrize(("kind", "error"), RETRIED)
async def test_persistent_fault_gives_typed_error_after_all_attempts(meter, fast_client, kind, error):
    meter.faults.add_script(*[kind] * ATTEMPTS)
    with pytest.raises(error) as raised:
        await connect(fast_client, meter).prepay_balance()
    assert raised.value.attempts == ATTEMPTS
    assert meter.stats.connections == ATTEMPTS
    assert meter.faults.injected == {kind: ATTEMPTS}
    if issubclass(error, MeterUnreachable):
        assert isinstance(raised.value, Unreachable) and raised.value.exit_code == 3


@pytest.mark.parametrize(("kind", "_"), RETRIED)
async def test_transient_fault_is_retried_to_success(meter, fast_client, kind, _):
    meter.faults.add_script(kind, kind)
    assert await connect(fast_client, meter).serial_read() == meter.serial
    assert meter.stats.connections == 3


async def test_nak_is_not_retried_and_is_a_refusal(meter, fast_client):
    meter.faults.add_script("nak:6")
    with pytest.raises(Nak) as raised:
        await connect(fast_client, meter).prepay_balance()
    assert (raised.value.code, raised.value.code_name, raised.value.attempts) == (
        6,
        "security_not_granted",
        1,
    )
    assert isinstance(raised.value, Refused) and raised.value.exit_code == 4
    assert meter.stats.connections == 1


async def test_offline_meter_refuses_connections(meter, fast_client):
    await meter.set_offline()
    with pytest.raises(ConnectionRefused) as raised:
        await connect(fast_client, meter).csq()
    assert raised.value.attempts == ATTEMPTS
    await meter.set_offline(False)
    assert 0 <= await connect(fast_client, meter).csq() <= 31


async def test_timeouts_and_backoff_take_the_configured_time(meter):
    meter.faults.add_script("silence", "silence")
    client = EmopClient(pacing=0, timeout=0.2, attempts=2, backoff=0)
    started = time.monotonic()
    with pytest.raises(ReplyTimeout):
        await connect(client, meter).csq()
    assert 0.4 <= time.monotonic() - started < 3

    await meter.set_offline()
    client = EmopClient(pacing=0, timeout=1, attempts=3, backoff=0.1, backoff_max=1)
    started = time.monotonic()
    with pytest.raises(ConnectionRefused):
        await connect(client, meter).csq()
    assert time.monotonic() - started >= 0.1 + 0.2  # exponential: 0.1, 0.2 (+ jitter)


async def test_rate_based_faults_are_survived_with_enough_attempts(start_fleet):
    fleet = await start_fleet(count=1, time_factor=0)
    meter = fleet.meters[0]
    for kind, rate in {"refuse": 0.2, "bad_crc": 0.15, "close": 0.1, "truncated": 0.1}.items():
        meter.faults.set_rate(kind, rate)
    client = EmopClient(pacing=0, timeout=0.5, attempts=12, backoff=0)
    m = connect(client, meter)
    for _ in range(30):
        assert await m.serial_read() == meter.serial
    assert sum(meter.faults.injected.values()) >= 10
    assert meter.stats.rejected_busy == 0


async def test_many_callers_never_hold_two_sessions_to_one_meter(start_fleet):
    fleet = await start_fleet(count=2, time_factor=0, latency=0.005)
    client = EmopClient(pacing=0, timeout=2, attempts=1, backoff=0)
    other_client = EmopClient(pacing=0, timeout=2, attempts=1, backoff=0)  # another worker, same process
    target = fleet.meters[0]
    handles = [connect(client, target), connect(client, target), connect(other_client, target)]
    operations = ["csq", "prepay_balance", "serial_read", "read", "tariffs_active_read", "clock_time_read"]
    calls = [getattr(handles[i % 3], operations[i % len(operations)])() for i in range(60)]
    await asyncio.gather(*calls)
    assert target.stats.rejected_busy == 0
    assert target.stats.exchanges >= 60


async def test_the_emulator_does_detect_a_second_session(meter):
    """Negative control: two raw connections at once, the second is refused and counted."""
    first = await asyncio.open_connection(meter.host, meter.port)
    await asyncio.sleep(0.05)
    second_reader, second_writer = await asyncio.open_connection(meter.host, meter.port)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await second_reader.readexactly(1)
    assert meter.stats.rejected_busy == 1
    for writer in (first[1], second_writer):
        writer.close()


async def test_pacing_spaces_exchanges_with_one_meter(meter):
    client = EmopClient(pacing=0.15, timeout=2, attempts=1, backoff=0)
    handle = connect(client, meter)
    started = time.monotonic()
    await asyncio.gather(handle.csq(), handle.csq(), handle.serial_read())
    assert time.monotonic() - started >= 0.3


async def test_a_connection_that_takes_too_long_times_out_and_other_cancellations_pass(monkeypatch):
    """The exchange's own timer bounds the connection (a meter behind a slow network); a cancellation from
    elsewhere (the worker stopping, an outer timeout) is not mistaken for it."""
    from flows.emop import transport

    async def slow_network(*args, **kwargs):
        await asyncio.sleep(60)

    monkeypatch.setattr(transport, "_connect", slow_network)
    started = time.monotonic()
    with pytest.raises(ReplyTimeout, match="connecting to 127.0.0.1:9 took longer than 0.2 s"):
        await transport.exchange_once("127.0.0.1", 9, b"request", 0.2)
    assert 0.15 < time.monotonic() - started < 2
    waiting = asyncio.create_task(transport.exchange_once("127.0.0.1", 9, b"request", 5))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.exchange_once("127.0.0.1", 9, b"request", 5)

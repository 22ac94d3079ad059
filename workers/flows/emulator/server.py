"""The TCP side of one emulated meter: a listener on its own port, one session at a time.

Like a meter's modem it serves one connection at a time: a connection arriving
while another is mid-exchange (request expected or being answered, peer still
there) is reset and counted in ``stats.rejected_busy`` (so a test can prove a
client never holds two sessions). A connection that has been answered and is
idle is displaced by a new one. Each answer is written with a single write,
after the configured latency; faults come from the meter's ``FaultPlan``.

Each connection is an ``asyncio.Protocol`` (``_Session``): frames are cut from
what arrives, answered after the latency by a timer, and one timer bounds the
wait for the next frame. No task or stream per connection: a fleet of
thousands answers thousands of exchanges a second (bench/bench_fleet.py).
"""

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass

from flows.emop.errors import BadCrc, FrameError
from flows.emop.frame import frame_size, parse_frame
from flows.emulator.faults import FaultPlan
from flows.emulator.model import NAK_CRC, MeterModel

REQUEST_SECONDS = 30.0  # a new connection must send its first frame within this
IDLE_SECONDS = 10.0  # an answered connection is kept this long for a further frame
SILENCE_SECONDS = 300.0  # a "silent" meter holds the connection at most this long


@dataclass
class MeterStats:
    connections: int = 0
    exchanges: int = 0
    rejected_busy: int = 0  # connections refused because another session was in progress
    displaced_idle: int = 0  # answered, idle connections closed because a new one arrived


def reset(transport: asyncio.BaseTransport) -> None:
    """Close with an RST (SO_LINGER 0): the client sees the connection refused/reset."""
    transport_socket = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        if transport_socket is not None:
            transport_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def peer_gone(transport: asyncio.BaseTransport) -> bool:
    """True if the peer has closed its side (an EOF is waiting), checked without consuming data."""
    transport_socket = transport.get_extra_info("socket")
    if transport_socket is None:
        return True
    try:
        probe = socket.socket(fileno=socket.dup(transport_socket.fileno()))
    except OSError:
        return True
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.close()


class _Session(asyncio.Protocol):
    """One connection to the meter: requests in, answers out, until the peer leaves or goes quiet."""

    def __init__(self, meter: "EmulatedMeter"):
        self.meter = meter
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.busy = True  # a request is expected or being answered
        self.answering = False  # an answer is waiting for its latency
        self.silent = False  # a "silence" fault: read and ignore everything
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        meter = self.meter
        meter.stats.connections += 1
        if any(other.busy and not peer_gone(other.transport) for other in meter.sessions):
            meter.stats.rejected_busy += 1
            self.closed = True
            reset(transport)
            return
        for other in list(meter.sessions):
            meter.stats.displaced_idle += not other.busy
            other.close(abort=True)
        if meter.faults.on_connect() is not None:  # refuse
            self.closed = True
            reset(transport)
            return
        meter.sessions.add(self)
        self._wait(REQUEST_SECONDS)

    def connection_lost(self, exc) -> None:
        self.close()

    def eof_received(self) -> bool:
        self.close()
        return False

    def close(self, abort: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.meter.sessions.discard(self)
        if not self.closed:
            self.closed = True
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def _wait(self, seconds: float) -> None:
        """Close the connection if nothing arrives within ``seconds`` (one timer, moved forward lazily)."""
        self.deadline = self.loop.time() + seconds
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.closed:
            return
        if self.answering or self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(max(self.deadline, self.loop.time() + 0.01), self._expired)
            return
        self.close()

    # -- requests -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed or self.silent:
            return
        self.buffer = self.buffer + data if self.buffer else data
        if not self.answering:
            self._next_frame()

    def _next_frame(self) -> None:
        buffer = self.buffer
        if len(buffer) < 2:
            return
        try:
            size = frame_size(buffer[:2])
        except FrameError:
            self.close()
            return
        if len(buffer) < size:
            return
        raw, self.buffer = buffer[:size], buffer[size:]
        self.busy = True
        self._answer(raw)

    def _answer(self, raw: bytes) -> None:
        meter = self.meter
        meter.stats.exchanges += 1
        try:
            request = parse_frame(raw)
        except BadCrc:
            reply = meter.model.nak_reply(parse_frame(raw, check_crc=False), NAK_CRC)
        except FrameError:
            self.close()
            return
        else:
            reply = None
        fault = meter.faults.on_exchange()
        if fault is not None and fault.kind == "close":
            self.close()
            return
        if fault is not None and fault.kind == "silence":
            self.silent = True
            self.buffer = b""
            self._wait(SILENCE_SECONDS)
            return
        if reply is None:
            if fault is not None and fault.kind == "nak":
                reply = meter.model.nak_reply(request, fault.nak_code)
            else:
                reply = meter.model.respond(request)
                if request.format == 1 and request.data[4:5] == b"\x01" and meter.on_change:
                    meter.on_change()
        if fault is not None and fault.kind == "bad_crc":
            reply = reply[:-1] + bytes((reply[-1] ^ 0xFF,))
        if fault is not None and fault.kind == "truncated":
            reply, truncate = reply[: len(reply) // 2], True
        else:
            truncate = False
        self.answering = True
        if meter.latency:
            self.loop.call_later(meter.latency, self._send, reply, truncate)
        else:
            self._send(reply, truncate)

    def _send(self, reply: bytes, truncate: bool) -> None:
        self.answering = False
        if self.closed:
            return
        self.transport.write(reply)
        if truncate:
            self.close()
            return
        self.busy = False
        self._wait(IDLE_SECONDS)
        if self.buffer:
            self._next_frame()


class EmulatedMeter:
    """A meter model served on host:port (port 0: an ephemeral port, known after ``start``)."""

    def __init__(
        self, model: MeterModel, host: str, port: int, latency: float, faults: FaultPlan, on_change=None
    ):
        self.model = model
        self.host = host
        self.port = port
        self.latency = latency
        self.faults = faults
        self.stats = MeterStats()
        self.on_change = on_change
        self._server: asyncio.Server | None = None
        self.sessions: set[_Session] = set()

    @property
    def serial(self) -> str:
        return self.model.serial

    @property
    def hardware(self) -> str:
        return self.model.hardware

    @property
    def online(self) -> bool:
        return self._server is not None

    def describe(self) -> dict:
        return {"serial": self.serial, "host": self.host, "port": self.port, "hardware": self.hardware}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self), self.host, self.port, reuse_address=True, backlog=64
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.set_offline()
        for session in list(self.sessions):
            session.close(abort=True)

    async def set_offline(self, offline: bool = True) -> None:
        """Offline: nothing listens on the port (connections are refused); back online on the same port."""
        if offline and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif not offline and self._server is None:
            await self.start()

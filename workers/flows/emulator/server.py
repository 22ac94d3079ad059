"""The TCP side of one emulated meter: a listener on its own port, one session at a time.

Like a meter's modem it serves one connection at a time: a connection arriving
while another is mid-exchange (request expected or being answered, peer still
there) is reset and counted in ``stats.rejected_busy`` (so a test can prove a
client never holds two sessions). A connection that has been answered and is
idle is displaced by a new one. Each answer is written with a single write,
after the configured latency; faults come from the meter's ``FaultPlan``.
"""

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass

from flows.emop.errors import BadCrc, FrameError, MeterUnreachable
from flows.emop.frame import parse_frame
from flows.emop.transport import read_frame
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


class _Connection:
    __slots__ = ("writer", "busy")

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.busy = True

    def peer_gone(self) -> bool:
        """True if the peer has closed its side (an EOF is waiting), checked without consuming data."""
        transport_socket = self.writer.get_extra_info("socket")
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


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0): the client sees the connection refused/reset."""
    transport_socket = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if transport_socket is not None:
            transport_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


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
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task] = set()

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
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, backlog=64
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.set_offline()
        for connection in list(self._connections):
            connection.writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)

    async def set_offline(self, offline: bool = True) -> None:
        """Offline: nothing listens on the port (connections are refused); back online on the same port."""
        if offline and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif not offline and self._server is None:
            await self.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        self.stats.connections += 1
        busy = [c for c in self._connections if c.busy and not c.peer_gone()]
        if busy:
            self.stats.rejected_busy += 1
            reset(writer)
            return
        for other in list(self._connections):
            self.stats.displaced_idle += not other.busy
            other.writer.transport.abort()
            self._connections.discard(other)
        fault = self.faults.on_connect()
        if fault is not None:  # refuse
            reset(writer)
            return
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            await self._serve(connection, reader, writer)
        finally:
            self._connections.discard(connection)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, connection: _Connection, reader, writer) -> None:
        first = True
        while True:
            try:
                async with asyncio.timeout(REQUEST_SECONDS if first else IDLE_SECONDS):
                    raw = await read_frame(reader)
            except (FrameError, MeterUnreachable, TimeoutError, ConnectionError):
                return
            first = False
            connection.busy = True
            self.stats.exchanges += 1
            try:
                request = parse_frame(raw)
            except BadCrc:
                reply = self.model.nak_reply(parse_frame(raw, check_crc=False), NAK_CRC)
            except FrameError:
                return
            else:
                reply = None
            fault = self.faults.on_exchange()
            if fault is not None and fault.kind == "close":
                return
            if fault is not None and fault.kind == "silence":
                with contextlib.suppress(TimeoutError, ConnectionError):
                    async with asyncio.timeout(SILENCE_SECONDS):
                        while await reader.read(4096):
                            pass
                return
            if reply is None:
                if fault is not None and fault.kind == "nak":
                    reply = self.model.nak_reply(request, fault.nak_code)
                else:
                    reply = self.model.respond(request)
                    if request.format == 1 and request.data[4:5] == b"\x01" and self.on_change:
                        self.on_change()
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault is not None and fault.kind == "bad_crc":
                reply = reply[:-1] + bytes((reply[-1] ^ 0xFF,))
            if fault is not None and fault.kind == "truncated":
                writer.write(reply[: len(reply) // 2])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            writer.write(reply)
            connection.busy = False
            try:
                await writer.drain()
            except ConnectionError:
                return

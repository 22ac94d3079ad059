"""One EMOP exchange over TCP: connect (directly or through SOCKS5), send a frame, read a whole frame.

Every failure becomes a typed error from ``flows.emop.errors``; ``RETRYABLE``
says which ones a retry may cure (the transport ones and damaged frames; never a
NAK or a payload that decodes wrongly: those would come back the same).

An exchange is a small ``asyncio.Protocol`` (``_Exchange``) rather than a
stream reader and writer: one object and one future per exchange, the request
written as soon as the connection is made, the reply taken as soon as its
announced length has arrived. A fleet read makes thousands of exchanges a
second, and the streams' extra objects, tasks and wake-ups were most of the
client's CPU (bench/bench_fleet.py).
"""

import asyncio

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy

from flows.emop.errors import (
    ConnectionClosed,
    ConnectionRefused,
    FrameError,
    MeterUnreachable,
    ProxyFailed,
    ReplyTimeout,
    TruncatedFrame,
)
from flows.emop.frame import frame_size

RETRYABLE = (MeterUnreachable, FrameError)
SOCKS_CONNECTION_REFUSED = 5


class _Exchange(asyncio.Protocol):
    """Writes the request once connected; resolves ``reply`` with exactly one frame, or a typed error."""

    __slots__ = ("request", "reply", "where", "buffer", "size", "transport")

    def __init__(self, request: bytes, reply: asyncio.Future, where: str):
        self.request = request
        self.reply = reply
        self.where = where
        self.buffer = b""
        self.size = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.reply.done():
            return
        buffer = self.buffer = self.buffer + data if self.buffer else data
        if not self.size:
            if len(buffer) < 2:
                return
            try:
                self.size = frame_size(buffer[:2])
            except FrameError as error:
                self._fail(error)
                return
        if len(buffer) >= self.size:
            self.reply.set_result(buffer[: self.size] if len(buffer) > self.size else buffer)
            self.transport.close()

    def eof_received(self) -> bool:
        self._fail(self._ended(None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(self._ended(exc))

    def _ended(self, exc: Exception | None) -> Exception:
        if isinstance(exc, ConnectionResetError):
            return ConnectionRefused(f"{self.where} reset the connection")
        if self.buffer:
            got = len(self.buffer)
            if got == 1:
                return TruncatedFrame("the connection ended after 1 byte of a frame")
            return TruncatedFrame(f"the connection ended after {got} of {self.size} bytes")
        if exc is not None:
            return ConnectionClosed(f"{self.where} dropped the connection: {exc}")
        return ConnectionClosed("the meter closed the connection without answering")

    def _fail(self, error: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(error)
        if self.transport is not None:
            self.transport.close()


async def _connect(loop: asyncio.AbstractEventLoop, factory, host: str, port: int, timeout: float,
                   proxy: str | None):
    """The transport to host:port (the caller bounds the time), raising only MeterUnreachable subclasses."""
    where = f"{host}:{port}"
    try:
        if proxy is None:
            transport, _ = await loop.create_connection(factory, host, port)
        else:
            sock = await Proxy.from_url(proxy).connect(host, port, timeout=timeout)
            transport, _ = await loop.create_connection(factory, sock=sock)
        return transport
    except ProxyTimeoutError:
        raise ReplyTimeout(f"the proxy did not reach {where} within {timeout:g} s") from None
    except ProxyConnectionError as error:
        raise ProxyFailed(f"cannot reach the SOCKS5 proxy: {error}") from None
    except ProxyError as error:
        if getattr(error, "error_code", None) == SOCKS_CONNECTION_REFUSED:
            raise ConnectionRefused(f"{where} refused the connection (via proxy)") from None
        raise MeterUnreachable(f"the proxy could not connect to {where}: {error}") from None
    except ConnectionRefusedError:
        raise ConnectionRefused(f"{where} refused the connection") from None
    except OSError as error:
        raise MeterUnreachable(f"cannot connect to {where}: {error.strerror or error}") from None


async def exchange_once(
    host: str, port: int, request: bytes, timeout: float, proxy: str | None = None
) -> bytes:
    """Send one request frame on a new connection and return the raw reply frame. ``timeout`` bounds
    the connection, then the reply."""
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    where = f"{host}:{port}"
    transport = None
    try:
        async with asyncio.timeout(timeout) as deadline:
            transport = await _connect(loop, lambda: _Exchange(request, reply, where), host, port, timeout, proxy)
            deadline.reschedule(loop.time() + timeout)
            return await reply
    except TimeoutError:
        if transport is None:
            raise ReplyTimeout(f"connecting to {where} took longer than {timeout:g} s") from None
        raise ReplyTimeout(f"no reply from {where} within {timeout:g} s") from None
    finally:
        if not reply.done():
            reply.cancel()
        if transport is not None:
            transport.close()


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Exactly one frame from a stream: two bytes tell the length, then read until it is all there."""
    try:
        head = await reader.readexactly(2)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise TruncatedFrame("the connection ended after 1 byte of a frame") from None
        raise ConnectionClosed("the meter closed the connection without answering") from None
    size = frame_size(head)
    try:
        return head + await reader.readexactly(size - 2)
    except asyncio.IncompleteReadError as error:
        got = 2 + len(error.partial)
        raise TruncatedFrame(f"the connection ended after {got} of {size} bytes") from None

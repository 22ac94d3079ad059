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
    """Writes the request once connected; resolves ``reply`` with exactly one frame, or a typed error. Its one
    timer bounds the connection, then the reply (asyncio.timeout costs more, per exchange)."""

    __slots__ = ("request", "reply", "where", "buffer", "size", "transport", "timeout", "timer", "task")

    def __init__(self, request: bytes, reply: asyncio.Future, where: str, timeout: float):
        self.request = request
        self.reply = reply
        self.where = where
        self.buffer = b""
        self.size = 0
        self.transport: asyncio.Transport | None = None
        self.timeout = timeout
        self.task = asyncio.current_task()
        self.timer = reply.get_loop().call_later(timeout, self._connecting_too_long)

    def _connecting_too_long(self) -> None:
        self.timer = None
        if self.transport is None and not self.reply.done():
            self.reply.set_exception(ReplyTimeout(f"connecting to {self.where} took longer than {self.timeout:g} s"))
            self.task.cancel()  # it waits for the connection: exchange_once turns this into the timeout

    def _no_reply(self) -> None:
        self.timer = None
        self._fail(ReplyTimeout(f"no reply from {self.where} within {self.timeout:g} s"))

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.reply.get_loop().call_later(self.timeout, self._no_reply)

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
            self._close()

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
        self._close()

    def _close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
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
    exchange = _Exchange(request, reply, f"{host}:{port}", timeout)
    cancelling = exchange.task.cancelling()
    try:
        await _connect(loop, lambda: exchange, host, port, timeout, proxy)
        return await reply
    except asyncio.CancelledError:
        timed_out = reply.done() and not reply.cancelled() and isinstance(reply.exception(), ReplyTimeout)
        if timed_out and exchange.task.uncancel() <= cancelling:  # our timer, nobody else, cancelled the connect
            raise reply.exception() from None
        raise
    finally:
        if not reply.done():
            reply.cancel()
        exchange._close()


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

"""One EMOP exchange over TCP: connect (directly or through SOCKS5), send a frame, read a whole frame.

Every failure becomes a typed error from ``flows.emop.errors``; ``RETRYABLE``
says which ones a retry may cure (the transport ones and damaged frames; never a
NAK or a payload that decodes wrongly: those would come back the same).
"""

import asyncio
import contextlib

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


async def open_stream(host: str, port: int, timeout: float, proxy: str | None = None):
    """(reader, writer) to host:port, raising only MeterUnreachable subclasses."""
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            if proxy is None:
                return await asyncio.open_connection(host, port)
            sock = await Proxy.from_url(proxy).connect(host, port, timeout=timeout)
            return await asyncio.open_connection(sock=sock)
    except TimeoutError:
        raise ReplyTimeout(f"connecting to {where} took longer than {timeout:g} s") from None
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


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Exactly one frame: two bytes tell the length, then read until it is all there."""
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


async def exchange_once(
    host: str, port: int, request: bytes, timeout: float, proxy: str | None = None
) -> bytes:
    """Send one request frame on a new connection and return the raw reply frame."""
    reader, writer = await open_stream(host, port, timeout, proxy)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            await writer.drain()
            return await read_frame(reader)
    except TimeoutError:
        raise ReplyTimeout(f"no reply from {host}:{port} within {timeout:g} s") from None
    except ConnectionResetError:
        raise ConnectionRefused(f"{host}:{port} reset the connection") from None
    except (BrokenPipeError, OSError) as error:
        raise ConnectionClosed(f"{host}:{port} dropped the connection: {error}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

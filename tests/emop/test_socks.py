"""The client through a SOCKS5 proxy (as production reaches meters); the proxy is written for the test."""

import asyncio
import contextlib
import socket

import pytest

from flows.emop.client import EmopClient
from flows.emop.errors import ConnectionRefused, ProxyFailed


class Socks5Proxy:
    """RFC 1928 CONNECT with RFC 1929 username/password, relaying bytes both ways."""

    def __init__(self, username: str, password: str):
        self.username, self.password = username.encode(), password.encode()
        self.connections = 0
        self.server = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer):
        try:
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            if version != 5 or 2 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x02")
            _, ulen = await reader.readexactly(2)
            username = await reader.readexactly(ulen)
            (plen,) = await reader.readexactly(1)
            password = await reader.readexactly(plen)
            if (username, password) != (self.username, self.password):
                writer.write(b"\x01\x01")
                return
            writer.write(b"\x01\x00")
            _, command, _, address_type = await reader.readexactly(4)
            if address_type == 1:
                host = socket.inet_ntoa(await reader.readexactly(4))
            else:
                (length,) = await reader.readexactly(1)
                host = (await reader.readexactly(length)).decode()
            port = int.from_bytes(await reader.readexactly(2), "big")
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            except ConnectionRefusedError:
                writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            self.connections += 1
            writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()


async def _pipe(reader, writer):
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@pytest.fixture
async def proxy():
    server = Socks5Proxy("meter-user", "s3cret")
    port = await server.start()
    server.url = f"socks5://meter-user:s3cret@127.0.0.1:{port}"
    yield server
    await server.stop()


@pytest.fixture
def proxied(meter, proxy):
    """The meter, reached through the proxy."""
    client = EmopClient(pacing=0, attempts=2, timeout=3, backoff=0, proxy=proxy.url)
    return client.meter(meter.serial, host=meter.host, port=meter.port)


async def test_operations_through_the_proxy(meter, proxy, proxied):
    handle = proxied
    assert await handle.serial_read() == meter.serial
    assert (await handle.tariffs_active_read()).standing_charge > 0
    assert proxy.connections == meter.stats.connections == 11


async def test_a_refusal_behind_the_proxy_is_a_refusal(meter, proxied):
    await meter.set_offline()
    with pytest.raises(ConnectionRefused) as raised:
        await proxied.csq()
    assert raised.value.attempts == 2


async def test_an_unreachable_proxy(proxy, proxied):
    await proxy.stop()
    with pytest.raises(ProxyFailed) as raised:
        await proxied.csq()
    assert raised.value.exit_code == 3
    await proxy.start()  # so the fixture can stop it again

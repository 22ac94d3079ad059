"""A slow client gets a bounded queue and a resync, never unbounded memory;
the gateway reconnects after PostgreSQL restarts and catches up from the
change log, delivering every commit once."""

import asyncio
import json
import secrets
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import psycopg
import pytest
import websockets

from flows import auth
from flows.db import migrations
from flows.stack.postgres import Cluster, free_port
from tests.support.realtime import GatewayProcess, SseClient, expected_changes, head, until


def add_meters(conn, esco: str, count: int, first: int) -> list[str]:
    return [conn.execute("SELECT api.register_meter(serial => %s, esco => %s) ->> 'id'",
                         (f"EML{3900000000 + first + i}", esco)).fetchone()[0] for i in range(count)]


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_a_slow_client_is_told_to_resync(stack, tmp_path):
    api = stack.api
    gateway = GatewayProcess(api, tmp_path, "--queue-limit", "3")
    gateway.start()
    try:
        esco, code = api.new_esco()
        with api.sql() as conn:
            add_meters(conn, esco, 30, 100)
        async with websockets.connect(f"{gateway.ws_url}?token={api.token('operator', code)}", max_queue=1,
                                      max_size=None) as socket:
            assert json.loads(await socket.recv())["type"] == "ready"
            await socket.send(json.dumps({"type": "subscribe", "id": "s", "relation": "meter_shadows"}))
            # The client stops reading while 1,500 commits of 30 rows each (about 30 MB) go out.
            with api.sql() as conn:
                conn.execute("""DO $$ BEGIN FOR i IN 1..1500 LOOP
                                    UPDATE flows.meter_shadows SET csq = i % 31
                                    WHERE id IN (SELECT id FROM flows.meter_registry WHERE esco = %s);
                                    COMMIT; END LOOP; END $$""".replace("%s", f"'{esco}'"))
            last = head(api.db_url)
            async with httpx.AsyncClient() as http:
                for _ in range(100):
                    metrics = (await http.get(f"{gateway.url}/metrics")).text
                    if metric(metrics, "flows_gateway_queue_drops_total") > 0:
                        break
                    await asyncio.sleep(0.2)
            assert metric(metrics, "flows_gateway_queue_drops_total") > 0
            assert metric(metrics, 'flows_gateway_resyncs_total{reason="slow"}') >= 1
            # Reading again: a resync, then changes go on after its position.
            kinds, resync = [], None
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 20))
                kinds.append(message["type"])
                if message["type"] == "resync":
                    resync = message
                if message["type"] in ("change", "resync") and message["id"] >= last:
                    break
            assert resync is not None and resync["reason"] == "slow client"
            assert kinds.count("change") < 1500, "the backlog was dropped, not kept"
    finally:
        gateway.stop()


@pytest.fixture
def own_cluster():
    base = Path(tempfile.mkdtemp(prefix="flows-rt-restart-", dir="/tmp"))
    base.chmod(0o755)
    cluster = Cluster(base / "pgdata", base / "socket", base / "log" / "pg.log", free_port(), trust_tcp=True,
                      settings={"fsync": "off"})
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


async def test_the_gateway_survives_a_postgresql_restart(own_cluster, tmp_path):
    admin = own_cluster.tcp_url("postgres", "postgres")
    migrations.migrate(admin)
    password, secret = secrets.token_urlsafe(12), secrets.token_urlsafe(40)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE flows_authenticator PASSWORD '{password}'")
        esco = conn.execute("INSERT INTO flows.escos (code, name) VALUES ('RST', 'r') RETURNING id").fetchone()[0]
        meters = add_meters(conn, esco, 3, 200)
    gateway = GatewayProcess(SimpleNamespace(db_url=admin, authenticator_password=password, jwt_secret=secret),
                             tmp_path)
    gateway.start()
    token = auth.mint_token(secret, "operator", "RST", auth.parse_expiry("1h"))
    start = head(admin)
    client = SseClient(gateway.url, token, "meter_shadows", since=start).start()

    def change(balance: int) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("UPDATE flows.meter_shadows SET balance = %s WHERE id = ANY (%s::uuid[])", (balance, meters))

    try:
        await until(lambda: client.connects == 1, what="connected")
        change(1)
        await until(lambda: client.received.events, what="first change")
        own_cluster.stop()
        own_cluster.start()
        for balance in (2, 3, 4):  # committed before the gateway is back: caught up from the change log
            change(balance)
        await until(lambda: len(client.received.events) >= 4, timeout=30, what="changes after the restart")
        change(5)
        await until(lambda: len(client.received.events) >= 5, timeout=30, what="live again")
        await asyncio.sleep(0.5)
        expected = expected_changes(admin, "meter_shadows", set(meters), start, head(admin))
        assert client.received.by_position() == expected and len(expected) == 5
        assert client.received.ids() == sorted(set(client.received.ids()))
        balances = [m["changes"][0]["row"]["balance"] for m in client.received.events]
        assert balances[-1] == 5
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{gateway.url}/metrics")).text
        assert metric(metrics, "flows_gateway_feed_reconnects_total") >= 1
    finally:
        await client.stop()
        gateway.stop()

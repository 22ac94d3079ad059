"""PostgreSQL restarts while a worker runs: it reconnects (pool and LISTEN)
and finishes the queue; commands caught mid-flight are claimed again when
their lease runs out."""

import asyncio
import secrets
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from flows.db import migrations
from flows.emulator import MeterConfig
from flows.stack.postgres import Cluster, free_port
from tests.worker.conftest import serials, wait_for


@pytest.fixture
def own_cluster():
    base = Path(tempfile.mkdtemp(prefix="flows-restart-", dir="/tmp"))
    base.chmod(0o755)
    cluster = Cluster(base / "pgdata", base / "socket", base / "log" / "pg.log", free_port(), trust_tcp=True,
                      settings={"fsync": "off"})
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


async def test_worker_survives_a_postgresql_restart(own_cluster, fleet_of, running_worker):
    admin = own_cluster.tcp_url("postgres", "postgres")
    migrations.migrate(admin)
    password = secrets.token_urlsafe(12)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE flows_worker PASSWORD '{password}'")
        esco = conn.execute("INSERT INTO flows.escos (code, name, max_running_commands) VALUES ('RST', 'r', 100)"
                            " RETURNING id").fetchone()[0]
    fleet = await fleet_of(*(MeterConfig(serial=s) for s in serials(8, 201)), latency=0.15)
    with psycopg.connect(admin, autocommit=True) as conn:
        for meter in fleet.meters:
            conn.execute("SELECT api.register_meter(serial => %s, hardware => %s, ip_address => '127.0.0.1',"
                         " emop_port => %s, esco => %s)", (meter.serial, meter.hardware, meter.port, esco))
    await running_worker(own_cluster.tcp_url("postgres", "flows_worker", password), lease=timedelta(seconds=3),
                         emop_timeout=1)

    def counts():
        with psycopg.connect(admin) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM flows.meter_commands GROUP BY status").fetchall())

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT api.request_sync(NULL, ARRAY['reads', 'csq', 'prepay_balance', 'voltage'])")
    await wait_for(lambda: counts().get("done", 0) >= 1, timeout=20)
    await asyncio.to_thread(own_cluster.stop)  # fast shutdown, mid-queue
    await asyncio.sleep(1.5)
    await asyncio.to_thread(own_cluster.start)
    # work queued while the database was away is picked up too
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT api.request_sync(NULL, ARRAY['csq'])")
    await wait_for(lambda: counts() == {"done": 16}, timeout=60)

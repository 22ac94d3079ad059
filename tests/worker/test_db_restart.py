"""PostgreSQL restarts while a worker runs: it reconnects (pool and LISTEN)
and finishes the queue; commands caught mid-flight are claimed again when
their lease runs out."""

import asyncio
import secrets
from datetime import timedelta

import psycopg
import pytest

from flows import factories
from flows.db import migrations
from flows.emulator import MeterConfig
from tests.support.server import throwaway_cluster
from tests.worker.conftest import serials, wait_for


@pytest.fixture
def own_cluster():
    with throwaway_cluster("restart", {"fsync": "off"}) as cluster:
        yield cluster


async def test_worker_survives_a_postgresql_restart(own_cluster, fleet_of, running_worker):
    admin = own_cluster.tcp_url("postgres", "postgres")
    migrations.migrate(admin)
    password = secrets.token_urlsafe(12)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE flows_worker PASSWORD '{password}'")
        esco = factories.add_esco(conn, "RST", max_running_commands=100)
    fleet = await fleet_of(*(MeterConfig(serial=s) for s in serials(8, 201)), latency=0.15)
    with psycopg.connect(admin, autocommit=True) as conn:
        factories.add_emulated_meters(conn, esco.id, fleet.meters)
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

"""A worker killed with SIGKILL mid-push loses no command and credits no token twice;
a worker told to stop (SIGTERM) finishes or releases what it holds; workers
survive PostgreSQL restarting under them."""

import asyncio
import signal
from decimal import Decimal

import psycopg

from flows.emulator import MeterConfig
from tests.support import crash
from tests.worker.conftest import VENDOR_SECRET, new_esco, register, serials, wait_for


async def test_sigkill_during_token_pushes(stack, fleet_of, tmp_path):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s, balance=Decimal("3")) for s in serials(6, 101)), latency=0.04)
    ids = register(stack, fleet, esco)
    report = await crash.run(stack.api.db_url, stack.worker_url, fleet, ids, tmp_path, VENDOR_SECRET, kills=8)
    assert report.commands == 18 and report.done + report.failed == 18, report
    assert not report.problems, report
    assert report.done >= 12, report  # most get through despite the kills


async def test_sigterm_finishes_or_releases(stack, fleet_of, tmp_path):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s) for s in serials(4, 121)), latency=0.3)
    ids = register(stack, fleet, esco)
    with psycopg.connect(stack.api.db_url, autocommit=True) as conn:
        for meter_id in ids.values():
            conn.execute("SELECT api.request_sync(ARRAY[%s]::uuid[])", (meter_id,))
    process = await crash.start_worker(stack.worker_url, tmp_path, VENDOR_SECRET, tmp_path / "worker.log")

    def running():
        with psycopg.connect(stack.api.db_url) as conn:
            return conn.execute("SELECT count(*) FROM flows.meter_commands WHERE status = 'running'"
                                " AND meter_id = ANY(%s)", (list(ids.values()),)).fetchone()[0]

    await wait_for(running)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 15) == 0
    with psycopg.connect(stack.api.db_url) as conn:
        states = conn.execute("SELECT status, attempts, lease_owner FROM flows.meter_commands"
                              " WHERE meter_id = ANY(%s)", (list(ids.values()),)).fetchall()
    # each is done, or back to pending with its attempt not counted; none is left held
    assert all(status in ("done", "pending") and owner is None for status, _, owner in states), states
    assert all(attempts == 0 for status, attempts, _ in states if status == "pending"), states
    assert "released" in (tmp_path / "worker.log").read_text() or all(s == "done" for s, _, _ in states)

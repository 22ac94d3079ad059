"""Meter operations under real conditions, with the emulated fleet: a top-up never waits behind a backfill,
clean stops hand work back, a drained worker leaves and others take over, a worker serves only its ESCOs,
and an operator's emop never opens a second session to a meter a worker is talking to."""

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flows import factories
from flows.emulator import MeterConfig
from tests.support import crash
from tests.worker.conftest import VENDOR_SECRET, new_esco, register, serials, wait_for

EMOP = str(Path(sys.executable).parent / "emop")
DAYS = 30


def backfill_range() -> tuple[datetime, datetime]:
    """The 30 whole UTC days before today."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS), today


def request_backfill(stack, meter_id: str) -> str:
    start, end = backfill_range()
    with stack.sql() as conn:
        row = conn.execute("SELECT id FROM api.read_profile_log(%s, %s, %s)", (meter_id, start, end)).fetchone()
    return str(row[0])


def command(stack, command_id: str) -> dict:
    with stack.sql() as conn:
        row = conn.execute("SELECT to_jsonb(c) FROM flows.meter_commands c WHERE id = %s", (command_id,)).fetchone()
    return row[0]


def half_hours(stack, meter_id: str) -> int:
    start, end = backfill_range()
    with stack.sql() as conn:
        return conn.execute("SELECT count(*) FROM flows.register_interval_hh h JOIN flows.meter_registers r"
                            " USING (register_id) WHERE r.meter_id = %s AND h.source = 'profile_log'"
                            " AND h.timestamp >= %s AND h.timestamp < %s", (meter_id, start, end)).fetchone()[0]


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def backfilling_meters(count: int, first: int, latency: float = 0.02) -> list[MeterConfig]:
    return [MeterConfig(serial=s, hardware="C1.w", history_days=DAYS + 2, balance=Decimal("4"), latency=latency)
            for s in serials(count, first)]


async def test_a_top_up_waits_at_most_one_step_behind_a_30_day_backfill(stack, fleet_of, running_worker):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(*backfilling_meters(1, 201))
    ids = register(stack, fleet, esco)
    meter, meter_id = fleet.meters[0], ids[fleet.meters[0].serial]
    step_seconds = 0.25
    await running_worker(stack.worker_url, step_seconds=step_seconds, concurrency=10)
    backfill = request_backfill(stack, meter_id)
    await wait_for(lambda: "cursor" in command(stack, backfill)["progress"], timeout=30)  # a step has ended
    with stack.sql() as conn:
        token = str(conn.execute("SELECT id FROM api.send_token(%s, amount => 7.5)", (meter_id,)).fetchone()[0])
    topup = await wait_for(lambda: (c := command(stack, token))["status"] in ("done", "failed") and c, timeout=30)
    assert topup["status"] == "done", topup
    mid_backfill = command(stack, backfill)
    done = await wait_for(lambda: (c := command(stack, backfill))["status"] in ("done", "failed") and c, timeout=120)

    # credited after at most one step: claimed within a step's worth of exchanges (plus the claim), not after
    # the backfill, which went on for seconds and resumed where it yielded
    waited = seconds(topup["started_at"], topup["created_at"])
    assert waited < step_seconds + 1.5, f"the top-up waited {waited:.2f} s for the meter"
    assert mid_backfill["status"] in ("pending", "running") and mid_backfill["progress"]["cursor"] < done["progress"][
        "cursor"], "the backfill was under way when the top-up was credited"
    assert seconds(done["finished_at"], topup["finished_at"]) > 1, "and went on for seconds afterwards"
    assert done["status"] == "done" and done["attempts"] == 1, "giving the meter up burnt no attempt"
    assert done["result"]["half_hours"] == DAYS * 48 and half_hours(stack, meter_id) == DAYS * 48 * 2
    assert meter.model.balance == Decimal("4") + Decimal("7.50") and meter.model.transaction_count == 1
    assert meter.stats.rejected_busy == 0, "one session at a time"


async def test_sigterm_hands_running_work_back_and_a_new_worker_finishes_it(stack, fleet_of, running_worker,
                                                                               tmp_path):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(*backfilling_meters(3, 211))
    ids = register(stack, fleet, esco)
    backfills = [request_backfill(stack, meter_id) for meter_id in ids.values()]
    log = tmp_path / "worker.log"
    grace = 3
    process = await crash.start_worker(stack.worker_url, tmp_path, VENDOR_SECRET, log, "--step-seconds", "0.2",
                                       "--shutdown-grace", str(grace), "--lease", "60")
    await wait_for(lambda: all("cursor" in command(stack, b)["progress"] for b in backfills), timeout=60)
    process.send_signal(signal.SIGTERM)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(process.wait(), grace + 10) == 0
    assert asyncio.get_running_loop().time() - started < grace, "stepped work is handed back at its next exchange"

    stopped = [command(stack, b) for b in backfills]
    assert all(c["status"] == "pending" and c["lease_owner"] is None and c["attempts"] == 0 for c in stopped), \
        "released: pending, no lease, the attempt not burnt"
    summary = [json.loads(line) for line in log.read_text().splitlines() if '"worker stopped"' in line][-1]
    assert summary["released"] == 3 and sorted(summary["released_commands"]) == sorted(
        f"read_profile_log {m.serial}" for m in fleet.meters), summary

    resumed = await running_worker(stack.worker_url, step_seconds=0.2)
    await wait_for(lambda: all(command(stack, b)["status"] == "running" for b in backfills), timeout=5)
    assert resumed.claims <= 2, "picked up at once, in the first claims"
    finished = [await wait_for(lambda b=b: (c := command(stack, b))["status"] == "done" and c, timeout=120)
                for b in backfills]
    assert all(c["attempts"] == 1 for c in finished)
    for meter_id in ids.values():
        assert half_hours(stack, meter_id) == DAYS * 48 * 2, "resumed from its progress: nothing missing"


async def test_a_drained_worker_hands_back_and_exits_and_another_takes_over(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    fleet = await fleet_of(*backfilling_meters(2, 221))
    ids = register(stack, fleet, esco)
    leaving = await running_worker(stack.worker_url, step_seconds=0.2, concurrency=2, heartbeat=0.5)
    backfills = [request_backfill(stack, meter_id) for meter_id in ids.values()]
    await wait_for(lambda: all("cursor" in command(stack, b)["progress"] for b in backfills), timeout=60)
    staying = await running_worker(stack.worker_url, step_seconds=0.2, concurrency=2, heartbeat=0.5)
    with stack.sql() as conn:
        leaving_id = str(conn.execute("SELECT id FROM flows.workers WHERE name = %s",
                                      (leaving.config.name,)).fetchone()[0])
    async with stack.api.async_client("admin") as http:
        response = await http.post("/rpc/drain_worker", json={"id": leaving_id})
        assert response.status_code == 200 and response.json()[0]["state"] == "draining", response.text
        await asyncio.wait_for(leaving.task, 15)  # it exits
        gone = (await http.get("/workers", params={"id": f"eq.{leaving_id}"})).json()[0]
    assert gone["state"] == "stopped" and gone["drain_requested_by"], gone
    assert sorted(how for _, how in leaving.handed_back) == ["released", "released"]
    finished = [await wait_for(lambda b=b: (c := command(stack, b))["status"] == "done" and c, timeout=120)
                for b in backfills]
    assert all(c["attempts"] == 1 for c in finished)
    await wait_for(lambda: staying.finished == 2)  # the other worker took over (it counts once its batch committed)
    for meter_id in ids.values():
        assert half_hours(stack, meter_id) == DAYS * 48 * 2


async def test_a_worker_serves_only_its_escos(stack, fleet_of, running_worker):
    mine, my_code = new_esco(stack)
    other, _ = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s) for s in serials(2, 231)))
    with stack.sql() as conn:
        theirs = factories.add_emulated_meters(conn, other, fleet.meters[1:], registers_from="2020-01-01T00:00:00Z")
        mine_ids = factories.add_emulated_meters(conn, mine, fleet.meters[:1], registers_from="2020-01-01T00:00:00Z")
        requested = {meter_id: str(conn.execute("SELECT id FROM api.request_sync(ARRAY[%s]::uuid[], ARRAY['csq'])",
                                                (meter_id,)).fetchone()[0])
                     for meter_id in [*mine_ids.values(), *theirs.values()]}
    limited = await running_worker(stack.worker_url, escos=[my_code])
    [my_meter] = mine_ids.values()
    [their_meter] = theirs.values()
    await wait_for(lambda: command(stack, requested[my_meter])["status"] == "done")
    await wait_for(lambda: limited.claims >= 3)
    assert command(stack, requested[their_meter])["status"] == "pending", "not its ESCO's"
    await running_worker(stack.worker_url)  # a worker for every ESCO
    await wait_for(lambda: command(stack, requested[their_meter])["status"] == "done")


async def test_emop_waits_for_the_worker_and_never_opens_a_second_session(stack, fleet_of, running_worker, tmp_path):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 241)[0], hardware="C1.w", balance=Decimal("12.5")),
                           latency=0.05)
    ids = register(stack, fleet, esco)
    meter, meter_id = fleet.meters[0], ids[fleet.meters[0].serial]
    await running_worker(stack.worker_url, step_seconds=0.2)
    with stack.sql() as conn:  # every metric: a few dozen exchanges
        sync = str(conn.execute("SELECT id FROM api.request_sync(ARRAY[%s]::uuid[])", (meter_id,)).fetchone()[0])
    await wait_for(lambda: command(stack, sync)["status"] == "running")
    env = {**os.environ, "FLOWS_DATABASE_URL": stack.worker_url, "FLOWS_HOME": str(tmp_path)}
    emop = await asyncio.create_subprocess_exec(EMOP, "--pacing", "0", "--timeout", "2", "--json", "prepay_balance",
                                                meter.serial, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(emop.communicate(), 60)
    assert emop.returncode == 0, err.decode()
    assert Decimal(json.loads(out)["prepay_balance"]) == meter.model.balance
    assert f"waiting for meter {meter.serial}: sync" in err.decode(), "it says what it waits for"
    done = await wait_for(lambda: (c := command(stack, sync))["status"] in ("done", "failed") and c, timeout=60)
    assert done["status"] == "done", done
    assert meter.stats.rejected_busy == 0, "the meter never saw two sessions at once"
    with stack.sql() as conn:
        session = conn.execute("SELECT status, requested_by, result, finished_at < %s FROM flows.meter_commands"
                               " WHERE meter_id = %s AND kind = 'emop_session'",
                               (done["finished_at"], meter_id)).fetchall()
    assert len(session) == 1 and session[0][0] == "done" and session[0][1].startswith("emop:"), session
    assert session[0][2] == {"operation": "prepay_balance"} and session[0][3], "it ran while the sync was paused"

    direct = await asyncio.create_subprocess_exec(EMOP, "--direct", "--pacing", "0", "prepay_balance", meter.serial,
                                                  stdout=asyncio.subprocess.PIPE, env=env)
    assert (await direct.communicate())[0].decode().endswith(" GBP\n") and direct.returncode == 0
    with stack.sql() as conn:
        assert conn.execute("SELECT count(*) FROM flows.meter_commands WHERE meter_id = %s AND kind = 'emop_session'",
                            (meter_id,)).fetchone()[0] == 1, "--direct opens no session"

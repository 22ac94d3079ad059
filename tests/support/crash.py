"""Crash safety of token pushes: kill the worker with SIGKILL at random moments
while it pushes tokens to emulated meters, restart it, and check that every
command ended done or failed with a reason and every meter was credited
exactly once per command done (never twice, never silently).

Used by tests/worker/test_crash_safety.py (a few kills) and
bench/crash_tokens.py (50 and more).
"""

import asyncio
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg

from flows import factories

FLOWS = str(Path(sys.executable).parent / "flows")


@dataclass
class CrashReport:
    kills: int = 0
    commands: int = 0
    done: int = 0
    failed: int = 0
    reconciled: int = 0  # pushes a killed worker made, confirmed by the next one without pushing again
    problems: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.kills} kills, {self.commands} token commands: {self.done} done ({self.reconciled} reconciled "
                f"after a kill), {self.failed} failed {dict(self.reasons)}; problems: {self.problems or 'none'}")


def start_worker(database_url: str, home: Path, vendor_secret: bytes, log: Path,
                 *options: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """A `flows worker` process (JSON log lines in ``log``); ``options`` come after the defaults and win,
    ``env`` adds to the environment."""
    env = {**os.environ, "FLOWS_HOME": str(home), "FLOWS_TEST_VENDOR_SECRET": vendor_secret.decode(),
           "FLOWS_LOG_FORMAT": "json", **(env or {})}
    return asyncio.create_subprocess_exec(
        FLOWS, "worker", "--database-url", database_url, "--pacing", "0", "--lease", "2", "--poll", "0.2",
        "--scheduler-interval", "0", "--retry-backoff", "0.2", "--emop-timeout", "1", "--emop-attempts", "2",
        "--shutdown-grace", "1", *options, stdout=open(log, "ab"), stderr=asyncio.subprocess.STDOUT, env=env,
    )


async def run(admin_url: str, worker_url: str, fleet, meter_ids: dict[str, str], home: Path, vendor_secret: bytes,
              kills: int, tokens_per_meter: int = 3, seed: int = 7, timeout: float = 300) -> CrashReport:
    rng = random.Random(seed)
    report = CrashReport()
    balances = {m.serial: m.model.balance for m in fleet.meters}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for meter in fleet.meters:
            for _ in range(tokens_per_meter):
                factories.send_token(conn, meter_ids[meter.serial], Decimal("1.25"))
    ids = list(meter_ids.values())
    log = home / "worker.log"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        process = await start_worker(worker_url, home, vendor_secret, log)
        if report.kills < kills:
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # mid-way through some pushes
            process.send_signal(signal.SIGKILL)
            await process.wait()
            report.kills += 1
            continue
        # no more kills: let it finish the queue
        while _open_commands(admin_url, ids) and loop.time() < deadline:
            await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        await process.wait()
        break

    with psycopg.connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT m.serial, c.status, c.last_error, c.result FROM flows.meter_commands c"
            " JOIN flows.meter_registry m ON m.id = c.meter_id WHERE c.kind = 'send_token' AND c.meter_id = ANY(%s)",
            (ids,)).fetchall()
    report.commands = len(rows)
    done_per_meter: dict[str, int] = {}
    for serial, status, last_error, result in rows:
        if status == "done":
            report.done += 1
            report.reconciled += bool(result.get("reconciled_after_restart"))
            done_per_meter[serial] = done_per_meter.get(serial, 0) + 1
        elif status == "failed":
            report.failed += 1
            reason = (last_error or "").split(":")[0] or "NO REASON"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if not last_error:
                report.problems.append(f"{serial}: failed without a reason")
        else:
            report.problems.append(f"{serial}: command left {status}")
    for meter in fleet.meters:
        done = done_per_meter.get(meter.serial, 0)
        credits = meter.model.transaction_count
        if credits != done:
            report.problems.append(f"{meter.serial}: {credits} credits for {done} commands done")
        if meter.model.balance != balances[meter.serial] + done * Decimal("1.25"):
            report.problems.append(f"{meter.serial}: balance {meter.model.balance}, expected "
                                   f"{balances[meter.serial] + done * Decimal('1.25')}")
    return report


def _open_commands(admin_url: str, meter_ids: list[str]) -> int:
    with psycopg.connect(admin_url) as conn:
        return conn.execute("SELECT count(*) FROM flows.meter_commands WHERE meter_id = ANY(%s)"
                            " AND status IN ('pending', 'running')", (meter_ids,)).fetchone()[0]

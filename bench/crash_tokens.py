"""Crash safety at length: SIGKILL the worker 50 times (default) while it pushes
tokens to 20 emulated meters, restarting it each time. Prints the outcome and
exits 1 if any command was lost, left unfinished, or any token credited twice.
The same scenario runs in `make test` with 8 kills (tests/worker/test_crash_safety.py).

    .venv/bin/python bench/crash_tokens.py [KILLS]
"""

import asyncio
import json
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.support import crash  # noqa: E402

from common import database  # noqa: E402
from flows import factories  # noqa: E402
from flows.emulator import Fleet, FleetConfig, MeterConfig  # noqa: E402

SECRET = b"crash-benchmark-only"


async def main(kills: int) -> None:
    with database() as admin_url:
        password = secrets.token_urlsafe(12)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE flows_worker PASSWORD '{password}'")
            esco = factories.add_esco(conn, "CRASH", "Crash", max_running_commands=1000).id
        worker_url = admin_url.replace("postgresql://postgres@", f"postgresql://flows_worker:{password}@")
        config = FleetConfig(meters=[MeterConfig(serial=f"EML26{i:08d}", balance=Decimal("3")) for i in range(20)],
                             time_factor=0, latency=0.04, vendor_secret=SECRET, start=datetime.now(UTC))
        async with Fleet(config) as fleet:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                ids = factories.add_emulated_meters(conn, esco, fleet.meters)
            with tempfile.TemporaryDirectory() as home:
                report = await crash.run(admin_url, worker_url, fleet, ids, Path(home), SECRET, kills=kills,
                                         tokens_per_meter=5, timeout=900)
    print("# crash safety: SIGKILL during token pushes")
    print(f"  {report}")
    print(json.dumps({"kills": report.kills, "commands": report.commands, "done": report.done,
                      "failed": report.failed, "reconciled": report.reconciled, "problems": report.problems}))
    if report.problems or report.done + report.failed != report.commands:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))

"""Crash safety of money in, at length: 50 trials (default) in which card payments are asked for and then the
worker (payments job and token pushes) or the gateway (processor webhooks) is killed with SIGKILL at a random
moment and started again, with 20 emulated meters. Prints the outcome and exits 1 if any payment did not end
with exactly one completed top-up, any meter was credited twice, or anything was created or charged twice at
the processor. The same runs in `make test` with 8 trials (tests/payments/test_crash_safety.py).

    .venv/bin/python bench/crash_payments.py [TRIALS]
"""

import asyncio
import json
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.support import payment_crash  # noqa: E402
from tests.support.payments import WEBHOOK_SECRET, paying_homes  # noqa: E402
from tests.support.realtime import GatewayProcess  # noqa: E402

from common import database  # noqa: E402
from flows import factories  # noqa: E402
from flows.db.admin import set_role_password  # noqa: E402
from flows.emulator import Fleet, FleetConfig, MeterConfig  # noqa: E402

SECRET = b"crash-payments-benchmark-only"


async def main(trials: int) -> None:
    with database() as admin_url:
        worker_password, authenticator_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        set_role_password(admin_url, "flows_worker", worker_password)
        set_role_password(admin_url, "flows_authenticator", authenticator_password)
        worker_url = admin_url.replace("postgresql://postgres@", f"postgresql://flows_worker:{worker_password}@")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            esco = factories.add_esco(conn, "PAYCRASH", "Payment crashes", max_running_commands=1000).id
        config = FleetConfig(meters=[MeterConfig(serial=f"EML27{i:08d}", balance=Decimal("3")) for i in range(20)],
                             time_factor=0, latency=0.04, vendor_secret=SECRET, start=datetime.now(UTC))
        async with Fleet(config) as fleet:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                homes = paying_homes(conn, esco, factories.add_emulated_meters(conn, esco, fleet.meters))
            api = SimpleNamespace(db_url=admin_url, authenticator_password=authenticator_password,
                                  jwt_secret=secrets.token_urlsafe(40))
            with tempfile.TemporaryDirectory() as home:
                started = time.perf_counter()
                gateway = GatewayProcess(api, Path(home), env={"FLOWS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET})
                report = await payment_crash.run(admin_url, worker_url, gateway, fleet, homes, Path(home), SECRET,
                                                 trials=trials, per_trial=2, timeout=900)
                seconds = time.perf_counter() - started
    print("# crash safety: SIGKILL of the worker and the gateway while payments flow")
    print(f"  {report}")
    print(f"  {seconds:.0f} s")
    print(json.dumps({"kills": dict(report.kills), "payments": report.payments, "credited": report.credited,
                      "reconciled": report.reconciled, "rounds": report.rounds,
                      "webhook_attempts": report.webhook_attempts, "problems": report.problems}))
    if report.problems or report.credited != report.payments:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))

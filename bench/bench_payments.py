"""Money in: 1,000 payments arriving at once as processor webhooks, for 1,000
emulated meters at 300 ms latency, until every meter is credited.

Ours: 1,000 signed payment_intent.succeeded events (Stripe's format, payments
made through a payment link: their metadata names the account) posted at once
to the gateway's POST /webhooks/stripe; each is verified, recorded once and
applied in one transaction (payment succeeded, journal, top-up, its send_token
command); a `flows worker` process (concurrency = meters) vends and pushes the
tokens, reads each meter's count and balance back and records the credit.
Measured from the first webhook sent to the last top-up completed, and per
payment from its webhook to its top-up's used_at (webhook-to-credited latency).

Baseline, the production pattern: a cron job pushing pending top-ups one at a
time. The same webhooks create the top-ups of --baseline homes, then a
`flows worker --concurrency 1` (the same vending, EMOP exchanges and recording,
one top-up after the other) credits them; its time per top-up, times the
meters, is the baseline's time for all of them (a sequential loop is linear;
production's cron interval, up to a minute before a run starts, is left out,
which only flatters it). Pacing between exchanges is 0 on both sides.
Target: ratio >= 20x.

usage: python bench/bench_payments.py [--meters 1000] [--latency-ms 300] [--baseline 40]
"""

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests' helpers
from tests.support.payments import WEBHOOK_SECRET, paying_homes  # noqa: E402
from tests.support.realtime import GatewayProcess  # noqa: E402

from bench_fleet import start_emulator  # noqa: E402
from common import database, report  # noqa: E402
from flows import factories  # noqa: E402
from flows.db.admin import set_role_password  # noqa: E402
from flows.emulator.fleet import raise_open_file_limit  # noqa: E402
from flows.payments.test_processor import event_object, intent_object, sign  # noqa: E402

FLOWS = str(Path(sys.executable).parent / "flows")
VENDOR_SECRET = "bench-secret-not-for-production-0000"  # the emulator's (bench_fleet.start_emulator)


def start_worker(worker_url: str, home: str, concurrency: int) -> subprocess.Popen:
    return subprocess.Popen(
        [FLOWS, "worker", "--database-url", worker_url, "--concurrency", str(concurrency), "--pacing", "0",
         "--scheduler-interval", "0", "--poll", "1", "--emop-attempts", "3", "--jobs", "none"],
        stdout=open(Path(home) / f"worker-{concurrency}.log", "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "FLOWS_HOME": home, "FLOWS_LOG_LEVEL": "WARNING", "FLOWS_TEST_VENDOR_SECRET": VENDOR_SECRET})


async def post_webhooks(gateway_url: str, accounts: list[str], amount_pence: int) -> tuple[dict[str, float], list]:
    """One signed payment_intent.succeeded per account, all at once; when each was sent (epoch seconds), and
    how long the gateway took to answer each."""
    events = {a: event_object("payment_intent.succeeded", intent_object(
        amount_pence, {"account_id": a}, status="succeeded", description="payment link")) for a in accounts}
    sent, answers = {}, []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=gateway_url, limits=limits, timeout=120) as http:
        async def deliver(account: str):
            body = json.dumps(events[account])
            sent[account] = time.time()
            started = time.perf_counter()
            response = await http.post("/webhooks/stripe", content=body,
                                       headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)})
            answers.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["outcome"] != "applied":
                sys.exit(f"bench_payments: webhook answered {response.status_code} {response.text}")
        await asyncio.gather(*(deliver(a) for a in accounts))
    return sent, answers


def wait_credited(conn, accounts: list[str], timeout: float = 900) -> list[tuple[str, float]]:
    """(account, used_at epoch) of each account's top-up once every one is completed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = conn.execute("SELECT account_id::text, extract(epoch FROM used_at)::float8, status"
                            " FROM billing.topups WHERE account_id = ANY (%s::uuid[])", (accounts,)).fetchall()
        if failed := [r for r in rows if r[2].startswith("failed")]:
            sys.exit(f"bench_payments: {len(failed)} top-ups failed")
        if len(rows) == len(accounts) and all(r[2] == "completed" for r in rows):
            return [(r[0], r[1]) for r in rows]
        if time.monotonic() > deadline:
            sys.exit(f"bench_payments: timed out with {sum(r[2] == 'completed' for r in rows)}/{len(accounts)}")
        time.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--baseline", type=int, default=40, help="top-ups the one-at-a-time loop credits")
    args = parser.parse_args()
    raise_open_file_limit(4 * (args.meters + args.baseline) + 512)
    emulator, described = start_emulator(args.meters + args.baseline, args.latency_ms)
    try:
        with database() as admin_url, psycopg.connect(admin_url, autocommit=True) as conn, \
                tempfile.TemporaryDirectory() as home:
            worker_password, authenticator_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            set_role_password(admin_url, "flows_worker", worker_password)
            set_role_password(admin_url, "flows_authenticator", authenticator_password)
            worker_url = admin_url.replace("postgresql://postgres@", f"postgresql://flows_worker:{worker_password}@")
            esco = factories.add_esco(conn, "PAYBENCH", "Payments bench", max_running_commands=10000).id
            meters = factories.add_meters(conn, esco, [
                factories.MeterSpec(m["serial"], "C1.w", ip_address=m["host"], emop_port=m["port"])
                for m in described["meters"]], registers_from="2020-01-01T00:00:00Z")
            set_up = time.perf_counter()
            homes = paying_homes(conn, esco, {m.serial: m.id for m in meters})
            print(f"  {len(homes)} homes onboarded in {time.perf_counter() - set_up:.1f} s", file=sys.stderr)
            conn.execute("VACUUM ANALYZE")
            baseline_homes, our_homes = homes[:args.baseline], homes[args.baseline:]
            api = SimpleNamespace(db_url=admin_url, authenticator_password=authenticator_password,
                                  jwt_secret=secrets.token_urlsafe(40))
            gateway = GatewayProcess(api, Path(home), env={"FLOWS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                                           "FLOWS_LOG_LEVEL": "WARNING"})
            gateway.start()
            try:
                # the baseline: pending top-ups pushed one at a time
                accounts = [h.account for h in baseline_homes]
                await post_webhooks(gateway.url, accounts, 1000)
                worker = start_worker(worker_url, home, 1)
                started = time.perf_counter()
                wait_credited(conn, accounts)
                baseline_seconds = time.perf_counter() - started
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
                per_topup = baseline_seconds / len(accounts)

                # ours: every payment at once
                worker = start_worker(worker_url, home, len(our_homes))
                time.sleep(1.5)  # listening
                accounts = [h.account for h in our_homes]
                started_epoch, started = time.time(), time.perf_counter()
                sent, answers = await post_webhooks(gateway.url, accounts, 1000)
                webhooks_seconds = time.perf_counter() - started
                credited = wait_credited(conn, accounts)
                ours = max(used for _, used in credited) - started_epoch
                latencies = [used - sent[account] for account, used in credited]
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
                unbalanced = conn.execute("SELECT count(*) FROM (SELECT journal_id FROM billing.journal_entries"
                                          " GROUP BY journal_id HAVING sum(amount) <> 0) AS x").fetchone()[0]
            except BaseException:
                print(f"the gateway's log ends:\n{gateway.log()[-3000:]}", file=sys.stderr)
                raise
            finally:
                gateway.stop()
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(30)
    if unbalanced:
        sys.exit(f"bench_payments: {unbalanced} journals do not balance")
    baseline = per_topup * len(our_homes)
    print(f"webhook-to-credited latency ({len(latencies)} payments): p50 {statistics.median(latencies):.2f} s, "
          f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s; gateway answered each webhook in "
          f"p50 {statistics.median(answers) * 1000:.0f} ms, p99 {percentile(answers, 0.99) * 1000:.0f} ms")
    report(f"money in: {len(our_homes)} payments as webhooks, {len(our_homes)} meters at {args.latency_ms:g} ms",
           baseline / ours, 20, [
               f"ours      {ours:8.2f} s  {len(our_homes) / ours:8.1f} meters credited/s  (webhooks all answered "
               f"in {webhooks_seconds:.2f} s)",
               f"baseline  {baseline:8.2f} s  {1 / per_topup:8.2f} meters credited/s  (one at a time: "
               f"{per_topup:.2f} s per top-up over {args.baseline}, times {len(our_homes)})",
               f"network bound {5 * args.latency_ms / 1000:.1f} s per top-up (5 exchanges: count, balance, token, "
               f"count, balance); every journal balances",
           ])


if __name__ == "__main__":
    asyncio.run(main())

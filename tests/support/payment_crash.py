"""Crash safety of money in: kill -9 the worker (its payments job submits to the
processor and its meter commands push the tokens) and the gateway (which takes
the processor's webhooks) at random moments while payments flow, restart them,
and check that every payment ended with exactly one completed top-up, no meter
was credited twice, and no payment was created or charged at the processor
twice.

Each trial asks for new card payments, waits a random moment and kills one of
the two at random; the test processor (in this process, like the real one it
stands for, it is never killed) delivers its webhooks again until the gateway
takes them. Used by tests/payments/test_crash_safety.py (a few trials) and
bench/crash_payments.py (50 and more).
"""

import asyncio
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg

from flows import factories as f
from flows.payments.test_processor import TestProcessor
from tests.support import crash
from tests.support.payments import API_KEY, WEBHOOK_SECRET, Home, serving


@dataclass
class PaymentCrashReport:
    kills: Counter = field(default_factory=Counter)  # by victim: worker, gateway
    payments: int = 0
    credited: int = 0  # payments whose one top-up is completed
    reconciled: int = 0  # top-ups whose credit a later round recognised (the meter took it before a kill)
    rounds: int = 0  # command rounds the top-ups needed in all
    webhook_attempts: int = 0
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{sum(self.kills.values())} kills ({dict(self.kills)}), {self.payments} payments: {self.credited} "
                f"credited once ({self.reconciled} reconciled after a kill, {self.rounds} command rounds), "
                f"{self.webhook_attempts} webhook deliveries; problems: {self.problems or 'none'}")


async def run(admin_url: str, worker_url: str, gateway, fleet, homes: list[Home], home_dir: Path,
              vendor_secret: bytes, trials: int, per_trial: int = 2, seed: int = 11,
              timeout: float = 600) -> PaymentCrashReport:
    """``gateway``: a tests.support.realtime.GatewayProcess taking webhooks with WEBHOOK_SECRET, not started."""
    rng = random.Random(seed)
    report = PaymentCrashReport()
    balances = {h.serial: fleet[h.serial].model.balance for h in homes}
    processor = TestProcessor(webhook_url=f"{gateway.url}/webhooks/stripe", webhook_secret=WEBHOOK_SECRET,
                              retry_delay=0.1, max_retry_delay=1.0)
    loop = asyncio.get_running_loop()
    async with serving(processor) as processor_url:
        env = {"FLOWS_STRIPE_API_KEY": API_KEY, "FLOWS_STRIPE_API_BASE": processor_url}
        log = home_dir / "worker.log"

        async def start_worker():
            return await crash.start_worker(worker_url, home_dir, vendor_secret, log, env=env)

        worker = await start_worker()
        gateway.start()
        payments: list[tuple[str, Home, Decimal]] = []
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for _trial in range(trials):
                for _ in range(per_trial):
                    home = rng.choice(homes)
                    amount = Decimal(rng.randint(100, 3000)) / 100
                    payments.append((f.schedule_payment(conn, home.account, amount), home, amount))
                await asyncio.sleep(rng.uniform(0.1, 1.0))  # mid-way through submissions, webhooks, pushes
                victim = rng.choice(["worker", "gateway"])
                report.kills[victim] += 1
                if victim == "worker":
                    worker.send_signal(signal.SIGKILL)
                    await worker.wait()
                    worker = await start_worker()
                else:
                    gateway.stop(signal.SIGKILL)
                    gateway.start()
            # no more kills: let everything land
            deadline = loop.time() + timeout
            ids = [p for p, _, _ in payments]
            while _unfinished(conn, ids) and loop.time() < deadline:
                await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        await worker.wait()
        gateway.stop()
    report.webhook_attempts = processor.summary()["delivery_attempts"]
    _check(admin_url, payments, processor, fleet, homes, balances, report)
    return report


def _unfinished(conn, ids: list[str]) -> int:
    return conn.execute("SELECT count(*) FROM billing.payments p LEFT JOIN billing.topups t ON t.payment_id = p.id"
                        " WHERE p.id = ANY (%s::uuid[]) AND (t.status IS DISTINCT FROM 'completed'"
                        " OR p.status <> 'succeeded')", (ids,)).fetchone()[0]


def _check(admin_url: str, payments, processor: TestProcessor, fleet, homes: list[Home], balances: dict,
           report: PaymentCrashReport) -> None:
    report.payments = len(payments)
    expected_credit: dict[str, tuple[int, Decimal]] = {h.serial: (0, Decimal(0)) for h in homes}
    with psycopg.connect(admin_url) as conn:
        for payment, home, amount in payments:
            status = conn.execute("SELECT status FROM billing.payments WHERE id = %s", (payment,)).fetchone()[0]
            topups = conn.execute("SELECT status, rounds, (SELECT c.result ->> 'reconciled_after_restart'"
                                  " FROM flows.meter_commands c WHERE c.id = t.command_id)"
                                  " FROM billing.topups t WHERE t.payment_id = %s", (payment,)).fetchall()
            if status != "succeeded" or len(topups) != 1 or topups[0][0] != "completed":
                report.problems.append(f"payment {payment}: {status}, top-ups {topups}")
                continue
            report.credited += 1
            report.rounds += topups[0][1]
            report.reconciled += topups[0][2] == "true"
            count, total = expected_credit[home.serial]
            expected_credit[home.serial] = (count + 1, total + amount)
            created = processor.created_per_payment.get(payment, 0)
            if created != 1:
                report.problems.append(f"payment {payment}: created {created} times at the processor")
        charged_twice = {i: n for i, n in processor.charges_per_intent.items() if n > 1}
        if charged_twice:
            report.problems.append(f"charged more than once: {charged_twice}")
        journals = dict(conn.execute(
            "SELECT kind, count(*) FROM billing.journals WHERE payment_id = ANY (%s::uuid[]) GROUP BY kind",
            ([p for p, _, _ in payments],)).fetchall())
        if journals.get("payment_received") != len(payments) or journals.get("topup_credited") != len(payments):
            report.problems.append(f"journals per kind {journals} for {len(payments)} payments")
        unbalanced = conn.execute("SELECT count(*) FROM (SELECT journal_id FROM billing.journal_entries"
                                  " GROUP BY journal_id HAVING sum(amount) <> 0) AS x").fetchone()[0]
        if unbalanced:
            report.problems.append(f"{unbalanced} journals do not balance")
    for home in homes:
        model = fleet[home.serial].model
        count, total = expected_credit[home.serial]
        if model.transaction_count != count:
            report.problems.append(f"{home.serial}: {model.transaction_count} credits for {count} payments")
        if model.balance != balances[home.serial] + total:
            report.problems.append(f"{home.serial}: balance {model.balance}, expected {balances[home.serial] + total}")

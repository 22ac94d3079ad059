"""kill -9 the worker (payments job, token pushes) and the gateway (webhooks) while payments flow: every
payment ends with exactly one completed top-up, no meter is credited twice, nothing is created or charged
twice at the processor. bench/crash_payments.py runs the same with 50 trials and more."""

from decimal import Decimal

from flows.emulator import MeterConfig
from tests.support import payment_crash
from tests.support.payments import WEBHOOK_SECRET, paying_homes
from tests.support.realtime import GatewayProcess
from tests.worker.conftest import VENDOR_SECRET, new_esco, register, serials


async def test_kill_the_worker_and_the_gateway_while_payments_flow(stack, fleet_of, tmp_path):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s, balance=Decimal("3")) for s in serials(5, 601)), latency=0.02)
    with stack.sql() as conn:
        homes = paying_homes(conn, esco, register(stack, fleet, esco))
    gateway = GatewayProcess(stack.api, tmp_path, env={"FLOWS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET})
    report = await payment_crash.run(stack.api.db_url, stack.worker_url, gateway, fleet, homes, tmp_path,
                                     VENDOR_SECRET, trials=8, per_trial=2, timeout=240)
    assert not report.problems, report
    assert report.payments == 16 and report.credited == 16, report
    assert sum(report.kills.values()) == 8, report

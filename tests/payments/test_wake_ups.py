"""What wakes the payments job: a payment or refund inserted, and nothing else (its own money pass, which inserts
its regular payments at every pass, mostly none, once woke it again at once: a pass every few milliseconds)."""

import asyncio

from flows.emulator import MeterConfig
from flows.payments.job import PaymentsJob, PaymentsJobConfig
from tests.support.payments import paying_homes
from tests.worker.conftest import new_esco, register, serials, wait_for


async def test_only_a_new_payment_wakes_the_job(stack, fleet_of, running_worker):
    job = PaymentsJob(stack.worker_url, "wake-ups", None, PaymentsJobConfig(poll_interval=30))
    await running_worker(stack.worker_url, jobs=[job])
    await wait_for(lambda: job.passes >= 1)  # the first pass, when it starts listening

    # idle: the next pass is the poll's, 30 s on (the loop made hundreds a second)
    before = job.passes
    await asyncio.sleep(2)
    assert job.passes - before <= 1, f"{job.passes - before} passes in 2 s with nothing to do"

    # a payment an operator schedules wakes it long before its poll
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 531)[0]))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    before = job.passes
    with stack.api.client("operator", code) as operator:
        asked = operator.post("/rpc/schedule_payment", json={"account_id": home.account, "amount": 5})
        assert asked.status_code == 200, asked.text
    await wait_for(lambda: job.passes > before, timeout=15)

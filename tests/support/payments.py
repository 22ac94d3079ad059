"""What the payment tests, the crash run and the benchmark share: the test
processor served in this process (its state at hand), and homes that pay:
an emulated prepay meter behind a property, its customer onboarded, a saved
card, all made by the product's factories."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
import uvicorn

from flows import factories as f
from flows.payments.test_processor import TestProcessor
from flows.stack.postgres import free_port

WEBHOOK_SECRET = "whsec_payments_tests_only_not_a_secret"
API_KEY = "sk_test_payments_tests"


@contextlib.asynccontextmanager
async def serving(processor: TestProcessor) -> AsyncIterator[str]:
    """Serves the processor's API on a free port of 127.0.0.1 in this event loop; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(processor.app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass(frozen=True)
class Home:
    serial: str
    meter: str
    property: str
    customer: str
    account: str
    payment_method: str


def paying_homes(conn: psycopg.Connection, esco: str, meters: dict[str, str], *, card: str = "pm_card_visa",
                 site_code: str = "PAY") -> list[Home]:
    """For each meter (serial -> id): a property fed through its own service head, an owner-occupier
    onboarded (the meter's supply account) with a saved payment method ``card`` (pm_card_visa,
    pm_card_chargeDeclined, pm_bacs_debit ...: the test processor's names), numbered per customer."""
    site = f.add_site(conn, esco, site_code, "Paying homes")
    homes = []
    for n, (serial, meter) in enumerate(sorted(meters.items())):
        home = f.add_property(conn, site, f"H-{n + 1:04d}")
        head = f.add_service_head(conn, esco, f"PAY-{n + 1:04d}", phase=1)
        f.link_property_head(conn, home, head)
        f.link_head_meter(conn, head, meter)
        made = f.onboard_customer(conn, home, f"Payer {serial}", f"{serial.lower()}@pay.example",
                                  move_in="2026-01-01T00:00:00Z")
        method = f.add_payment_method(conn, made.customer, kind="direct_debit" if "bacs" in card else "card",
                                      processor_method=f"{card}_{n}")
        homes.append(Home(serial, meter, home, made.customer, made.account, method))
    return homes

"""Low balance end to end, with real processes: an emulated meter synced by a
worker over EMOP, the rules in PostgreSQL, the email sender over SMTP to a real
SMTP server. Exactly one email per crossing with the right figures; again after
the balance recovers and falls; delivered once after an SMTP outage."""

import asyncio
from decimal import Decimal

from flows.emulator import MeterConfig
from tests.notifications.conftest import SENDER, email_job, home_of, rules_job, settle
from tests.worker.conftest import new_esco, register, serials, wait_for


async def sync_balance(http, meter_id: str) -> None:
    """A balance read through the API, as an operator (or the scheduler) asks for it, until it is recorded."""
    response = await http.post("/rpc/request_sync", json={"meter_ids": [meter_id], "metrics": ["prepay_balance"]})
    assert response.status_code == 200, response.text
    command = response.json()[0]["id"]

    async def done():
        rows = (await http.get("/meter_commands", params={"id": f"eq.{command}", "select": "status"})).json()
        return rows[0]["status"] == "done"

    await wait_for(done, timeout=15)


async def test_one_email_per_crossing_with_the_right_figures(stack, fleet_of, running_worker, smtp_server):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 301)[0], balance=Decimal("20")))
    meter = fleet.meters[0]
    meter_id = register(stack, fleet, esco)[meter.serial]
    email = f"olive@{code.lower()}.example"
    with stack.sql() as conn:
        home_of(conn, esco, meter_id, email)
    rules = rules_job(stack.worker_url)
    await running_worker(stack.worker_url, jobs=[rules, email_job(stack.worker_url, smtp_server)])

    async with stack.api.async_client("operator", code) as http:
        await sync_balance(http, meter_id)  # GBP 20: above the ESCO's GBP 15
        await settle(rules)
        assert smtp_server.mail(email) == []

        meter.model.set_balance(Decimal("12.34"))  # the home used GBP 7.66
        await sync_balance(http, meter_id)
        first = (await wait_for(lambda: smtp_server.mail(email)))[0]
        assert first.subject == "Your electricity credit is low: £12.34 left"
        text = first.detail()["text"]
        assert "Balance:   £12.34" in text and "below £15.00" in text and meter.serial in text
        assert "Dear Olive Owner" in text
        assert first.message["From"] == f"ESCO {code} <{SENDER}>"
        assert first.message["X-Caught-To"] == email

        meter.model.set_balance(Decimal("11.02"))  # still under: no second email
        await sync_balance(http, meter_id)
        await settle(rules)
        assert len(smtp_server.mail(email)) == 1

        top_up = await http.post("/rpc/send_token", json={"meter_id": meter_id, "amount": 10})  # recovers
        assert top_up.status_code == 200, top_up.text
        await sync_balance(http, meter_id)
        await settle(rules)
        assert len(smtp_server.mail(email)) == 1, "recovering sends nothing"
        assert meter.model.balance == Decimal("21.02")

        meter.model.set_balance(Decimal("9.87"))  # falls again
        await sync_balance(http, meter_id)
        await wait_for(lambda: len(smtp_server.mail(email)) == 2)
        await settle(rules)
    caught = smtp_server.mail(email)
    assert len(caught) == 2
    assert "Balance:   £9.87" in caught[1].detail()["text"]
    assert caught[0].message["Message-ID"] != caught[1].message["Message-ID"]
    with stack.sql() as conn:
        rows = conn.execute("SELECT status, attempts, provider_message_id, parameters ->> 'balance'"
                            " FROM flows.notification_outbox WHERE esco = %s ORDER BY created_at", (esco,)).fetchall()
    assert [(r[0], r[1], r[3]) for r in rows] == [("sent", 1, "12.34"), ("sent", 1, "9.87")]
    assert [r[2] for r in rows] == [m.message["Message-ID"] for m in caught]


async def test_smtp_down_for_a_while_then_delivered_once(stack, fleet_of, running_worker, smtp_server):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 302)[0], balance=Decimal("3.50")))
    meter_id = register(stack, fleet, esco)[fleet.meters[0].serial]
    email = f"olive@{code.lower()}.example"
    with stack.sql() as conn:
        home_of(conn, esco, meter_id, email)
    smtp_server.stop()  # the relay is down
    await running_worker(stack.worker_url, jobs=[rules_job(stack.worker_url),
                                                 email_job(stack.worker_url, smtp_server)])
    async with stack.api.async_client("operator", code) as http:
        await sync_balance(http, meter_id)

    def outbox():
        with stack.sql() as conn:
            return conn.execute("SELECT status, attempts, last_error FROM flows.notification_outbox"
                                " WHERE esco = %s", (esco,)).fetchone()

    # three attempts failed and the message waits for its next one (attempts are counted when an attempt is
    # claimed: one still "sending" may yet reach the relay once it is back, and count as the third)
    retried = await wait_for(lambda: (row := outbox()) and row[1] >= 3 and row[0] == "pending" and row, timeout=20)
    assert "Connect" in retried[2] and str(smtp_server.port) in retried[2], retried[2]
    smtp_server.start()  # back
    delivered = await wait_for(lambda: smtp_server.mail(email), timeout=20)
    await asyncio.sleep(1.5)  # time for a second copy, were one coming
    assert len(smtp_server.mail(email)) == 1 and len(delivered) == 1
    status, attempts, _ = outbox()
    assert status == "sent" and attempts >= 4, (status, attempts)

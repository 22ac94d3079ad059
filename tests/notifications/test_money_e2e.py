"""Money notifications end to end, with real processes: PostgREST, the
gateway taking the test processor's signed webhooks, the payments job, an
emulated prepay meter credited by the worker over EMOP, the rules in
PostgreSQL and the email sender over SMTP to a real SMTP server. A card
payment scheduled for tomorrow is announced once; one taken now, once its
top-up is on the meter, is told once with the amount and the balance the
worker read."""

from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from flows.emulator import MeterConfig
from tests.notifications.conftest import email_job, rules_job, settle
from tests.payments.conftest import gateway, payments_job, processor  # noqa: F401 (fixtures: the processor's)
from tests.support.payments import paying_homes
from tests.worker.conftest import new_esco, register, serials, wait_for


def uk_tomorrow_at(hour: int) -> datetime:
    uk = ZoneInfo("Europe/London")
    return datetime.combine(datetime.now(uk).date() + timedelta(days=1), time(hour), tzinfo=uk)


async def test_a_paid_top_up_credited_on_the_meter_is_told_once(stack, fleet_of, running_worker, smtp_server,
                                                                processor):  # noqa: F811 (the imported fixture)
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 531)[0], balance=Decimal("3")))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    email = f"{home.serial.lower()}@pay.example"
    rules = rules_job(stack.worker_url)
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor), rules,
                                                 email_job(stack.worker_url, smtp_server)])

    def caught(subject_part: str):
        return [m for m in smtp_server.mail(email) if subject_part in m.subject]

    with stack.api.client("operator", code) as operator:
        ahead = operator.post("/rpc/schedule_payment", json={"account_id": home.account, "amount": 30,
                                                             "scheduled_at": uk_tomorrow_at(9).isoformat()})
        assert ahead.status_code == 200, ahead.text
        due = (await wait_for(lambda: caught("tomorrow"), timeout=20))[0]
        assert due.subject == "£30.00 will be taken from your card tomorrow"
        assert f"Tomorrow, {uk_tomorrow_at(9):%A %-d %B %Y}, we will take £30.00 from your card" in due.detail()["text"]

        paid = operator.post("/rpc/schedule_payment", json={"account_id": home.account, "amount": 12.5})
        assert paid.status_code == 200, paid.text
    payment = paid.json()[0]["id"]

    applied = (await wait_for(lambda: caught("on your meter"), timeout=40))[0]
    await settle(rules)
    assert len(caught("on your meter")) == 1, "one email per top-up"
    assert len(caught("tomorrow")) == 1, "one per payment due"
    with stack.sql() as conn:
        status, balance_after, used_at = conn.execute(
            "SELECT status, balance_after, used_at FROM billing.topups WHERE payment_id = %s", (payment,)).fetchone()
        outbox = conn.execute("SELECT rule, status, attempts, parameters ->> 'amount' FROM flows.notification_outbox"
                              " WHERE esco = %s ORDER BY rule", (esco,)).fetchall()
    assert status == "completed" and used_at is not None
    assert fleet[home.serial].model.transaction_count == 1, "the meter took the token once"
    assert outbox == [("payment_due", "sent", 1, "30.00"), ("topup_applied", "sent", 1, "12.50")]
    assert applied.subject == "£12.50 of credit is on your meter"
    text = applied.detail()["text"]
    assert f"Dear Payer {home.serial}" in text and "from your payment by card." in text
    balance = balance_after.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert f"Balance:   £{balance} on the meter just after" in text and Decimal("15") < balance <= Decimal("15.50")
    assert home.serial in text and "£12.50" in applied.detail()["html"]

"""Money test data for one ESCO built by tests/support/factory.py, on the
customers of billing_factory.py, all made by the product's factories: Olive's
card and wallet, a cash payment (partly refunded), a card payment that arrived
as a processor event (its top-up's token refused by the meter: failed, to be
retried), a payment to come, one due tomorrow (UK day) and one the processor
declined, a gift given (credited on the meter) and one scheduled, an
adjustment, solar credit for last month (Olive under a solar contract, her
neighbour Tina without), and Tina's bank transfer. The other top-ups wait on
pending send_token commands (no worker runs in the tenancy tests).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from flows import factories as f
from flows.payments.test_processor import event_object, intent_object
from tests.support.billing_factory import BillingData, last_month_start


@dataclass
class MoneyData:
    payment_method: str = ""  # Olive's card
    wallet: str = ""  # Olive's meter's
    payments: dict[str, str] = field(default_factory=dict)  # Olive's: cash, card, scheduled, tomorrow, declined
    refund: str = ""
    topups: dict[str, str] = field(default_factory=dict)  # Olive's: cash, card, gift, adjustment, solar
    gifts: dict[str, str] = field(default_factory=dict)  # given, scheduled
    solar: dict[str, str] = field(default_factory=dict)  # rate, installation, allocation.0/1, credit.olive/tina
    others: dict[str, str] = field(default_factory=dict)  # the tenant's payment and top-up

    def customer_ids(self) -> set[str]:
        """What Olive may see: her payments, top-ups and wallet, and the ids they carry."""
        return {self.payment_method, self.wallet, *self.payments.values(), *self.topups.values(),
                *self.gifts.values(), self.solar["credit.olive"]}


def build_money(conn: psycopg.Connection, esco: str, code: str, properties: list[str],
                billing: BillingData) -> MoneyData:
    data = MoneyData()
    account, tenant_account = billing.account, billing.others["tenant.account"]
    now = datetime.now(UTC)
    data.payment_method = f.add_payment_method(conn, billing.customer, processor_method=f"pm_card_visa_{code}")
    data.wallet = f.set_wallet(conn, account, target_balance=40, minimum_balance=10, payment_method=data.payment_method)

    data.payments["cash"] = f.record_payment(conn, account, "12.50", reference=f"receipt-{code}")
    data.refund = f.refund_payment(conn, data.payments["cash"], "overpaid", "2.50")
    intent = intent_object(2000, {"account_id": account}, status="succeeded", customer=f"cus_{code}",
                           payment_method=f"pm_card_visa_{code}", description="payment link")
    f.apply_processor_event(conn, event_object("payment_intent.succeeded", intent))
    data.payments["card"] = _one(conn, "SELECT id FROM billing.payments WHERE provider_reference = %s", intent["id"])
    data.payments["scheduled"] = f.schedule_payment(conn, account, 25, scheduled_at=now + timedelta(days=3))
    # (for the notification rules: a payment due tomorrow, 09:00 UK time, and one the processor declined)
    uk = ZoneInfo("Europe/London")
    tomorrow = datetime.combine(now.astimezone(uk).date() + timedelta(days=1), time(9), tzinfo=uk)
    data.payments["tomorrow"] = f.schedule_payment(conn, account, 25, scheduled_at=tomorrow)
    data.payments["declined"] = f.schedule_payment(conn, account, "18.00")
    declined = {**intent_object(1800, {"payment_id": data.payments["declined"]}, status="requires_payment_method"),
                "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}
    f.apply_processor_event(conn, event_object("payment_intent.payment_failed", declined))
    for source in ("cash", "card"):
        data.topups[source] = _one(conn, "SELECT id FROM billing.topups WHERE payment_id = %s", data.payments[source])
    card_command = _one(conn, "SELECT command_id FROM billing.topups WHERE id = %s", data.topups["card"])
    f.fail_command(conn, card_command, "TokenRefused: the meter rejected the token (NAK 6)")

    data.gifts["given"] = f.create_gift(conn, account, "5.00", "sign-up bonus")
    data.gifts["scheduled"] = f.create_gift(conn, account, "7.50", "winter fund", scheduled_at=now + timedelta(days=10))
    data.topups["gift"] = _one(conn, "SELECT id FROM billing.topups WHERE gift_id = %s", data.gifts["given"])
    # The gift is credited: its command done with the meter's answer, as the top-up's mirror sees it (not through
    # flows.finish_meter_command_v1, which would also record the meter reached now: the sample's meters stay last
    # reached five hours ago, for the offline rules and dashboards).
    conn.execute("UPDATE flows.meter_commands SET status = 'done', started_at = now(), finished_at = now(),"
                 " result = %s WHERE id = (SELECT command_id FROM billing.topups WHERE id = %s)",
                 (Jsonb({"balance_before": "4.25", "balance_after": "9.25", "transactions_before": 34,
                         "transactions_after": 35}), data.topups["gift"]))
    data.topups["adjustment"] = f.add_adjustment(conn, account, "3.00", "goodwill: a late top-up")

    month = last_month_start(now.date())
    data.solar["rate"] = f.add_solar_rate(conn, esco, month - timedelta(days=365), 8000)
    data.solar["installation"] = f.add_solar_installation(conn, properties[0], f"MCS-{code}", "3.5",
                                                          month - timedelta(days=200))
    for i, (home, ratio) in enumerate(((properties[0], "0.6"), (properties[1], "0.4"))):
        data.solar[f"allocation.{i}"] = f.allocate_solar(conn, data.solar["installation"], home, ratio)
    f.add_contract(conn, billing.customer, type="solar", terms_version="solar-1", signed_at=month,
                   effective_date=month)
    for credit, customer in conn.execute(
            "SELECT id, customer_id FROM api.generate_solar_credits(%s, %s)", (code, month)).fetchall():
        data.solar["credit.olive" if str(customer) == billing.customer else "credit.tina"] = str(credit)
    data.topups["solar"] = _one(conn, "SELECT id FROM billing.topups WHERE solar_credit_id = %s",
                                data.solar["credit.olive"])

    data.others["tenant.payment"] = f.record_payment(conn, tenant_account, "30.00", provider="bank_transfer",
                                                     reference=f"TT-{code}")
    data.others["tenant.topup"] = _one(conn, "SELECT id FROM billing.topups WHERE payment_id = %s",
                                       data.others["tenant.payment"])
    return data


def _one(conn: psycopg.Connection, sql: str, *params) -> str:
    return str(conn.execute(sql, params).fetchone()[0])

"""Money in: payment methods, payments (recorded, requested, or arriving as
processor events), refunds, gifts, adjustments, wallets and solar credit,
through the product's RPCs and SQL functions, so the top-ups and journals they
make are the product's own."""

import json
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg

Money = Decimal | int | str


def add_payment_method(conn: psycopg.Connection, customer: str, *, kind: str = "card",
                       processor_method: str | None = None, processor_customer: str | None = None,
                       label: str | None = None) -> str:
    """A saved way to pay at the processor (references only: pm_..., cus_...), keyed on the method reference.
    The test processor charges pm_card_visa at once, declines pm_card_chargeDeclined, settles pm_bacs_debit."""
    method = processor_method or ("pm_card_visa" if kind == "card" else "pm_bacs_debit")
    processor_customer = processor_customer or "cus_" + customer.replace("-", "")[:24]
    conn.execute("INSERT INTO billing.payment_methods (esco, customer_id, kind, processor_customer, processor_method,"
                 " label) SELECT c.esco, c.id, %s, %s, %s, %s FROM billing.customers c WHERE c.id = %s"
                 " ON CONFLICT (esco, provider, processor_method) DO NOTHING",
                 (kind, processor_customer, method, label, customer))
    return str(conn.execute("SELECT m.id FROM billing.payment_methods m JOIN billing.customers c ON c.esco = m.esco"
                            " WHERE c.id = %s AND m.processor_method = %s", (customer, method)).fetchone()[0])


def record_payment(conn: psycopg.Connection, account: str, amount: Money, *, provider: str = "cash",
                   reference: str | None = None, received_at: datetime | str | None = None,
                   description: str | None = None) -> str:
    """api.record_payment: money received in cash or by bank (with its journal and, on a prepay meter, its
    top-up). The same provider reference: the same payment."""
    if reference is not None and (found := conn.execute(
            "SELECT p.id FROM billing.payments p JOIN billing.accounts a ON a.esco = p.esco WHERE a.id = %s"
            " AND p.provider = %s AND p.provider_reference = %s", (account, provider, reference)).fetchone()):
        return str(found[0])
    return str(conn.execute("SELECT id FROM api.record_payment(%s, %s, %s, %s, %s, %s)",
                            (account, amount, provider, reference, received_at, description)).fetchone()[0])


def schedule_payment(conn: psycopg.Connection, account: str, amount: Money, *,
                     scheduled_at: datetime | str | None = None, payment_method: str | None = None,
                     description: str | None = None) -> str:
    """api.schedule_payment: a card or Direct Debit payment the payments job submits at ``scheduled_at``."""
    return str(conn.execute("SELECT id FROM api.schedule_payment(%s, %s, %s, %s, %s)",
                            (account, amount, scheduled_at, description, payment_method)).fetchone()[0])


def refund_payment(conn: psycopg.Connection, payment: str, reason: str, amount: Money | None = None) -> str:
    """api.refund_payment: money back (cash and bank at once; a processor payment through the job)."""
    return str(conn.execute("SELECT id FROM api.refund_payment(%s, %s, %s)", (payment, reason, amount)).fetchone()[0])


def apply_processor_event(conn: psycopg.Connection, event: dict) -> str:
    """billing.apply_processor_event_v1, as the gateway applies a verified webhook; the outcome."""
    return conn.execute("SELECT outcome FROM billing.apply_processor_event_v1('stripe', %s::jsonb)",
                        (json.dumps(event),)).fetchone()[0]


def create_gift(conn: psycopg.Connection, account: str, amount: Money, reason: str, *,
                scheduled_at: datetime | str | None = None) -> str:
    """api.create_gift: credit given from ``scheduled_at`` (default now: a top-up at once)."""
    return str(conn.execute("SELECT id FROM api.create_gift(%s, %s, %s, %s)",
                            (account, amount, reason, scheduled_at)).fetchone()[0])


def add_adjustment(conn: psycopg.Connection, account: str, amount: Money, reason: str) -> str:
    """api.create_adjustment_topup: credit the ESCO adds (or, negative, takes) with a reason; the top-up's id."""
    return str(conn.execute("SELECT id FROM api.create_adjustment_topup(%s, %s, %s)",
                            (account, amount, reason)).fetchone()[0])


def set_wallet(conn: psycopg.Connection, account: str, *, target_balance: Money | None = None,
               minimum_balance: Money | None = None, auto_top_up: bool | None = None,
               payment_timing: str | None = None, regular_amount: Money | None = None,
               payment_day: int | None = None, payment_method: str | None = None) -> str:
    """api.set_wallet: the supply account's wallet (made the first time); its id."""
    return str(conn.execute(
        "SELECT id FROM api.set_wallet(%s, target_balance => %s, minimum_balance => %s, auto_top_up => %s,"
        " payment_timing => %s, regular_amount => %s, payment_day => %s, payment_method_id => %s)",
        (account, target_balance, minimum_balance, auto_top_up, payment_timing, regular_amount, payment_day,
         payment_method)).fetchone()[0])


def add_solar_rate(conn: psycopg.Connection, esco: str, effective_from: date | str, pence_per_kwp_year: Money) -> str:
    """The ESCO's solar credit rate from a day on (keyed on that day)."""
    return str(conn.execute("INSERT INTO billing.solar_rates (esco, effective_from, pence_per_kwp_year)"
                            " VALUES (%s, %s, %s) ON CONFLICT (esco, effective_from) DO UPDATE"
                            " SET pence_per_kwp_year = excluded.pence_per_kwp_year RETURNING id",
                            (esco, effective_from, pence_per_kwp_year)).fetchone()[0])


def add_solar_installation(conn: psycopg.Connection, property: str, mcs_certificate: str, capacity_kwp: Money,
                           commissioned_on: date | str) -> str:
    """Solar panels on a property (keyed on the MCS certificate within the ESCO)."""
    return str(conn.execute(
        "INSERT INTO billing.solar_installations (esco, property, mcs_certificate, declared_net_capacity_kwp,"
        " commissioned_on) SELECT p.esco, p.id, %s, %s, %s FROM flows.properties p WHERE p.id = %s"
        " ON CONFLICT (esco, mcs_certificate) DO UPDATE"
        " SET declared_net_capacity_kwp = excluded.declared_net_capacity_kwp"
        " RETURNING id", (mcs_certificate, capacity_kwp, commissioned_on, property)).fetchone()[0])


def allocate_solar(conn: psycopg.Connection, installation: str, property: str, ratio: Money) -> str:
    """A property's share of an installation's credit (ratios add up to at most 1, checked at commit)."""
    return str(conn.execute(
        "INSERT INTO billing.solar_allocations (esco, installation_id, property, ratio)"
        " SELECT i.esco, i.id, %s, %s FROM billing.solar_installations i WHERE i.id = %s"
        " ON CONFLICT (esco, installation_id, property) DO UPDATE SET ratio = excluded.ratio RETURNING id",
        (property, ratio, installation)).fetchone()[0])


def generate_solar_credits(conn: psycopg.Connection, esco_code: str, month: date | str) -> list[str]:
    """api.generate_solar_credits: the month's credits (made once, paid as top-ups); their ids."""
    return [str(r[0]) for r in conn.execute("SELECT id FROM api.generate_solar_credits(%s, %s)", (esco_code, month))]


def run_money_pass(conn: psycopg.Connection, retry_base: timedelta = timedelta(seconds=30)) -> dict:
    """billing.run_money_pass_v1, as the payments job runs it: due gifts, resumed top-ups, regular and auto
    payments."""
    return conn.execute("SELECT billing.run_money_pass_v1(%s)", (retry_base,)).fetchone()[0]

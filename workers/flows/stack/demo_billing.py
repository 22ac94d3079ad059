"""The demo community's money side: customers, tariffs and last month's statements.

- Customers: an owner-occupier in most homes; Meadow Lettings (a landlord) owns
  DM-05 and DM-06, let to tenants; the DM-06 tenant moved out mid-month last
  month and the next one moved in a few days later (the landlord pays the
  days between); the community hall is a business customer.
- Tariffs: the south-west price cap for last month's, this and next quarter
  (demo figures), the ESCO's 25% discount, one customer's discount changed
  mid-month; this quarter's rates rolled out to the meters.
- Statements: last month's, issued (numbered) and rendered to PDF.

Last month's half hours come from the year of history demo.py records from
the emulated meters' profile logs. Everything is made through the product's RPCs and
is skipped when already there.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import structlog

from flows import factories as f
from flows.billing.documents import render_pending
from flows.db.connect import connect

log = structlog.get_logger(__name__)

ESCO_CODE = "DEMO"
REGION = "south_west"
# (unit rate GBP/kWh, standing charge GBP/day), incl. VAT, by quarter offset from the current one
CAPS = {-1: (Decimal("0.25730"), Decimal("0.51510")), 0: (Decimal("0.26240"), Decimal("0.53450")),
        1: (Decimal("0.27030"), Decimal("0.54850"))}
LANDLORD = "Meadow Lettings Ltd"
OWNERS = ["Amira Shah", "Ben Carter", "Chloe Evans", "Dev Patel", None, None, "Grace Hughes", "Harry Wood",
          "Isla Morgan", "Jack Lewis", "Kiran Roberts", "Lily Walker", "Mason Hall", "Nora Green", "Oscar King",
          "Priya Turner", "Quinn Baker", "Rosa Wright", "Sam Cooper"]
TENANTS = {"DM-05": "Erin Price", "DM-06": "Felix Moore"}
NEXT_TENANT = "Gina Ford"
HALL = "Meadows Community Association"


def quarter_start(day: date, offset: int = 0) -> date:
    month = (day.month - 1) // 3 * 3 + 3 * offset
    return date(day.year + month // 12, month % 12 + 1, 1)


def last_month(today: date) -> date:
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def create(database_url: str, today: date | None = None) -> None:
    today = today or datetime.now(UTC).date()
    month = last_month(today)
    with connect(database_url, autocommit=True) as conn:
        esco = conn.execute("SELECT id FROM flows.escos WHERE code = %s", (ESCO_CODE,)).fetchone()[0]
        with conn.transaction():
            _tariffs(conn, esco, today, month)
            if not conn.execute("SELECT EXISTS (SELECT FROM billing.customers WHERE esco = %s)", (esco,)).fetchone()[0]:
                _customers(conn, month)
                for quarter in sorted({quarter_start(month), quarter_start(today), quarter_start(today, 1)}):
                    f.generate_customer_tariffs(conn, ESCO_CODE, quarter)
                changed = conn.execute("SELECT c.id FROM billing.customers c WHERE c.esco = %s AND c.fullname = %s",
                                       (esco, OWNERS[2])).fetchone()[0]
                f.set_customer_discount(conn, changed, 30, _at(month, 10, 7))
            f.bill_month(conn, ESCO_CODE, month)
        rendered = render_pending(conn)
        log.debug("demo billing ready", month=str(month), statements_rendered=len(rendered))


def _at(month: date, day: int, hour: int) -> datetime:
    return datetime(month.year, month.month, day, hour, tzinfo=UTC)


def _tariffs(conn: psycopg.Connection, esco, today: date, month: date) -> None:
    for offset, (unit, standing) in CAPS.items():
        f.add_price_cap(conn, REGION, quarter_start(today, offset), unit, standing)
    f.add_microgrid_tariff(conn, esco, quarter_start(month), REGION, 25)
    f.set_esco_billing(conn, esco, legal_name="Demo Community Energy CIC",
                       address="The Hall, Demo Meadows, Somerset TA1 1AA", email="billing@demo-energy.example",
                       phone="01823 000000", website="demo-energy.example", vat_number="GB123456789")


def _customers(conn: psycopg.Connection, month: date) -> None:
    """Everyone moved in before last month; the DM-06 tenant changes mid-month. Onboarded, they confirm their
    details, pay by Direct Debit and sign their contracts: live."""
    moved_in = datetime.combine(month - timedelta(days=31), datetime.min.time(), tzinfo=UTC)
    homes = dict(conn.execute("SELECT p.plot, p.id FROM flows.properties p JOIN flows.escos e ON e.id = p.esco"
                              " WHERE e.code = %s", (ESCO_CODE,)).fetchall())
    customers: set[str] = set()
    landlord = None
    for i, owner in enumerate(OWNERS):
        plot = f"DM-{i + 1:02d}"
        if owner:
            customers.add(_onboard(conn, homes[plot], owner, "owner_occupier", moved_in))
            continue
        landlord = _onboard(conn, homes[plot], LANDLORD, "owner", moved_in, customer=landlord)
        customers |= {landlord, _onboard(conn, homes[plot], TENANTS[plot], "occupier", moved_in)}
        if plot == "DM-06":
            account = conn.execute("SELECT id FROM billing.accounts WHERE property = %s", (homes[plot],)).fetchone()[0]
            f.move_out(conn, account, _at(month, 14, 10))
            customers.add(_onboard(conn, homes[plot], NEXT_TENANT, "occupier", _at(month, 20, 0)))
    customers.add(_onboard(conn, homes["Hall"], HALL, "owner_occupier", moved_in))
    for customer in customers:
        f.set_customer_status(conn, customer, "onboarding", details_confirmed_at=moved_in,
                              payment_method="direct_debit")
        f.add_contract(conn, customer, terms_version="2026.1", signed_at=moved_in, effective_date=moved_in.date())
        f.set_customer_status(conn, customer, "live")


def _onboard(conn, prop, name: str, role: str, at: datetime, customer: str | None = None) -> str:
    email = name.lower().replace(" ", ".").replace(".ltd", "") + "@mail.example"
    return f.onboard_customer(conn, prop, name, None if customer else email, role=role, move_in=at,
                              customer_id=customer).customer

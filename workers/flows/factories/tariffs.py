"""Customer tariffs: the regulator's price cap, an ESCO's quarter (its
discount and the meters' prepayment settings), and each customer's rates,
derived by the product (api.generate_customer_tariffs, api.set_customer_discount)."""

from datetime import date, datetime
from decimal import Decimal

import psycopg


def add_price_cap(conn: psycopg.Connection, region: str, quarter: date | str, unit_rate: Decimal | str,
                  standing_charge: Decimal | str) -> None:
    """The price cap of a region and quarter (reference data shared by every ESCO; admins enter it).
    Once there, it is kept as it is."""
    conn.execute("INSERT INTO billing.benchmark_tariffs (region, period_start, unit_rate, standing_charge)"
                 " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (region, quarter, unit_rate, standing_charge))


def add_microgrid_tariff(conn: psycopg.Connection, esco: str, quarter: date | str, region: str,
                         discount: Decimal | int | None = None) -> str:
    """An ESCO's quarter: its region and discount (default the column's, 25%). Once there, kept as it is."""
    conn.execute("INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount)"
                 " VALUES (%s, %s, %s, coalesce(%s, 25)) ON CONFLICT (esco, period_start) DO NOTHING",
                 (esco, quarter, region, discount))
    return str(conn.execute("SELECT id FROM billing.microgrid_tariffs WHERE esco = %s AND period_start = %s",
                            (esco, quarter)).fetchone()[0])


def generate_customer_tariffs(conn: psycopg.Connection, esco_code: str, quarter: date | str,
                              discount: Decimal | int | None = None) -> dict:
    """api.generate_customer_tariffs: the quarter's rates for every onboarding, live and exiting customer
    (adds only what is missing)."""
    return conn.execute("SELECT api.generate_customer_tariffs(%s, %s, %s)",
                        (esco_code, quarter, discount)).fetchone()[0]


def set_customer_discount(conn: psycopg.Connection, customer: str, discount: Decimal | int,
                          effective_from: datetime | str) -> None:
    """api.set_customer_discount: a customer's discount from a half hour on."""
    conn.execute("SELECT api.set_customer_discount(%s, %s, %s)", (customer, discount, effective_from))


def roll_out_customer_tariffs(conn: psycopg.Connection, esco_code: str, quarter: date | str) -> dict:
    """api.roll_out_customer_tariffs: each supply meter gets its payer's tariff for the quarter."""
    return conn.execute("SELECT api.roll_out_customer_tariffs(%s, %s)", (esco_code, quarter)).fetchone()[0]

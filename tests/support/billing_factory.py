"""Billing test data for one ESCO built by tests/support/factory.py: customers
(an owner-occupier, a tenant and their landlord), accounts, contracts, the price
cap, customer tariffs, last month's final statements and a rendered PDF, all
made through the product's own RPCs (api.onboard_customer,
api.generate_customer_tariffs, api.create_billing_run, ...).

Kept apart from the meter-side factory so that it can be composed with it.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg

REGION = "south_west"


@dataclass
class BillingData:
    customer: str = ""  # the owner-occupier of the ESCO's first property: the customer token's
    account: str = ""
    links: list[str] = field(default_factory=list)
    contract: str = ""
    tariffs: list[str] = field(default_factory=list)
    microgrid_tariffs: list[str] = field(default_factory=list)
    run: str = ""
    invoice: str = ""
    lines: list[str] = field(default_factory=list)
    others: dict[str, str] = field(default_factory=dict)  # the other customers' rows, by a stable label
    invoice_number: int = 0  # the owner-occupier's statement number

    def ids(self) -> set[str]:
        return {self.customer, self.account, self.contract, self.run, self.invoice, *self.links, *self.tariffs,
                *self.microgrid_tariffs, *self.lines, *self.others.values()}

    def customer_ids(self) -> set[str]:
        """What the owner-occupier may see of the billing rows."""
        return {self.customer, self.account, self.contract, self.run, self.invoice, *self.links, *self.tariffs,
                *self.microgrid_tariffs, *self.lines}


def quarter_start(day: date) -> date:
    return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def last_month_start(today: date) -> date:
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def add_price_caps(conn: psycopg.Connection, *quarters: date) -> None:
    """The price cap for the quarters (shared reference data: once for all ESCOs)."""
    for quarter in quarters:
        conn.execute("INSERT INTO billing.benchmark_tariffs (region, period_start, unit_rate, standing_charge)"
                     " VALUES (%s, %s, 0.24500, 0.60970) ON CONFLICT DO NOTHING", (REGION, quarter))


def build_billing(conn: psycopg.Connection, esco: str, code: str, properties: list[str],
                  render=None) -> BillingData:
    """Customers on the ESCO's two properties, their tariffs and last month's final statements.

    ``render(conn, invoice_id)`` stores the PDF of each statement when given.
    """
    data = BillingData()
    today = datetime.now(UTC).date()
    month = last_month_start(today)
    moved_in = datetime(month.year, month.month, 1, tzinfo=UTC)
    add_price_caps(conn, quarter_start(month), quarter_start(today))
    data.microgrid_tariffs.append(str(conn.execute(
        "INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount) VALUES (%s, %s, %s, 25)"
        " RETURNING id", (esco, quarter_start(month), REGION)).fetchone()[0]))

    onboarded = conn.execute("SELECT api.onboard_customer(%s, 'Olive Owner', %s, move_in => %s)",
                             (properties[0], f"olive@{code.lower()}.example", moved_in)).fetchone()[0]
    data.customer = onboarded["customer"]["id"]
    data.account = onboarded["accounts"][0]["id"]
    data.links = [link["id"] for link in onboarded["customer_accounts"]]
    data.contract = str(conn.execute(
        "INSERT INTO billing.contracts (esco, customer_id, account_id, terms_version, signed_at, effective_date)"
        " VALUES (%s, %s, %s, 'v1', %s, %s) RETURNING id", (esco, data.customer, data.account, moved_in, month)
    ).fetchone()[0])

    # A let property: the landlord owns it, a tenant occupies it.
    landlord = conn.execute("SELECT api.onboard_customer(%s, 'Larry Landlord', %s, role => 'owner', move_in => %s)",
                            (properties[1], f"larry@{code.lower()}.example", moved_in)).fetchone()[0]
    tenant = conn.execute("SELECT api.onboard_customer(%s, 'Tina Tenant', %s, role => 'occupier', move_in => %s)",
                          (properties[1], f"tina@{code.lower()}.example", moved_in)).fetchone()[0]
    # The landlord's second home (the third property), empty: nobody occupies it yet.
    spare = conn.execute("SELECT api.onboard_customer(%s, 'Larry Landlord', role => 'owner', move_in => %s,"
                         " customer_id => %s)", (properties[2], moved_in, landlord["customer"]["id"])).fetchone()[0]
    data.others["spare.account"] = spare["accounts"][0]["id"]
    data.others.update({f"spare.link.{i}": link["id"] for i, link in enumerate(spare["customer_accounts"])})
    for who, made in (("landlord", landlord), ("tenant", tenant)):
        data.others.update({f"{who}.customer": made["customer"]["id"], f"{who}.account": made["accounts"][0]["id"],
                            **{f"{who}.link.{i}": link["id"] for i, link in enumerate(made["customer_accounts"])}})
    conn.execute("UPDATE billing.customers SET status = 'onboarding' WHERE esco = %s", (esco,))

    for quarter in sorted({quarter_start(month), quarter_start(today)}):
        conn.execute("SELECT api.generate_customer_tariffs(%s, %s)", (code, quarter))
    for n, (tariff_id, customer) in enumerate(conn.execute(
            "SELECT t.id, t.customer_id FROM billing.customer_tariffs AS t JOIN billing.customers AS c"
            " ON c.id = t.customer_id WHERE t.esco = %s ORDER BY c.fullname, t.effective_from", (esco,))):
        if str(customer) == data.customer:
            data.tariffs.append(str(tariff_id))
        else:
            data.others[f"tariff.{n}"] = str(tariff_id)
    data.microgrid_tariffs = [str(r[0]) for r in conn.execute(
        "SELECT id FROM billing.microgrid_tariffs WHERE esco = %s", (esco,))]

    data.run = str(conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (code, month)).fetchone()[0])
    conn.execute("SELECT api.finalise_billing_run(%s)", (data.run,))
    for n, (invoice, customer) in enumerate(conn.execute(
            "SELECT i.id, i.customer_id FROM billing.invoices AS i JOIN billing.customers AS c ON c.id = i.customer_id"
            " WHERE i.run_id = %s ORDER BY c.fullname, i.period_start", (data.run,)).fetchall()):
        lines = [str(r[0]) for r in conn.execute("SELECT id FROM billing.invoice_lines WHERE invoice_id = %s"
                                                 " ORDER BY position", (invoice,))]
        if str(customer) == data.customer:
            data.invoice, data.lines = str(invoice), lines
        else:
            data.others.update({f"invoice.{n}": str(invoice), **{f"invoice.{n}.line.{k}": line
                                                                  for k, line in enumerate(lines)}})
    data.invoice_number = conn.execute("SELECT number FROM billing.invoices WHERE id = %s",
                                       (data.invoice,)).fetchone()[0]
    if render is not None:
        for (invoice,) in conn.execute("SELECT id FROM billing.invoices WHERE run_id = %s", (data.run,)).fetchall():
            render(conn, str(invoice))
    return data

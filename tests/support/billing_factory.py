"""Billing test data for one ESCO built by tests/support/factory.py: customers
(an owner-occupier, a tenant and their landlord), accounts, contracts, the price
cap, customer tariffs, last month's final statements and a rendered PDF, all
made by the product's factories (flows.factories: onboard_customer,
generate_customer_tariffs, bill_month ...).

Kept apart from the meter-side composition so that it can be composed with it.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg

from flows import factories as f

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
        f.add_price_cap(conn, REGION, quarter, "0.24500", "0.60970")


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
    f.add_microgrid_tariff(conn, esco, quarter_start(month), REGION, 25)

    olive = f.onboard_customer(conn, properties[0], "Olive Owner", f"olive@{code.lower()}.example", move_in=moved_in)
    data.customer, data.account, data.links = olive.customer, olive.account, olive.links
    data.contract = f.add_contract(conn, data.customer, account=data.account, signed_at=moved_in, effective_date=month)

    # A let property: the landlord owns it, a tenant occupies it.
    landlord = f.onboard_customer(conn, properties[1], "Larry Landlord", f"larry@{code.lower()}.example",
                                  role="owner", move_in=moved_in)
    tenant = f.onboard_customer(conn, properties[1], "Tina Tenant", f"tina@{code.lower()}.example",
                                role="occupier", move_in=moved_in)
    # The landlord's second home (the third property), empty: nobody occupies it yet.
    spare = f.onboard_customer(conn, properties[2], "Larry Landlord", role="owner", move_in=moved_in,
                               customer_id=landlord.customer)
    data.others["spare.account"] = spare.account
    data.others.update({f"spare.link.{i}": link for i, link in enumerate(spare.links)})
    for who, made in (("landlord", landlord), ("tenant", tenant)):
        data.others.update({f"{who}.customer": made.customer, f"{who}.account": made.account,
                            **{f"{who}.link.{i}": link for i, link in enumerate(made.links)}})
    for customer in (data.customer, landlord.customer, tenant.customer):
        f.set_customer_status(conn, customer, "onboarding")

    for quarter in sorted({quarter_start(month), quarter_start(today)}):
        f.generate_customer_tariffs(conn, code, quarter)
    for n, (tariff_id, customer) in enumerate(conn.execute(
            "SELECT t.id, t.customer_id FROM billing.customer_tariffs AS t JOIN billing.customers AS c"
            " ON c.id = t.customer_id WHERE t.esco = %s ORDER BY c.fullname, t.effective_from", (esco,))):
        if str(customer) == data.customer:
            data.tariffs.append(str(tariff_id))
        else:
            data.others[f"tariff.{n}"] = str(tariff_id)
    data.microgrid_tariffs = [str(r[0]) for r in conn.execute(
        "SELECT id FROM billing.microgrid_tariffs WHERE esco = %s", (esco,))]

    data.run = f.bill_month(conn, code, month)
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

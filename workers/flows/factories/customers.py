"""Customers, the accounts they pay for and who stands behind them when:
onboarded, moved in and out through the operator RPCs (api.onboard_customer,
api.move_out, api.move_in), contracts signed, customers made live."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg


@dataclass(frozen=True)
class Onboarded:
    customer: str
    account: str  # the property's supply account
    links: list[str] = field(default_factory=list)  # customer_accounts rows: owner and/or occupier
    invite_token: str | None = None


def onboard_customer(conn: psycopg.Connection, property: str, fullname: str, email: str | None = None,
                     phone: str | None = None, *, role: str = "owner_occupier", move_in: datetime | str | None = None,
                     customer_id: str | None = None) -> Onboarded:
    """api.onboard_customer: the customer (invited; or ``customer_id``, e.g. a landlord's next home), the
    property's supply account (made if it has none) and their links from ``move_in``. Someone of that name
    already linked to the property in that role is returned as they are."""
    roles = ["owner", "occupier"] if role == "owner_occupier" else [role]
    existing = conn.execute(
        "SELECT c.id, a.id, array_agg(ca.id ORDER BY ca.role) FROM billing.customers c"
        " JOIN billing.customer_accounts ca ON ca.customer_id = c.id JOIN billing.accounts a ON a.id = ca.account_id"
        " WHERE a.property = %s AND a.type = 'supply' AND c.fullname = %s AND ca.role = ANY (%s)"
        " GROUP BY c.id, a.id HAVING count(*) = %s",
        (property, fullname, roles, len(roles))).fetchone()
    if existing:
        return Onboarded(str(existing[0]), str(existing[1]), [str(link) for link in existing[2]])
    made = conn.execute("SELECT api.onboard_customer(%s, %s, %s, %s, role => %s, move_in => %s, customer_id => %s)",
                        (property, fullname, email, phone, role, move_in, customer_id)).fetchone()[0]
    return Onboarded(made["customer"]["id"], made["accounts"][0]["id"],
                     [link["id"] for link in made["customer_accounts"]], made.get("invite_token"))


def onboard_customers(conn: psycopg.Connection, people: Sequence[tuple[str, str, str | None]], *,
                      role: str = "owner_occupier", move_in: datetime | str | None = None) -> list[Onboarded]:
    """api.onboard_customer for many homes at once, in one statement (benchmarks onboard thousands):
    ``people`` is (property, fullname, email) per home; new customers only. In the order given."""
    made = conn.execute(
        "SELECT o FROM unnest(%s::uuid[], %s::text[], %s::text[]) WITH ORDINALITY AS x (property, fullname, email, n)"
        " CROSS JOIN LATERAL api.onboard_customer(x.property, x.fullname, x.email, role => %s, move_in => %s) AS o"
        " ORDER BY x.n", ([p for p, _, _ in people], [n for _, n, _ in people], [e for _, _, e in people], role,
                          move_in)).fetchall()
    return [Onboarded(o["customer"]["id"], o["accounts"][0]["id"], [link["id"] for link in o["customer_accounts"]],
                      o.get("invite_token")) for (o,) in made]


def add_contract(conn: psycopg.Connection, customer: str, *, type: str = "supply", terms_version: str = "v1",
                 signed_at: datetime | str | None = None, effective_date: date | str | None = None,
                 end_date: date | str | None = None, account: str | None = None) -> str:
    """A contract of the customer (``type`` supply, solar or ev), signed at ``signed_at`` (None: not signed),
    in force from ``effective_date`` (default today). The same customer, type, terms and start: the same row."""
    found = conn.execute("SELECT id FROM billing.contracts WHERE customer_id = %s AND type = %s AND terms_version = %s"
                         " AND effective_date = coalesce(%s::date, flows.uk_day(now()))",
                         (customer, type, terms_version, effective_date)).fetchone()
    if found:
        return str(found[0])
    return str(conn.execute(
        "INSERT INTO billing.contracts (esco, customer_id, account_id, type, terms_version, signed_at, effective_date,"
        " end_date) SELECT c.esco, c.id, %s, %s, %s, %s, coalesce(%s::date, flows.uk_day(now())), %s"
        " FROM billing.customers c WHERE c.id = %s RETURNING id",
        (account, type, terms_version, signed_at, effective_date, end_date, customer)).fetchone()[0])


def set_customer_status(conn: psycopg.Connection, customers: str | Sequence[str], status: str, *,
                        details_confirmed_at: datetime | str | None = None, payment_method: str | None = None) -> None:
    """Moves customers (one id, or many) along onboarding (pending -> onboarding -> live ...); live needs
    confirmed details, a payment method and a signed contract in force (add_contract)."""
    ids = [customers] if isinstance(customers, str) else list(customers)
    conn.execute("UPDATE billing.customers SET details_confirmed_at = coalesce(%s, details_confirmed_at),"
                 " payment_method = coalesce(%s, payment_method) WHERE id = ANY (%s::uuid[])",
                 (details_confirmed_at, payment_method, ids))
    conn.execute("UPDATE billing.customers SET status = %s WHERE id = ANY (%s::uuid[]) AND status <> %s",
                 (status, ids, status))


def move_out(conn: psycopg.Connection, account: str, at: datetime | str, final_reads: dict | None = None) -> None:
    """api.move_out: the occupier leaves at a half hour (final reads given, else the last recorded)."""
    conn.execute("SELECT api.move_out(%s, %s, %s::jsonb)",
                 (account, at, None if final_reads is None else psycopg.types.json.Jsonb(final_reads)))


def move_in(conn: psycopg.Connection, account: str, customer: str, at: datetime | str, role: str = "occupier") -> None:
    """api.move_in: an existing customer moves in (or takes the property over as owner)."""
    conn.execute("SELECT api.move_in(%s, %s, %s, %s)", (account, customer, at, role))

"""Statements: what they print about the ESCO, and monthly billing runs made
and issued by the product (api.create_billing_run, api.finalise_billing_run,
api.credit_invoice)."""

from datetime import date

import psycopg


def set_esco_billing(conn: psycopg.Connection, esco: str, *, legal_name: str | None = None,
                     address: str | None = None, email: str | None = None, phone: str | None = None,
                     website: str | None = None, vat_number: str | None = None) -> None:
    """What the ESCO's statements print about it."""
    conn.execute("INSERT INTO billing.esco_billing (esco, legal_name, address, email, phone, website, vat_number)"
                 " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                 " ON CONFLICT (esco) DO UPDATE SET legal_name = excluded.legal_name,"
                 " address = excluded.address, email = excluded.email, phone = excluded.phone,"
                 " website = excluded.website, vat_number = excluded.vat_number",
                 (esco, legal_name, address, email, phone, website, vat_number))


def create_billing_run(conn: psycopg.Connection, esco_code: str, month: date | str) -> str:
    """api.create_billing_run: the month's draft statements (again: recomputed); the run's id."""
    return str(conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (esco_code, month)).fetchone()[0])


def finalise_billing_run(conn: psycopg.Connection, run: str) -> None:
    """api.finalise_billing_run: numbers and freezes the run's statements (their charges go to the ledger)."""
    conn.execute("SELECT api.finalise_billing_run(%s)", (run,))


def bill_month(conn: psycopg.Connection, esco_code: str, month: date | str) -> str:
    """A month billed and issued (the run's id); a month issued before is left as it is."""
    issued = conn.execute("SELECT r.id FROM billing.billing_runs r JOIN flows.escos e ON e.id = r.esco"
                          " WHERE e.code = %s AND r.period_start = %s AND r.status = 'final'",
                          (esco_code, month)).fetchone()
    if issued:
        return str(issued[0])
    run = create_billing_run(conn, esco_code, month)
    finalise_billing_run(conn, run)
    return run


def credit_invoice(conn: psycopg.Connection, invoice: str, reason: str) -> str:
    """api.credit_invoice: a credit note voiding a final statement; its id."""
    return str(conn.execute("SELECT id FROM api.credit_invoice(%s, %s)", (invoice, reason)).fetchone()[0])

"""Bank accounts and their statements, imported through the product's one
import path (flows.bank.importer: the file read, then api.import_bank_statement,
which matches what it can), so the entries, payments, payouts and journals are
the product's own."""

import json
from datetime import date
from decimal import Decimal

import psycopg

from flows.bank import importer, render
from flows.bank.statement import Entry, Statement


def add_bank_account(conn: psycopg.Connection, esco: str, name: str = "main", *, sort_code: str = "309634",
                     account_number: str = "12345678", iban: str | None = None, bank_name: str | None = "Lloyds",
                     csv_mapping: dict | None = None) -> str:
    """The ESCO's bank account (keyed on its name within the ESCO)."""
    return str(conn.execute(
        "INSERT INTO billing.bank_accounts (esco, name, bank_name, sort_code, account_number, iban, csv_mapping)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)"
        " ON CONFLICT (esco, name) DO UPDATE SET bank_name = excluded.bank_name RETURNING id",
        (esco, name, bank_name, sort_code, account_number, iban,
                          json.dumps(csv_mapping) if csv_mapping else None)).fetchone()[0])


def statement(entries: list[tuple], opening: Decimal | str, period_start: date, period_end: date, *,
              sort_code: str | None = None, account_number: str | None = None) -> Statement:
    """A statement of (booking date, amount, reference, counterparty) entries from an opening balance."""
    rows = [Entry(booking_date=d, amount=Decimal(str(a)), reference=ref, counterparty=party)
            for d, a, ref, party in entries]
    opening = Decimal(str(opening))
    return Statement(period_start=period_start, period_end=period_end, opening_balance=opening,
                     closing_balance=opening + sum((e.amount for e in rows), Decimal(0)), entries=rows,
                     sort_code=sort_code, account_number=account_number)


def import_statement(conn: psycopg.Connection, bank_account: str, statements: list[Statement], *,
                     fmt: str = "camt053", esco_code: str | None = None, file_name: str | None = None) -> dict:
    """Writes the statements as a bank file of ``fmt`` and imports it (the same file twice: already_imported)."""
    content = render.render(fmt, statements)
    return importer.import_file(conn, bank_account, content, fmt=fmt, esco=esco_code,
                                file_name=file_name or f"statement.{fmt}")

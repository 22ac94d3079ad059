"""Importing a bank file: the bank account (and its CSV mapping) from SQL, the
file read in Python, then ONE call, ``api.import_bank_statement``, which
checks, writes and matches in one transaction (the CLI and the gateway's
POST /bank/statements both come here)."""

import json
from decimal import Decimal

import psycopg
from psycopg.types.json import set_json_loads

from flows.bank.parse import read
from flows.bank.statement import StatementError

ACCOUNT = "SELECT to_jsonb(b) FROM billing.bank_account_named(%s, %s) AS b"
IMPORT = "SELECT api.import_bank_statement(%s, %s::jsonb, %s)"
ACCOUNTS = "SELECT to_jsonb(b) FROM api.bank_accounts AS b ORDER BY b.name"
QUEUE = ("SELECT to_jsonb(q) FROM api.bank_queue AS q WHERE %(account)s::text IS NULL OR q.bank_account = %(account)s"
         " ORDER BY q.booking_date, q.amount DESC")


class Refused(StatementError):
    """The database refused the import (SQLSTATE 22023 and friends): the message names the field or entry."""


def refused(error: psycopg.Error) -> Refused:
    diag = error.diag
    return Refused(diag.message_primary or str(error), hint=diag.message_hint)


def import_file(conn: psycopg.Connection, bank_account: str, content: bytes, *, fmt: str = "auto",
                file_name: str | None = None, esco: str | None = None) -> dict:
    """Reads ``content`` and imports it into ``bank_account``, in one transaction; what the SQL function says."""
    exact_json(conn)
    try:
        with conn.transaction():
            account = conn.execute(ACCOUNT, (bank_account, esco)).fetchone()[0]
            bank_file = read(content, fmt, account.get("csv_mapping"), file_name)
            return conn.execute(IMPORT, (bank_account, json.dumps(bank_file.to_json()), esco)).fetchone()[0]
    except psycopg.Error as error:
        if (error.sqlstate or "")[:2] in ("22", "23"):  # bad input, named by the SQL: nothing was written
            raise refused(error) from None
        raise


def exact_json(conn: psycopg.Connection) -> None:
    """JSON from the database with its numbers as Decimal: money is never a float."""
    set_json_loads(lambda text: json.loads(text, parse_float=Decimal), conn)


def accounts(conn: psycopg.Connection) -> list[dict]:
    exact_json(conn)
    return [r[0] for r in conn.execute(ACCOUNTS)]


def queue(conn: psycopg.Connection, bank_account: str | None = None) -> list[dict]:
    exact_json(conn)
    return [r[0] for r in conn.execute(QUEUE, {"account": bank_account})]

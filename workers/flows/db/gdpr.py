"""Data-subject requests against the database: every call is a named SQL function of the api
(api.customer_data_export, api.erase_customer, api.record_consent) or view (api.data_retention),
which decide who may ask (sql/schema/gdpr/access.sql)."""

import json

import psycopg
from psycopg.rows import dict_row

from flows.db.connect import connect
from flows.errors import FlowsError, Refused


class ErasureRefused(Refused):
    """The customer cannot be erased yet; ``reasons`` says why (check, reason, hint), one per obstacle."""

    def __init__(self, message: str, hint: str | None, reasons: list[dict]):
        super().__init__(message, hint)
        self.reasons = reasons


def _failed(error: psycopg.Error) -> FlowsError:
    """The database's refusal as one line: no such customer (PT404), or why not (PT409)."""
    diag = error.diag
    if error.sqlstate == "PT409":
        return ErasureRefused(diag.message_primary, diag.message_hint, json.loads(diag.message_detail or "[]"))
    if error.sqlstate in ("PT404", "22P02"):
        return FlowsError(diag.message_primary or "no such customer", hint="customer ids are listed at /customers")
    return FlowsError(diag.message_primary or str(error), hint=diag.message_hint)


def export(database_url: str, customer_id: str) -> dict:
    """Everything held about the customer, as one JSON document."""
    with connect(database_url) as conn:
        try:
            return conn.execute("SELECT api.customer_data_export(%s)", (customer_id,)).fetchone()[0]
        except psycopg.Error as error:
            raise _failed(error) from None


def erase(database_url: str, customer_id: str, reference: str | None = None, commit: bool = True) -> dict:
    """Erases the customer; with ``commit`` False the erasure is done and rolled back (what it would change)."""
    with connect(database_url) as conn:
        try:
            outcome = conn.execute("SELECT api.erase_customer(%s, %s)", (customer_id, reference)).fetchone()[0]
        except psycopg.Error as error:
            raise _failed(error) from None
        if not commit:
            conn.rollback()
        return outcome


def record_consent(database_url: str, customer_id: str, given: bool, purpose: str = "half_hourly_data") -> dict:
    """Records the customer's consent (or its withdrawal) as an operator does for them; the consent in force."""
    with connect(database_url) as conn:
        conn.row_factory = dict_row
        try:
            return conn.execute("SELECT * FROM api.record_consent(%s, %s, %s)",
                                (given, purpose, customer_id)).fetchone()
        except psycopg.Error as error:
            raise _failed(error) from None


def retention(database_url: str, customer_id: str) -> list[dict]:
    """What is held about the customer per table, and until when."""
    with connect(database_url) as conn:
        conn.row_factory = dict_row
        try:
            return conn.execute("SELECT relation, rows, retain_until, retention FROM api.data_retention"
                                " WHERE customer_id = %s ORDER BY relation", (customer_id,)).fetchall()
        except psycopg.Error as error:
            raise _failed(error) from None

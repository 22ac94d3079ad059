"""Statement documents in the database: render issued statements, store each once, fetch one.

Every query is a named SQL function: ``api.statement_document`` (what to print),
``billing.store_invoice_document`` (stored once), ``billing.invoices_to_render``
(issued statements without a document), ``api.statement_pdf`` (the file).
"""

import psycopg
import structlog

from flows.billing.statement import RENDERER, render_pdf
from flows.errors import FlowsError

log = structlog.get_logger(__name__)


def render_invoice(conn: psycopg.Connection, invoice_id: str) -> str:
    """Renders an issued statement and stores it unless it has a document; returns the stored sha256."""
    doc = conn.execute("SELECT api.statement_document(%s)", (invoice_id,)).fetchone()[0]
    if doc is None:
        raise FlowsError(f"no statement {invoice_id}")
    pdf = render_pdf(doc)
    sha = conn.execute("SELECT billing.store_invoice_document(%s, %s, %s)", (invoice_id, pdf, RENDERER)).fetchone()[0]
    log.debug("statement rendered", invoice=invoice_id, reference=doc["reference"], bytes=len(pdf))
    return sha


def render_pending(conn: psycopg.Connection, limit: int = 100) -> list[str]:
    """Renders issued statements that have no document yet; returns their ids."""
    pending = [str(r[0]) for r in conn.execute("SELECT billing.invoices_to_render(%s)", (limit,))]
    for invoice_id in pending:
        render_invoice(conn, invoice_id)
    return pending


def statement_pdf(conn: psycopg.Connection, number: int, esco: str | None = None) -> bytes:
    """The stored PDF of statement ``number`` (of ESCO ``esco``)."""
    try:
        return bytes(conn.execute("SELECT api.statement_pdf(%s, %s)", (number, esco)).fetchone()[0])
    except psycopg.errors.Error as error:
        hint = error.diag.message_hint
        raise FlowsError(error.diag.message_primary or str(error), hint=hint) from None

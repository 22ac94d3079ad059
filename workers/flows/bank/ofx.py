"""OFX (1.x SGML and 2.x XML) through ``ofxtools`` (maintained, strict, Decimal
amounts). The statement's period is BANKTRANLIST's DTSTART..DTEND, its closing
balance LEDGERBAL; OFX gives no opening balance (docs/reconciliation.md: the
statement ending the day before gives it, else the balance is unchecked).
Dates are taken in Europe/London (a DTPOSTED at 00:30 BST is that UK day).
Per STMTTRN: TRNAMT (signed), DTPOSTED (booking), DTUSER (value), FITID (the
entry id), NAME (the counterparty), MEMO (the payer's reference).
"""

import io
from zoneinfo import ZoneInfo

from ofxtools.Parser import OFXTree

from flows.bank.statement import Entry, Statement, StatementError, clean, pence

UK = ZoneInfo("Europe/London")


def _day(value):
    return value.astimezone(UK).date() if value is not None else None


def parse(content: bytes) -> list[Statement]:
    tree = OFXTree()
    try:
        tree.parse(io.BytesIO(content))
        document = tree.convert()
    except Exception as error:  # ofxtools raises its own and ValueError/KeyError for bad files
        raise StatementError(f"not a readable OFX file: {type(error).__name__}: {error}") from None
    statements = []
    for s_index, stmt in enumerate(document.statements):
        where = f"STMTRS[{s_index + 1}]"
        if stmt.curdef != "GBP":
            raise StatementError(f"{where}/CURDEF: {stmt.curdef}, not GBP")
        tranlist = stmt.banktranlist
        entries = [Entry(booking_date=_day(t.dtposted), amount=pence(t.trnamt, f"{where}/STMTTRN[{i + 1}]/TRNAMT"),
                         value_date=_day(t.dtuser), reference=clean(t.memo), counterparty=clean(t.name),
                         entry_id=clean(t.fitid))
                   for i, t in enumerate(tranlist or [])]
        account = stmt.account
        ledger = stmt.ledgerbal
        statements.append(Statement(
            period_start=_day(tranlist.dtstart), period_end=_day(tranlist.dtend),
            closing_balance=pence(ledger.balamt, f"{where}/LEDGERBAL") if ledger is not None else None,
            entries=entries, currency=stmt.curdef,
            sort_code=clean(getattr(account, "bankid", None)), account_number=clean(getattr(account, "acctid", None))))
    if not statements:
        raise StatementError("an OFX file with no bank statement (STMTRS)")
    return statements

"""SWIFT MT940 through the ``mt-940`` package (maintained, Decimal amounts).

A file may hold several statements (one :20: block each). Per statement:
:25: the account (an IBAN, or sort code and account number), :60F:/:60M: the
opening balance, :62F: the closing one (an intermediate :62M: closes a page).
Per :61: entry: the booking date (entry date, else the value date), the
amount (C/D, RC/RD reversals), the customer reference (NONREF: none), the bank
reference after // (the entry id); its :86: is read as the structured
subfields /EREF/ (the payer's reference), /NAME/ (counterparty) and /REMI/
(remittance) where present (ING, ABN AMRO and others write them so),
otherwise its whole text is the remittance and the :61: customer reference is
the reference.
"""

import re
from datetime import date

import mt940

from flows.bank.statement import Entry, Statement, StatementError, clean, pence

SUBFIELD = re.compile(r"/(EREF|NAME|REMI|CNTP|ORDP)/")


def _details(text: str | None) -> dict:
    if not text:
        return {}
    flat = text.replace("\r", "").replace("\n", "")
    parts = SUBFIELD.split(flat)
    if len(parts) < 3:
        return {"REMI": clean(text)}
    return {tag: clean(value) for tag, value in zip(parts[1::2], parts[2::2], strict=True)}


def _date(value) -> date | None:
    return date(value.year, value.month, value.day) if value is not None else None


def _blocks(text: str) -> list[str]:
    starts = [m.start() for m in re.finditer(r"(?m)^:20:", text)]
    if not starts:
        raise StatementError("not an MT940 statement: no :20: field")
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)], strict=True)]


def parse(content: bytes) -> list[Statement]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("latin-1")
    statements = []
    for s_index, block in enumerate(_blocks(text)):
        where = f"statement {s_index + 1}"
        try:
            parsed = mt940.models.Transactions()
            parsed.parse(block)
        except Exception as error:  # mt-940 raises RuntimeError/ValueError naming the tag
            raise StatementError(f"{where}: {error}") from None
        data = parsed.data
        opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
        closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
        if closing is None:
            raise StatementError(f"{where}: no closing balance (:62F:)")
        entries = []
        for i, tx in enumerate(parsed):
            at = f"{where}, :61: entry {i + 1}"
            d = tx.data
            amount = pence(d["amount"].amount, at)
            if d.get("currency", "GBP") != "GBP" or (closing.amount.currency or "GBP") != "GBP":
                raise StatementError(f"{at}: not in GBP")
            details = _details(d.get("transaction_details"))
            customer_reference = clean(d.get("customer_reference"))
            if customer_reference == "NONREF":
                customer_reference = None
            booked = _date(d.get("entry_date") or d.get("date"))
            entries.append(Entry(
                booking_date=booked, amount=amount, value_date=_date(d.get("date")),
                reference=details.get("EREF") or customer_reference,
                counterparty=details.get("NAME") or details.get("CNTP") or details.get("ORDP"),
                remittance=details.get("REMI"), entry_id=clean(d.get("bank_reference"))))
        account = (clean(data.get("account_identification")) or "").replace(" ", "").upper()
        statements.append(Statement(
            period_start=_date(opening.date) if opening else min(e.booking_date for e in entries),
            period_end=_date(closing.date),
            opening_balance=pence(opening.amount.amount, f"{where} :60F:") if opening else None,
            closing_balance=pence(closing.amount.amount, f"{where} :62F:"), entries=entries,
            statement_id=clean(data.get("transaction_reference")),
            iban=account if re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", account) else None,
            sort_code=account[:6] if re.fullmatch(r"[0-9]{14}", account) else None,
            account_number=account[6:] if re.fullmatch(r"[0-9]{14}", account) else None))
    return statements

"""The normalised shape every bank file is read into, and sent to SQL as JSON.

Amounts are ``Decimal`` in whole pence (never float): a parser that meets a
fraction of a penny refuses the file. Dates are the bank's calendar dates.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from flows.errors import FlowsError

FORMATS = ("camt053", "ofx", "mt940", "csv")
PENNY = Decimal("0.01")


class StatementError(FlowsError):
    """A bank file that cannot be read: what is wrong and where."""


def pence(value, where: str) -> Decimal:
    """A Decimal amount in whole pence from a Decimal or its text, else StatementError naming ``where``."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except ArithmeticError:
        raise StatementError(f"{where}: {value!r} is not an amount") from None
    if not amount.is_finite() or amount != amount.quantize(PENNY):
        raise StatementError(f"{where}: {value!r} is not an amount in whole pence")
    return amount.quantize(PENNY)


@dataclass(frozen=True)
class Entry:
    booking_date: date
    amount: Decimal  # signed: money in positive
    value_date: date | None = None
    reference: str | None = None  # the payer's reference (what a bank transfer carries)
    counterparty: str | None = None  # who paid (or was paid)
    remittance: str | None = None  # the bank's other text about it
    entry_id: str | None = None  # the bank's id of the entry in this format
    balance: Decimal | None = None  # the running balance after it, where the format gives one

    def to_json(self) -> dict:
        data = {"booking_date": self.booking_date.isoformat(), "amount": str(self.amount)}
        if self.value_date:
            data["value_date"] = self.value_date.isoformat()
        for name in ("reference", "counterparty", "remittance", "entry_id"):
            if value := getattr(self, name):
                data[name] = value
        if self.balance is not None:
            data["balance"] = str(self.balance)
        return data


@dataclass
class Statement:
    period_start: date
    period_end: date
    closing_balance: Decimal | None
    opening_balance: Decimal | None = None
    entries: list[Entry] = field(default_factory=list)
    currency: str = "GBP"
    statement_id: str | None = None
    iban: str | None = None
    sort_code: str | None = None
    account_number: str | None = None

    def to_json(self) -> dict:
        account = {k: v for k, v in (("iban", self.iban), ("sort_code", self.sort_code),
                                     ("account_number", self.account_number)) if v}
        return {
            "statement_id": self.statement_id, "currency": self.currency, "account": account,
            "period_start": self.period_start.isoformat(), "period_end": self.period_end.isoformat(),
            "opening_balance": None if self.opening_balance is None else str(self.opening_balance),
            "closing_balance": None if self.closing_balance is None else str(self.closing_balance),
            "entries": [e.to_json() for e in self.entries],
        }


@dataclass
class BankFile:
    format: str
    file_hash: str
    statements: list[Statement]
    file_name: str | None = None

    def to_json(self) -> dict:
        return {"format": self.format, "file_hash": self.file_hash, "file_name": self.file_name,
                "statements": [s.to_json() for s in self.statements]}


def file_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def clean(text: str | None) -> str | None:
    """Text with its whitespace runs made single spaces; None when empty."""
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text or None

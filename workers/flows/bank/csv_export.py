"""A bank's CSV export, read with the bank account's saved column mapping
(billing.bank_accounts.csv_mapping; billing.csv_mapping_problem says what it
may hold). Amounts may carry a pound sign, thousands separators, or brackets
for money out. With a balance column each entry's running balance is checked
(the opening balance is the first balance less its entry; the closing one the
last); without one the statement is imported unchecked.
"""

import csv
import io
import re
from datetime import datetime

from flows.bank.statement import Entry, Statement, StatementError, clean, pence


def _amount(text: str, where: str):
    raw = text.strip().replace("£", "").replace(",", "").replace(" ", "")
    if re.fullmatch(r"\(.*\)", raw):
        raw = "-" + raw[1:-1]
    return pence(raw, where) if raw else None


def parse(content: bytes, mapping: dict | None) -> list[Statement]:
    if not mapping:
        raise StatementError("a CSV file needs the bank account's column mapping (csv_mapping), and it has none",
                             hint="PATCH /bank_accounts?id=eq.ID {\"csv_mapping\": {\"date\": ..., \"amount\": ...}}")
    text = content.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=mapping.get("delimiter", ","))
    wanted = [v for k, v in mapping.items() if k not in ("date_format", "delimiter", "order")]
    missing = [c for c in wanted if c not in (reader.fieldnames or [])]
    if missing:
        raise StatementError(f"the CSV has no column {', '.join(map(repr, missing))} (its header: "
                             f"{', '.join(reader.fieldnames or [])})", hint="check the bank account's csv_mapping")
    date_format = mapping.get("date_format", "%Y-%m-%d")

    def day(row, key, where):
        if key not in mapping or not row[mapping[key]].strip():
            return None
        try:
            return datetime.strptime(row[mapping[key]].strip(), date_format).date()
        except ValueError:
            raise StatementError(f"{where}, column {mapping[key]!r}: {row[mapping[key]]!r} is not a date in "
                                 f"{date_format}") from None

    entries = []
    for line, row in enumerate(reader, start=2):
        where = f"line {line}"
        booked = day(row, "date", where)
        if booked is None:
            raise StatementError(f"{where}: no date in column {mapping['date']!r}")
        if "amount" in mapping:
            amount = _amount(row[mapping["amount"]], f"{where}, column {mapping['amount']!r}")
        else:
            credit = _amount(row[mapping["credit"]], f"{where}, column {mapping['credit']!r}")
            debit = _amount(row[mapping["debit"]], f"{where}, column {mapping['debit']!r}")
            amount = (credit or 0) - abs(debit or 0)
        if amount is None:
            raise StatementError(f"{where}: no amount")
        balance = _amount(row[mapping["balance"]], f"{where}, column {mapping['balance']!r}") \
            if "balance" in mapping else None
        entries.append(Entry(booking_date=booked, amount=pence(amount, where), value_date=day(row, "value_date", where),
                             reference=clean(row.get(mapping.get("reference", ""))),
                             counterparty=clean(row.get(mapping.get("counterparty", ""))),
                             remittance=clean(row.get(mapping.get("remittance", ""))),
                             entry_id=clean(row.get(mapping.get("entry_id", ""))), balance=balance))
    if not entries:
        raise StatementError("the CSV has no entries")
    if mapping.get("order") == "newest_first":
        entries.reverse()
    with_balance = all(e.balance is not None for e in entries)
    return [Statement(period_start=min(e.booking_date for e in entries),
                      period_end=max(e.booking_date for e in entries),
                      opening_balance=entries[0].balance - entries[0].amount if with_balance else None,
                      closing_balance=entries[-1].balance if with_balance else None, entries=entries)]

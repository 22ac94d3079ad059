"""CAMT.053 (ISO 20022 Bank-to-Customer Statement), any version (.001.02 to
.001.13: elements are found by local name, so the namespace's version does
not matter), read with lxml with entities and network access off.

No maintained PyPI library fits (docs/reconciliation.md): the candidates are
young single-author packages that either hide the balances we check or pull in
much more; the message's structure is small and stable, so it is read here.

What is read: per Stmt, Id, FrToDt (else the balances' dates), Acct/Id (IBAN,
or Othr/Id: sort code and account number), the OPBD (else PRCD) and CLBD
balances; per booked Ntry (Sts BOOK; pending entries are not on the statement):
Amt and CdtDbtInd (a reversal, RvslInd true, flips the sign), BookgDt, ValDt,
AcctSvcrRef (the entry id), the first TxDtls's debtor (money in) or creditor
(money out) name, RmtInf/Ustrd (else Strd/CdtrRefInf/Ref, else EndToEndId when
not NOTPROVIDED) as the reference, AddtlNtryInf as the remittance text.
"""

from datetime import date

from lxml import etree

from flows.bank.statement import Entry, Statement, StatementError, clean, pence

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)


def _first(node, path: str):
    found = node.xpath(path)
    return found[0] if found else None


def _text(node, path: str) -> str | None:
    found = _first(node, path)
    return clean(found if isinstance(found, str) else (found.text if found is not None else None))


def _path(*names: str) -> str:
    return "/".join(f"*[local-name()='{n}']" for n in names)


def _day(text: str | None, where: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise StatementError(f"{where}: {text!r} is not a date") from None


def _signed(node, where: str) -> tuple:
    amount = pence(_text(node, _path("Amt")), f"{where}/Amt")
    indicator = _text(node, _path("CdtDbtInd"))
    if indicator not in ("CRDT", "DBIT"):
        raise StatementError(f"{where}/CdtDbtInd: {indicator!r} is neither CRDT nor DBIT")
    currency = _first(node, _path("Amt") + "/@Ccy")
    return (amount if indicator == "CRDT" else -amount), (str(currency) if currency is not None else None)


def parse(content: bytes) -> list[Statement]:
    try:
        root = etree.fromstring(content, PARSER)
    except etree.XMLSyntaxError as error:
        raise StatementError(f"not well-formed XML: {error}") from None
    if etree.QName(root).localname != "Document" or _first(root, _path("BkToCstmrStmt")) is None:
        raise StatementError("not a CAMT.053 message: no Document/BkToCstmrStmt")
    statements = []
    for s_index, node in enumerate(root.xpath(_path("BkToCstmrStmt", "Stmt"))):
        where = f"Stmt[{s_index + 1}]"
        balances = {}
        for b_index, bal in enumerate(node.xpath(_path("Bal"))):
            code = _text(bal, _path("Tp", "CdOrPrtry", "Cd"))
            amount, _ = _signed(bal, f"{where}/Bal[{b_index + 1}]")
            day = _day(_text(bal, _path("Dt", "Dt")) or _text(bal, _path("Dt", "DtTm")), f"{where}/Bal/Dt")
            balances.setdefault(code, (amount, day))
        entries = []
        for n_index, ntry in enumerate(node.xpath(_path("Ntry"))):
            at = f"{where}/Ntry[{n_index + 1}]"
            status = _text(ntry, _path("Sts")) or _text(ntry, _path("Sts", "Cd"))
            if status and status != "BOOK":
                continue
            amount, currency = _signed(ntry, at)
            if currency and currency != "GBP":
                raise StatementError(f"{at}/Amt: currency {currency}, not GBP")
            if _text(ntry, _path("RvslInd")) == "true":
                amount = -amount
            booked = _day(_text(ntry, _path("BookgDt", "Dt")) or _text(ntry, _path("BookgDt", "DtTm")), at)
            if booked is None:
                raise StatementError(f"{at}: no BookgDt")
            details = _first(ntry, _path("NtryDtls", "TxDtls"))
            party = reference = None
            if details is not None:
                side = "Dbtr" if amount > 0 else "Cdtr"
                party = _text(details, _path("RltdPties", side, "Nm")) or _text(
                    details, _path("RltdPties", side, "Pty", "Nm"))
                reference = (_text(details, _path("RmtInf", "Ustrd"))
                             or _text(details, _path("RmtInf", "Strd", "CdtrRefInf", "Ref")))
                end_to_end = _text(details, _path("Refs", "EndToEndId"))
                if not reference and end_to_end and end_to_end != "NOTPROVIDED":
                    reference = end_to_end
            entries.append(Entry(
                booking_date=booked, amount=amount,
                value_date=_day(_text(ntry, _path("ValDt", "Dt")) or _text(ntry, _path("ValDt", "DtTm")), at),
                reference=reference, counterparty=party, remittance=_text(ntry, _path("AddtlNtryInf")),
                entry_id=_text(ntry, _path("AcctSvcrRef")) or _text(ntry, _path("NtryRef"))))
        opening = balances.get("OPBD") or balances.get("PRCD")
        closing = balances.get("CLBD")
        start = _day(_text(node, _path("FrToDt", "FrDtTm")), where)
        end = _day(_text(node, _path("FrToDt", "ToDtTm")), where)
        dates = [e.booking_date for e in entries]
        start = start or (opening[1] if opening else None) or (min(dates) if dates else None)
        end = end or (closing[1] if closing else None) or (max(dates) if dates else None)
        if start is None or end is None:
            raise StatementError(f"{where}: no period (FrToDt), balances or entries to date it by")
        iban = _text(node, _path("Acct", "Id", "IBAN"))
        other = _text(node, _path("Acct", "Id", "Othr", "Id"))
        scan = other.replace(" ", "").replace("-", "") if other else None
        statements.append(Statement(
            period_start=start, period_end=end, opening_balance=opening[0] if opening else None,
            closing_balance=closing[0] if closing else None, entries=entries,
            currency=_text(node, _path("Acct", "Ccy")) or "GBP", statement_id=_text(node, _path("Id")),
            iban=iban.replace(" ", "").upper() if iban else None,
            sort_code=scan[:6] if scan and len(scan) == 14 and scan.isdigit() else None,
            account_number=scan[6:] if scan and len(scan) == 14 and scan.isdigit() else None))
    if not statements:
        raise StatementError("a CAMT.053 message with no Stmt")
    return statements

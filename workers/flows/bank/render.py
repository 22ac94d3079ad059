"""Writing a statement in the banks' formats: CAMT.053 (camt.053.001.02), OFX
2.2, MT940 and CSV (a bank account's column mapping). The demo, the benchmark
and the tests make their bank files with these, and the parsers read them
back; each format carries what its specification has room for (OFX: the
counterparty's NAME is at most 32 characters, no remittance beside the MEMO;
MT940: the structured :86: subfields /EREF/ /NAME/ /REMI/).
"""

import csv
import io
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape

from flows.bank.statement import Statement

CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def _ccy(amount: Decimal) -> str:
    return f"{abs(amount):.2f}"


def _camt_balance(code: str, amount: Decimal, day: date) -> str:
    return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"GBP\">{_ccy(amount)}</Amt>"
            f"<CdtDbtInd>{'CRDT' if amount >= 0 else 'DBIT'}</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")


def camt053(statements: list[Statement], message_id: str = "FLOWS-STATEMENT") -> bytes:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{CAMT_NS}"><BkToCstmrStmt>',
             f"<GrpHdr><MsgId>{escape(message_id)}</MsgId><CreDtTm>2026-01-01T06:00:00</CreDtTm></GrpHdr>"]
    for n, s in enumerate(statements):
        account = (f"<IBAN>{s.iban}</IBAN>" if s.iban else
                   f"<Othr><Id>{s.sort_code}{s.account_number}</Id><SchmeNm><Prtry>SCAN</Prtry></SchmeNm></Othr>")
        parts.append(f"<Stmt><Id>{escape(s.statement_id or f'{message_id}-{n}')}</Id>"
                     f"<CreDtTm>{s.period_end.isoformat()}T23:59:59</CreDtTm>"
                     f"<FrToDt><FrDtTm>{s.period_start.isoformat()}T00:00:00</FrDtTm>"
                     f"<ToDtTm>{s.period_end.isoformat()}T23:59:59</ToDtTm></FrToDt>"
                     f"<Acct><Id>{account}</Id><Ccy>{s.currency}</Ccy></Acct>")
        if s.opening_balance is not None:
            parts.append(_camt_balance("OPBD", s.opening_balance, s.period_start))
        if s.closing_balance is not None:
            parts.append(_camt_balance("CLBD", s.closing_balance, s.period_end))
        for e in s.entries:
            credit = e.amount >= 0
            party = ""
            if e.counterparty:
                party = (f"<RltdPties><{'Dbtr' if credit else 'Cdtr'}><Nm>{escape(e.counterparty)}</Nm>"
                         f"</{'Dbtr' if credit else 'Cdtr'}></RltdPties>")
            details = ""
            if party or e.reference:
                details = ("<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>" + party
                           + (f"<RmtInf><Ustrd>{escape(e.reference)}</Ustrd></RmtInf>" if e.reference else "")
                           + "</TxDtls></NtryDtls>")
            parts.append(
                f"<Ntry><Amt Ccy=\"GBP\">{_ccy(e.amount)}</Amt><CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd>"
                f"<Sts>BOOK</Sts><BookgDt><Dt>{e.booking_date.isoformat()}</Dt></BookgDt>"
                + (f"<ValDt><Dt>{e.value_date.isoformat()}</Dt></ValDt>" if e.value_date else "")
                + (f"<AcctSvcrRef>{escape(e.entry_id)}</AcctSvcrRef>" if e.entry_id else "")
                + "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>" + ("RCDT" if credit else "ICDT")
                + "</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>" + details
                + (f"<AddtlNtryInf>{escape(e.remittance)}</AddtlNtryInf>" if e.remittance else "") + "</Ntry>")
        parts.append("</Stmt>")
    parts.append("</BkToCstmrStmt></Document>\n")
    return "".join(parts).encode()


def _ofx_date(day: date) -> str:
    return day.strftime("%Y%m%d") + "120000[0:GMT]"


def ofx(statements: list[Statement]) -> bytes:
    """OFX 2.2 (XML). OFX has no opening balance: LEDGERBAL is the closing one."""
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
           '<?OFX OFXHEADER="200" VERSION="220" SECURITY="NONE" OLDFILEUID="NONE" NEWFILEUID="NONE"?>\n',
           "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>"
           "<DTSERVER>20260101060000[0:GMT]</DTSERVER><LANGUAGE>ENG</LANGUAGE></SONRS></SIGNONMSGSRSV1>"
           "<BANKMSGSRSV1>"]
    for n, s in enumerate(statements):
        bank_id, account = (s.sort_code or (s.iban or "")[8:14]), (s.account_number or (s.iban or "")[14:22])
        out.append(f"<STMTTRNRS><TRNUID>{n + 1}</TRNUID><STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>"
                   f"<STMTRS><CURDEF>{s.currency}</CURDEF><BANKACCTFROM><BANKID>{bank_id}</BANKID>"
                   f"<ACCTID>{account}</ACCTID><ACCTTYPE>CHECKING</ACCTTYPE></BANKACCTFROM>"
                   f"<BANKTRANLIST><DTSTART>{_ofx_date(s.period_start)}</DTSTART>"
                   f"<DTEND>{_ofx_date(s.period_end)}</DTEND>")
        for i, e in enumerate(s.entries):
            out.append(f"<STMTTRN><TRNTYPE>{'CREDIT' if e.amount >= 0 else 'DEBIT'}</TRNTYPE>"
                       f"<DTPOSTED>{_ofx_date(e.booking_date)}</DTPOSTED>"
                       + (f"<DTUSER>{_ofx_date(e.value_date)}</DTUSER>" if e.value_date else "")
                       + f"<TRNAMT>{e.amount:.2f}</TRNAMT><FITID>{escape(e.entry_id or f'{s.period_start:%Y%m%d}-{i}')}"
                       "</FITID>"
                       + (f"<NAME>{escape(e.counterparty[:32])}</NAME>" if e.counterparty else "")
                       + (f"<MEMO>{escape(e.reference)}</MEMO>" if e.reference else "") + "</STMTTRN>")
        closing = s.closing_balance if s.closing_balance is not None else Decimal(0)
        out.append(f"</BANKTRANLIST><LEDGERBAL><BALAMT>{closing:.2f}</BALAMT>"
                   f"<DTASOF>{_ofx_date(s.period_end)}</DTASOF></LEDGERBAL></STMTRS></STMTTRNRS>")
    out.append("</BANKMSGSRSV1></OFX>\n")
    return "".join(out).encode()


def _swift_amount(amount: Decimal) -> str:
    return f"{abs(amount):.2f}".replace(".", ",")


def _swift_balance(tag: str, amount: Decimal, day: date, currency: str) -> str:
    return f":{tag}:{'C' if amount >= 0 else 'D'}{day:%y%m%d}{currency}{_swift_amount(amount)}"


def _lines(text: str, width: int = 65) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def mt940(statements: list[Statement]) -> bytes:
    """SWIFT MT940, one :20: block per statement; :86: carries /EREF/ /NAME/ /REMI/ subfields."""
    out = []
    for n, s in enumerate(statements):
        account = s.iban or f"{s.sort_code}{s.account_number}"
        opening = s.opening_balance if s.opening_balance is not None else Decimal(0)
        closing = s.closing_balance if s.closing_balance is not None else opening + sum(e.amount for e in s.entries)
        out += [f":20:{(s.statement_id or f'STMT{n}')[:16]}", f":25:{account}", f":28C:{n + 1}/1",
                _swift_balance("60F", opening, s.period_start, s.currency)]
        for e in s.entries:
            value = e.value_date or e.booking_date
            reference = (e.reference or "NONREF")[:16]
            bank_reference = f"//{e.entry_id[:16]}" if e.entry_id else ""
            out.append(f":61:{value:%y%m%d}{e.booking_date:%m%d}{'C' if e.amount >= 0 else 'D'}"
                       f"{_swift_amount(e.amount)}NTRF{reference}{bank_reference}")
            details = "".join(f"/{tag}/{text}" for tag, text in (("EREF", e.reference), ("NAME", e.counterparty),
                                                                  ("REMI", e.remittance)) if text)
            if details:
                out += [":86:" + line if i == 0 else line for i, line in enumerate(_lines(details))]
        out.append(_swift_balance("62F", closing, s.period_end, s.currency))
        out.append("-")
    return ("\r\n".join(out) + "\r\n").encode()


def csv_export(statement: Statement, mapping: dict) -> bytes:
    """A bank's CSV export as ``mapping`` describes it (billing.csv_mapping_problem)."""
    columns = [mapping[k] for k in ("date", "value_date", "amount", "credit", "debit", "reference", "counterparty",
                                    "remittance", "entry_id", "balance") if k in mapping]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=mapping.get("delimiter", ","), lineterminator="\n")
    writer.writerow(columns)
    date_format = mapping.get("date_format", "%Y-%m-%d")
    rows = []
    for e in statement.entries:
        values = {"date": e.booking_date.strftime(date_format),
                  "value_date": (e.value_date or e.booking_date).strftime(date_format),
                  "amount": f"{e.amount:.2f}", "credit": f"{e.amount:.2f}" if e.amount > 0 else "",
                  "debit": f"{-e.amount:.2f}" if e.amount < 0 else "", "reference": e.reference or "",
                  "counterparty": e.counterparty or "", "remittance": e.remittance or "", "entry_id": e.entry_id or "",
                  "balance": "" if e.balance is None else f"{e.balance:.2f}"}
        rows.append([values[k] for k in ("date", "value_date", "amount", "credit", "debit", "reference",
                                         "counterparty", "remittance", "entry_id", "balance") if k in mapping])
    if mapping.get("order") == "newest_first":
        rows.reverse()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def render(fmt: str, statements: list[Statement], mapping: dict | None = None) -> bytes:
    if fmt == "camt053":
        return camt053(statements)
    if fmt == "ofx":
        return ofx(statements)
    if fmt == "mt940":
        return mt940(statements)
    if fmt == "csv" and len(statements) == 1 and mapping:
        return csv_export(statements[0], mapping)
    raise ValueError(f"cannot render {fmt} (csv: one statement and a mapping)")

"""Which format a bank file is in, and reading it into the normalised shape."""

from flows.bank import camt053, csv_export, ofx, swift_mt940
from flows.bank.statement import FORMATS, BankFile, StatementError, file_hash


def detect(content: bytes) -> str:
    head = content[:4096].lstrip(b"\xef\xbb\xbf \r\n\t")
    if b"camt.053" in head or b"BkToCstmrStmt" in head:
        return "camt053"
    if b"OFXHEADER" in head or b"<OFX>" in head.upper():
        return "ofx"
    if head.startswith((b":20:", b"{1:")) or b"\n:20:" in head:
        return "mt940"
    if head.startswith(b"<"):
        raise StatementError("an XML file that is not a CAMT.053 statement", hint="--format camt053 if it is one")
    return "csv"


def read(content: bytes, fmt: str = "auto", csv_mapping: dict | None = None, file_name: str | None = None) -> BankFile:
    """The file's statements in the normalised shape; StatementError says what is wrong and where."""
    if fmt == "auto":
        fmt = detect(content)
    if fmt not in FORMATS:
        raise StatementError(f"unknown format {fmt!r}", hint="auto, " + ", ".join(FORMATS))
    if fmt == "camt053":
        statements = camt053.parse(content)
    elif fmt == "ofx":
        statements = ofx.parse(content)
    elif fmt == "mt940":
        statements = swift_mt940.parse(content)
    else:
        statements = csv_export.parse(content, csv_mapping)
    return BankFile(format=fmt, file_hash=file_hash(content), statements=statements, file_name=file_name)

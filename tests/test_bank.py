"""Bank statements: the readers of CAMT.053, OFX, MT940 and CSV (hypothesis:
any statement written in a format reads back as the same entries, amounts
exact), and the import through the one SQL function against a real database:
idempotent, one set of entries whatever the format, a broken statement refused
naming the entry with nothing written, the CLI's --json, the gateway's POST
/bank/statements and PostgREST's queue RPCs."""

import json
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flows import factories as f
from flows.bank import importer, parse, render
from flows.bank.statement import Entry, Statement, StatementError
from flows.gateway.app import create_app
from flows.gateway.config import GatewayConfig

FIXTURES = Path(__file__).parent / "fixtures" / "bank"
FLOWS = str(Path(sys.executable).parent / "flows")
CSV_MAPPING = {"date": "Date", "amount": "Amount", "reference": "Reference", "counterparty": "Name",
               "balance": "Balance", "date_format": "%d/%m/%Y", "order": "newest_first"}

# Text the formats carry unchanged: the SWIFT character set less "/" (MT940's subfield separator).
TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -.", min_size=1,
               max_size=30).map(lambda s: " ".join(s.split())).filter(bool)
AMOUNTS = st.decimals(min_value=Decimal("-9999.99"), max_value=Decimal("9999.99"), places=2).filter(lambda d: d != 0)


@st.composite
def statements(draw) -> Statement:
    start = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 1)))
    days = draw(st.integers(0, 27))
    entries = []
    for _ in range(draw(st.integers(0, 12))):
        entries.append(Entry(booking_date=start + timedelta(days=draw(st.integers(0, days))), amount=draw(AMOUNTS),
                             reference=draw(st.none() | TEXT), counterparty=draw(st.none() | TEXT),
                             entry_id=draw(st.none() | st.from_regex(r"[A-Z0-9]{4,12}", fullmatch=True))))
    entries.sort(key=lambda e: e.booking_date)
    opening = draw(AMOUNTS)
    return Statement(period_start=start, period_end=start + timedelta(days=days), opening_balance=opening,
                     closing_balance=opening + sum((e.amount for e in entries), Decimal(0)), entries=entries,
                     iban="GB82WEST12345698765432")


def carried(entry: Entry, fmt: str, written: Entry) -> tuple:
    """What of an entry a format carries: OFX keeps 32 characters of the name, no remittance, and gives every
    entry an id (FITID is required)."""
    party = entry.counterparty[:32].strip() if fmt == "ofx" and entry.counterparty else entry.counterparty
    return entry.booking_date, entry.amount, entry.reference, party, entry.entry_id if written.entry_id else None


@pytest.mark.parametrize("fmt", ["camt053", "ofx", "mt940"])
@given(statement=statements())
def test_a_statement_reads_back_as_written(fmt, statement):
    bank_file = parse.read(render.render(fmt, [statement]))
    assert bank_file.format == fmt
    [back] = bank_file.statements
    if fmt != "ofx":  # OFX has no opening balance
        assert back.opening_balance == statement.opening_balance
    assert back.closing_balance == statement.closing_balance
    assert (back.period_start, back.period_end) == (statement.period_start, statement.period_end)
    assert len(back.entries) == len(statement.entries)
    assert [carried(e, fmt, w) for e, w in zip(back.entries, statement.entries, strict=True)] == [
        carried(w, fmt, w) for w in statement.entries]
    assert all(isinstance(e.amount, Decimal) for e in back.entries)


@given(statement=statements().filter(lambda s: s.entries))
def test_a_csv_export_reads_back_with_its_running_balances(statement):
    balance, entries = statement.opening_balance, []
    for e in statement.entries:
        balance += e.amount
        entries.append(Entry(e.booking_date, e.amount, reference=e.reference, counterparty=e.counterparty,
                             balance=balance))
    written = Statement(statement.period_start, statement.period_end, balance, statement.opening_balance, entries)
    [back] = parse.read(render.csv_export(written, CSV_MAPPING), "csv", CSV_MAPPING).statements
    assert [(e.booking_date, e.amount, e.reference, e.counterparty, e.balance) for e in back.entries] == [
        (e.booking_date, e.amount, e.reference, e.counterparty, e.balance) for e in entries]
    assert (back.opening_balance, back.closing_balance) == (statement.opening_balance, balance)


def test_fractions_of_a_penny_and_bad_files_are_refused():
    camt = (FIXTURES / "statement.camt053.xml").read_bytes()
    with pytest.raises(StatementError, match="whole pence"):
        parse.read(camt.replace(b">12.50<", b">12.505<"))
    with pytest.raises(StatementError, match="not well-formed"):
        parse.read(camt[:300], "camt053")
    with pytest.raises(StatementError, match=r"no column .*'Balance' \(its header: Date, Amount\)"):
        parse.read(b"Date,Amount\n01/11/2026,1.00\n", "csv", CSV_MAPPING)


# ---- against the database ----

def esco_with_homes(conn, homes: int):
    """An ESCO with ``homes`` homes on prepay meters, each with its customer (accounts 1001...)."""
    esco = f.add_esco(conn)
    site = f.add_site(conn, esco.id, "S1", "Site")
    accounts = []
    for n in range(homes):
        home = f.add_property(conn, site, f"P-{n:02}")
        meter = f.add_meter(conn, esco.id, hardware="B1.w", site=site)
        head = f.add_service_head(conn, esco.id, f"H-{n:02}", phase=1, fuse_rating=100)
        f.link_property_head(conn, home, head)
        f.link_head_meter(conn, head, meter.id)
        accounts.append(f.onboard_customer(conn, home, f"Customer {n}").account)
    return esco, accounts


@pytest.fixture
def bank(db):
    """Two homes and a bank account "main" (the fixtures' IBAN, their CSV mapping)."""
    esco, accounts = esco_with_homes(db, 2)
    f.add_bank_account(db, esco.id, "main", sort_code=None, account_number=None, iban="GB82WEST12345698765432",
                       csv_mapping=CSV_MAPPING)
    return esco, accounts


def entries_of(db, esco) -> list[tuple]:
    return db.execute("SELECT booking_date, amount, bank_reference, status FROM billing.bank_transactions"
                      " WHERE esco = %s ORDER BY dedup_key", (esco.id,)).fetchall()


def test_the_same_transactions_in_any_format_are_one_set_of_entries(db, bank):
    esco, accounts = bank
    numbers = [db.execute("SELECT account_number FROM billing.accounts WHERE id = %s", (a,)).fetchone()[0]
               for a in accounts]
    assert numbers[0] == "1001"  # the fixtures' references name it
    first = importer.import_file(db, "main", (FIXTURES / "statement.camt053.xml").read_bytes())
    assert (first["outcome"], first["added"], first["bank_transfers"], first["queued"]) == ("imported", 5, 3, 2)
    once = entries_of(db, esco)
    again = importer.import_file(db, "main", (FIXTURES / "statement.camt053.xml").read_bytes())
    assert (again["outcome"], again["added"]) == ("already_imported", 0)
    for name in ("statement.ofx", "statement.mt940"):
        other = importer.import_file(db, "main", (FIXTURES / name).read_bytes())
        assert (other["outcome"], other["added"], other["duplicates"]) == ("imported", 0, 5), name
    assert entries_of(db, esco) == once
    # an overlapping statement (the last day again and the next) adds only the new day's entry
    overlap = importer.import_file(db, "main", (FIXTURES / "overlap.camt053.xml").read_bytes())
    assert (overlap["added"], overlap["duplicates"]) == (1, 2)
    # one payment per matched credit: the mangled reference too; the ledger took them
    payments = db.execute("SELECT a.account_number, p.amount FROM billing.payments p JOIN billing.accounts a"
                          " ON a.id = p.account_id WHERE p.esco = %s AND p.origin = 'bank_statement'"
                          " ORDER BY 1, 2", (esco.id,)).fetchall()
    assert payments == [("1001", Decimal("25.00")), ("1002", Decimal("10.00")), ("1002", Decimal("12.50"))]
    journals = db.execute("SELECT count(*) FROM billing.journals j JOIN billing.bank_matches m"
                          " ON m.payment_id = j.payment_id WHERE j.kind = 'payment_received' AND j.esco = %s",
                          (esco.id,)).fetchone()[0]
    assert journals == 3


def test_a_broken_statement_is_refused_naming_the_entry_and_nothing_is_written(db, bank):
    esco, _ = bank
    csv = (FIXTURES / "statement.csv").read_bytes().replace(b",33.00", b",33.45")  # a running balance off by 0.45
    with pytest.raises(importer.Refused, match=r"running balance breaks at entry 3 \(2026-11-04, 12.50"):
        importer.import_file(db, "main", csv, fmt="csv")
    closing = b'<Amt Ccy="GBP">50.00'
    camt = (FIXTURES / "statement.camt053.xml").read_bytes().replace(closing, closing.replace(b"50", b"51"))
    with pytest.raises(importer.Refused, match=r"difference 1.00"):
        importer.import_file(db, "main", camt)
    assert entries_of(db, esco) == []
    assert db.execute("SELECT count(*) FROM billing.bank_statements WHERE esco = %s", (esco.id,)).fetchone()[0] == 0
    with pytest.raises(importer.Refused, match=r"not a bank account you can import into; known: .*/main"):
        importer.import_file(db, "elsewhere", csv)


def flows(*args, db_url):
    return subprocess.run([FLOWS, *args, "--database-url", db_url], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_the_cli(db, db_url, bank):
    esco, _ = bank
    done = flows("bank", "import", str(FIXTURES / "statement.csv"), "--bank-account", "main", "--json", db_url=db_url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["added"], result["statements"][0]["balance_check"]) == ("imported", 5, "running")
    queue = json.loads(flows("bank", "queue", "--json", db_url=db_url).stdout)
    assert [(q["amount"], q["queue_reason"]) for q in queue] == [
        ("-4.50", "a payment out (debit): dismiss it with what it was"),
        ("7.00", "no account number in the reference 'BIRTHDAY'")]
    accounts = json.loads(flows("bank", "accounts", "--json", db_url=db_url).stdout)
    assert [a["name"] for a in accounts if a["esco"] == esco.id] == ["main"]
    unknown = flows("bank", "import", str(FIXTURES / "statement.csv"), "--bank-account", "nope", db_url=db_url)
    assert unknown.returncode == 1 and "known:" in unknown.stderr and "/main" in unknown.stderr


def test_http_import_through_the_gateway_and_the_queue_through_postgrest(api):
    with api.sql() as conn:
        esco, [account] = esco_with_homes(conn, 1)
        number = conn.execute("SELECT account_number FROM billing.accounts WHERE id = %s", (account,)).fetchone()[0]
        f.add_bank_account(conn, esco.id, "ops", iban="GB82WEST12345698765432", sort_code=None, account_number=None)
    day = date(2026, 11, 2)
    content = render.camt053([f.statement([(day, "20.00", f"ref {number}", "Ada"), (day, "9.99", "?", "Bob")],
                                          "0", day, day)])
    host, dbname = api.db_url.rsplit("@", 1)[-1].rsplit("/", 1)
    app = create_app(GatewayConfig(database_url=f"postgresql://flows_authenticator:{api.authenticator_password}"
                                                f"@{host}/{dbname}", jwt_secret=api.jwt_secret))
    operator = {"Authorization": f"Bearer {api.token('operator', esco.code)}"}
    with TestClient(app) as gateway:
        assert gateway.post("/bank/statements?bank_account=ops", content=content).status_code == 401
        analyst = {"Authorization": f"Bearer {api.token('analyst', esco.code)}"}
        assert gateway.post("/bank/statements?bank_account=ops", content=content, headers=analyst).status_code == 403
        bad = gateway.post("/bank/statements?bank_account=nope", content=content, headers=operator)
        assert bad.status_code == 400 and "known:" in bad.json()["message"]
        made = gateway.post("/bank/statements?bank_account=ops", content=content, headers=operator)
        assert made.status_code == 201, made.text
        assert (made.json()["bank_transfers"], made.json()["queued"]) == (1, 1)
        assert gateway.post("/bank/statements?bank_account=ops", content=content,
                            headers=operator).json()["outcome"] == "already_imported"
    with api.client("operator", esco.code) as http:
        [queued] = http.get("/bank_queue").json()
        refused = http.post("/rpc/split_bank_transaction", json={"transaction_id": queued["id"], "parts": [
            {"amount": 5, "account_id": account}, {"amount": 4, "account_id": account}]})
        assert refused.status_code == 400 and "parts add up to 9" in refused.json()["message"]
        assert http.post("/rpc/dismiss_bank_transaction", json={"transaction_id": queued["id"]}).status_code == 400
        split = http.post("/rpc/split_bank_transaction", json={"transaction_id": queued["id"], "parts": [
            {"amount": 5, "account_id": account}, {"amount": 4.99, "account_id": account}], "reason": "two months"})
        assert split.status_code == 200 and split.json()[0]["status"] == "matched"
        assert http.get("/bank_queue").json() == []
        [decision] = http.get("/bank_decisions", params={"action": "eq.split"}).json()
        assert (decision["reason"], [p["amount"] for p in decision["parts"]]) == ("two months", [5, 4.99])
        again = http.post("/rpc/dismiss_bank_transaction", json={"transaction_id": queued["id"], "reason": "x"})
        assert again.status_code == 400 and "already matched" in again.json()["message"]
    with psycopg.connect(api.db_url) as conn:
        audited = conn.execute("SELECT count(*) FROM flows.audit_log WHERE relation = 'billing.bank_decisions'"
                               " AND row_key ->> 'id' = %s", (decision["id"],)).fetchone()[0]
    assert audited == 1

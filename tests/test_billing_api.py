"""Billing through PostgREST, end to end: onboard customers, give them tariffs,
bill a month with a mid-month tariff change and a mid-month move-out, and check
every figure against an independent computation in Python (from the half hours
read back over HTTP, the price cap and the discounts: not the SQL under test).
Then: re-running is identical, finalising numbers gap-free, credit notes, the
PDF, what a customer sees, and bad input refused with nothing written.
"""

import json
import subprocess
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

import psycopg
import pytest
from PIL import Image

from flows import factories as f
from flows.billing.documents import render_pending

UK = ZoneInfo("Europe/London")
MONTH = date(2026, 3, 1)  # the clocks go forward on 29 March: a 23-hour day in the month
QUARTER = date(2026, 1, 1)
REGION = "north_west"
CAP_UNIT, CAP_STANDING = Decimal("0.27030"), Decimal("0.53680")
PENNY = Decimal("0.01")


def uk_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UK).astimezone(UTC)


MONTH_FROM, MONTH_TO = uk_midnight(MONTH), uk_midnight(date(2026, 4, 1))
TARIFF_CHANGE = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
MOVE_OUT = datetime(2026, 3, 18, 14, 30, tzinfo=UTC)


def ok(response, status=(200, 201)):
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    return response.json() if response.content else None


def kwh_at(k: int, element: str) -> Decimal:
    """A deterministic, varied half-hourly consumption."""
    return Decimal(k % 11 + (3 if element == "B" else 1)) * Decimal("0.037")


@pytest.fixture(scope="module")
def community(api):
    """An ESCO with three homes and meters, a month of half hours, and its customers onboarded over HTTP."""
    esco_id, code = api.new_esco("Billing Test Energy")
    with api.sql() as conn:
        f.add_price_cap(conn, REGION, QUARTER, CAP_UNIT, CAP_STANDING)
        site = f.add_site(conn, esco_id, "BT", "Billing Test Site")
        homes, meters, registers = [], [], {}
        for i, hardware in enumerate(("C1.w", "B1.w", "C1.w")):
            prop = f.add_property(conn, site, f"BT-0{i + 1}", address=f"{i + 1} Meadow Lane")
            head = f.add_service_head(conn, esco_id, f"BT-H{i}")
            f.link_property_head(conn, prop, head)
            meter = f.add_meter(conn, esco_id, hardware=hardware, site=site,
                                elements=["A", "B"] if hardware == "C1.w" else ["SINGLE"],
                                registers_from="2026-01-01T00:00:00Z")
            f.link_head_meter(conn, head, meter.id)
            homes.append(prop)
            meters.append(meter.id)
            registers[meter.id] = meter.registers
        # a month of half hours (and a day either side), some estimated from reads, a few missing
        ids, times, kwh, sources = [], [], [], []
        t, k = MONTH_FROM - timedelta(days=1), 0
        while t < MONTH_TO + timedelta(days=1):
            for meter in meters:
                for element, register in registers[meter].items():
                    if k % 97 == 13 and meter == meters[0]:
                        continue  # missing
                    ids.append(register)
                    times.append(t)
                    kwh.append(kwh_at(k, element))
                    sources.append("reads" if k % 53 == 7 else "profile_log")
            t += timedelta(minutes=30)
            k += 1
        for source in ("profile_log", "reads"):
            chosen = [i for i, s in enumerate(sources) if s == source]
            conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], NULL, %s)",
                         ([ids[i] for i in chosen], [times[i] for i in chosen], [kwh[i] for i in chosen], source))

    with api.client("operator", code) as op:
        ok(op.post("/microgrid_tariffs", json={"period_start": str(QUARTER), "region": REGION, "discount": 20}))
        owner = ok(op.post("/rpc/onboard_customer", json={
            "property": homes[0], "fullname": "Olive Owner", "email": f"olive-{code}@example.com",
            "move_in": "2026-01-01T00:00:00Z"}))
        landlord = ok(op.post("/rpc/onboard_customer", json={
            "property": homes[1], "fullname": "Larry Landlord", "email": f"larry-{code}@example.com",
            "role": "owner", "move_in": "2026-01-01T00:00:00Z"}))
        tenant = ok(op.post("/rpc/onboard_customer", json={
            "property": homes[1], "fullname": "Tina Tenant", "email": f"tina-{code}@example.com",
            "role": "occupier", "move_in": "2026-02-01T00:00:00Z"}))
        third = ok(op.post("/rpc/onboard_customer", json={
            "property": homes[2], "fullname": "Pat Discount", "email": f"pat-{code}@example.com",
            "move_in": "2026-01-01T00:00:00Z"}))
        people = {"owner": owner, "landlord": landlord, "tenant": tenant, "third": third}
        for person in people.values():
            ok(op.patch("/customers", params={"id": f"eq.{person['customer']['id']}"}, json={"status": "onboarding"}),
               204)
        generated = ok(op.post("/rpc/generate_customer_tariffs",
                               json={"esco_code": code, "period_start": str(QUARTER)}))
        assert generated["customer_tariffs_added"] == 4
        # Pat's discount changes mid-month; Tina moves out mid-month (Larry pays the rest)
        ok(op.post("/rpc/set_customer_discount", json={"customer_id": third["customer"]["id"], "discount": 35,
                                                       "effective_from": TARIFF_CHANGE.isoformat()}))
        moved = ok(op.post("/rpc/move_out", json={"account_id": tenant["accounts"][0]["id"],
                                                  "move_out": MOVE_OUT.isoformat(), "final_reads": {"SINGLE": 812.4}}))
        assert moved[0]["move_out_reads"]["SINGLE"]["read"] == 812.4
    return {"esco": esco_id, "code": code, "homes": homes, "meters": meters, "registers": registers,
            "people": people}


def rate(cap: Decimal, discount: Decimal) -> Decimal:
    return (cap * (1 - discount / 100)).quantize(Decimal("0.00001"), ROUND_HALF_UP)


def uk_days(start: datetime, end: datetime) -> Decimal:
    """Days between two instants, part-days as the share of that UK day's length."""
    def position(t: datetime) -> Decimal:
        local = t.astimezone(UK)
        day_start = datetime(local.year, local.month, local.day, tzinfo=UK)
        next_start = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=UK)
        fraction = Decimal((t - day_start).total_seconds()) / Decimal((next_start - day_start).total_seconds())
        return Decimal(local.date().toordinal()) + fraction
    return (position(end) - position(start)).quantize(Decimal("0.00001"), ROUND_HALF_UP)


def expected_statements(op, community) -> dict:
    """Per (account, customer): lines and totals, computed here from the API's raw data."""
    half_hours = defaultdict(dict)
    for register in (r for regs in community["registers"].values() for r in regs.values()):
        rows, page = [], None
        while page is None or len(page) == 1000:  # PostgREST serves at most db-max-rows (1000) rows a request
            page = ok(op.get("/register_interval_hh", params={
                "register_id": f"eq.{register}", "select": "timestamp,import_kwh,source", "order": "timestamp",
                "timestamp": [f"gte.{MONTH_FROM.isoformat()}", f"lt.{MONTH_TO.isoformat()}"],
                "limit": 1000, "offset": len(rows)}))
            rows += page
        for row in rows:
            half_hours[register][datetime.fromisoformat(row["timestamp"])] = (Decimal(str(row["import_kwh"])),
                                                                              row["source"])
    p = community["people"]
    d20, d35 = Decimal(20), Decimal(35)
    # (account, customer) -> [(from, to, discount)]
    periods = {
        (p["owner"]["accounts"][0]["id"], p["owner"]["customer"]["id"]): [(MONTH_FROM, MONTH_TO, d20)],
        (p["tenant"]["accounts"][0]["id"], p["tenant"]["customer"]["id"]): [(MONTH_FROM, MOVE_OUT, d20)],
        (p["landlord"]["accounts"][0]["id"], p["landlord"]["customer"]["id"]): [(MOVE_OUT, MONTH_TO, d20)],
        (p["third"]["accounts"][0]["id"], p["third"]["customer"]["id"]): [(MONTH_FROM, TARIFF_CHANGE, d20),
                                                                         (TARIFF_CHANGE, MONTH_TO, d35)],
    }
    meter_of = {p[k]["accounts"][0]["id"]: p[k]["accounts"][0]["meter_id"] for k in p}
    statements = {}
    for (account, customer), spans in periods.items():
        lines = []
        for start, end, discount in spans:
            for element, register in sorted(community["registers"][meter_of[account]].items()):
                inside = [v for t, v in half_hours[register].items() if start <= t < end]
                quantity = sum((v[0] for v in inside), Decimal(0))
                lines.append({"kind": "energy", "element": element, "from": start, "to": end, "quantity": quantity,
                              "rate": rate(CAP_UNIT, discount), "half_hours": len(inside),
                              "estimated": sum(1 for v in inside if v[1] == "reads")})
            lines.append({"kind": "standing_charge", "element": None, "from": start, "to": end,
                          "quantity": uk_days(start, end), "rate": rate(CAP_STANDING, discount)})
        exact = sum((line["quantity"] * line["rate"] / Decimal("1.05") for line in lines), Decimal(0))
        net = exact.quantize(PENNY, ROUND_HALF_UP)
        vat = (net * Decimal("0.05")).quantize(PENNY, ROUND_HALF_UP)
        statements[(account, customer)] = {"lines": lines, "net": net, "vat": vat, "total": net + vat}
    return statements


def test_billing_a_month_matches_an_independent_computation(api, community):
    code = community["code"]
    with api.client("operator", code) as op:
        run = ok(op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)}))[0]
        assert run["status"] == "draft" and run["statements"] == 4
        invoices = ok(op.get("/invoices", params={"run_id": f"eq.{run['id']}"}))
        lines = ok(op.get("/invoice_lines", params={"invoice_id": f"in.({','.join(i['id'] for i in invoices)})",
                                                    "order": "position"}))
        expected = expected_statements(op, community)

    assert {(i["account_id"], i["customer_id"]) for i in invoices} == set(expected)
    for invoice in invoices:
        want = expected[(invoice["account_id"], invoice["customer_id"])]
        mine = [line for line in lines if line["invoice_id"] == invoice["id"]]
        got = sorted((line["kind"], line["element"], datetime.fromisoformat(line["period_from"]),
                      datetime.fromisoformat(line["period_to"]), Decimal(str(line["quantity"])),
                      Decimal(str(line["rate"]))) for line in mine)
        assert got == sorted((w["kind"], w["element"], w["from"], w["to"], w["quantity"], w["rate"])
                             for w in want["lines"]), invoice
        for line in mine:
            if line["kind"] == "energy":
                w = next(x for x in want["lines"] if x["element"] == line["element"]
                         and x["from"] == datetime.fromisoformat(line["period_from"]))
                assert (line["half_hours"], line["estimated_half_hours"]) == (w["half_hours"], w["estimated"])
            exact = Decimal(str(line["quantity"])) * Decimal(str(line["rate"])) / Decimal("1.05")
            assert abs(Decimal(str(line["amount"])) - exact) < PENNY
        assert sum(Decimal(str(line["amount"])) for line in mine) == Decimal(str(invoice["net"]))
        assert (Decimal(str(invoice["net"])), Decimal(str(invoice["vat"])), Decimal(str(invoice["total"]))) == (
            want["net"], want["vat"], want["total"])
    # a 23-hour day (29 March) still counts as one day of standing charge
    owner = next(i for i in invoices if i["customer_id"] == community["people"]["owner"]["customer"]["id"])
    assert Decimal(str(owner["days"])) == 31


def _figures(op, run_id):
    invoices = ok(op.get("/invoices", params={"run_id": f"eq.{run_id}", "order": "account_id,customer_id",
                                              "select": "account_id,customer_id,kwh,days,net,vat,total,details,"
                                                        "invoice_lines(position,kind,quantity,rate,amount_exact,amount)"}))
    return json.dumps(invoices, sort_keys=True)


def test_rerun_is_identical_and_finalising_numbers_gap_free(api, community):
    code = community["code"]
    with api.client("operator", code) as op:
        first = ok(op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)}))[0]
        before = _figures(op, first["id"])
        again = ok(op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)}))[0]
        assert again["id"] == first["id"], "one draft run per month"
        assert _figures(op, again["id"]) == before, "same inputs, same figures"

        final = ok(op.post("/rpc/finalise_billing_run", json={"run_id": first["id"]}))[0]
        assert final["status"] == "final"
        numbers = sorted(i["number"] for i in ok(op.get("/invoices", params={"run_id": f"eq.{first['id']}"})))
        assert numbers == list(range(1, len(numbers) + 1))
        assert ok(op.post("/rpc/finalise_billing_run", json={"run_id": first["id"]}))[0] == final
        # a final statement never changes
        invoice = ok(op.get("/invoices", params={"number": "eq.1"}))[0]
        with api.sql() as conn, pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("UPDATE billing.invoices SET total = total + 1 WHERE id = %s", (invoice["id"],))

        # correct one: a credit note (numbered next) voids it; a new run bills that account again
        note = ok(op.post("/rpc/credit_invoice", json={"invoice_id": invoice["id"], "reason": "meter misread"}))[0]
        assert note["kind"] == "credit_note" and note["number"] == len(numbers) + 1
        assert Decimal(str(note["total"])) == -Decimal(str(invoice["total"]))
        assert ok(op.get("/invoices", params={"id": f"eq.{invoice['id']}"}))[0]["status"] == "void"
        rebill = ok(op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)}))[0]
        assert rebill["id"] != first["id"] and rebill["statements"] == 1
        ok(op.post("/rpc/finalise_billing_run", json={"run_id": rebill["id"]}))
        new = ok(op.get("/invoices", params={"run_id": f"eq.{rebill['id']}"}))[0]
        assert new["corrects"] == invoice["id"] and new["number"] == len(numbers) + 2
        assert new["total"] == invoice["total"]

        # the portal's views over the issued statements
        costs = ok(op.get("/monthly_costs", params={"customer_id": f"eq.{invoice['customer_id']}"}))
        assert len(costs) == 1 and Decimal(str(costs[0]["total"])) == Decimal(str(invoice["total"]))
        assert Decimal(str(costs[0]["at_price_cap"])) > Decimal(str(costs[0]["total"]))


def test_statement_pdf_and_what_a_customer_sees(api, community, tmp_path):
    code, people = community["code"], community["people"]
    with api.client("operator", code) as op:
        run = ok(op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)}))[0]
        if run["status"] == "draft":
            ok(op.post("/rpc/finalise_billing_run", json={"run_id": run["id"]}))
    with api.sql() as conn:
        render_pending(conn)
    owner_id = people["owner"]["customer"]["id"]
    with api.client("customer", code, customer=owner_id) as me:
        assert [c["id"] for c in ok(me.get("/customers"))] == [owner_id]
        assert [a["id"] for a in ok(me.get("/accounts"))] == [people["owner"]["accounts"][0]["id"]]
        assert [p["id"] for p in ok(me.get("/properties"))] == [community["homes"][0]]
        assert [m["id"] for m in ok(me.get("/meter_registry"))] == [community["meters"][0]]
        mine = ok(me.get("/invoices", params={"kind": "eq.statement", "status": "eq.final"}))
        assert mine and {i["customer_id"] for i in mine} == {owner_id}
        assert {c["customer_id"] for c in ok(me.get("/monthly_costs"))} == {owner_id}
        assert {u["customer_id"] for u in ok(me.get("/monthly_usage"))} == {owner_id}
        statement = mine[0]
        response = me.get("/rpc/statement_pdf", params={"number": statement["number"]},
                          headers={"Accept": "application/pdf"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/pdf")
        pdf = response.content
        others = ok(api.client("operator", code).get("/invoices", params={"customer_id": f"neq.{owner_id}"}))
        refused = me.get("/rpc/statement_pdf", params={"number": others[0]["number"]},
                         headers={"Accept": "application/pdf"})
        assert refused.status_code == 400 and "no statement number" in refused.json()["message"]

    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf)
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())  # words, whatever the line breaks
    for figure in (statement["reference"], "Olive Owner", statement["details"]["account_number"],
                   f"£{Decimal(str(statement['total'])):,.2f}", f"£{Decimal(str(statement['net'])):,.2f}",
                   f"£{Decimal(str(statement['vat'])):,.2f}", "VAT at 5%", "Energy Ombudsman", "Estimated",
                   "Your consumption over 12 months", "Standing charge", "01 Mar 2026"):
        assert figure in text, f"{figure!r} not in the PDF text"
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(path), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    chart_green = 0
    for page in pages:
        colours = Image.open(BytesIO(page.read_bytes())).convert("RGB").getcolors(1 << 22) or []
        chart_green += sum(n for n, colour in colours if colour == (0x2E, 0x7D, 0x32))
    assert chart_green > 50, "the month's bar of the 12-month chart is not drawn"


def test_flows_statement_pdf_cli(api, community, tmp_path):
    import sys
    from pathlib import Path

    with api.sql() as conn:
        render_pending(conn)
        number = conn.execute("SELECT min(number) FROM billing.invoices WHERE esco = %s", (community["esco"],)
                              ).fetchone()[0]
    out = tmp_path / "s.pdf"
    result = subprocess.run([str(Path(sys.executable).parent / "flows"), "statement", "pdf", str(number),
                             "--esco", community["code"], "-o", str(out), "--database-url", api.db_url],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"%PDF-")
    missing = subprocess.run([str(Path(sys.executable).parent / "flows"), "statement", "pdf", "999999",
                              "--esco", community["code"], "-o", str(out), "--database-url", api.db_url],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no statement number 999999" in missing.stderr


def counts(api, esco):
    with api.sql() as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM billing.billing_runs WHERE esco = %(e)s),"
            " (SELECT count(*) FROM billing.invoices WHERE esco = %(e)s),"
            " (SELECT count(*) FROM billing.customer_accounts WHERE esco = %(e)s),"
            " (SELECT count(*) FROM billing.customer_tariffs WHERE esco = %(e)s),"
            " (SELECT count(*) FROM billing.customers WHERE esco = %(e)s)", {"e": esco}).fetchone()


def refused(api, response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    text = f"{body['message']} {body['details']} {body['hint']}"
    for word in words:
        assert word in text, f"{word!r} not in {body}"


def test_bad_input_is_refused_and_nothing_is_written(api, community):
    code, people, esco = community["code"], community["people"], community["esco"]
    with api.client("operator", code) as op:
        before = counts(api, esco)
        this_month = datetime.now(UTC).date().replace(day=1)
        refused(api, op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(this_month)}),
                400, "has not ended yet")
        refused(api, op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": "2026-03-15"}),
                400, "first day of a month")
        refused(api, op.post("/rpc/move_in", json={"account_id": people["owner"]["accounts"][0]["id"],
                                                   "customer_id": people["tenant"]["customer"]["id"],
                                                   "move_in": "2026-02-01T00:00:00Z"}),
                400, "already has an occupier", "Olive Owner", "move_out")  # 23P01: PostgREST says 400
        refused(api, op.post("/rpc/set_customer_discount", json={"customer_id": people["third"]["customer"]["id"],
                                                                 "discount": -5,
                                                                 "effective_from": "2026-02-01T00:00:00Z"}),
                400, "discount", "-5")
        refused(api, op.post("/rpc/generate_customer_tariffs", json={"esco_code": code, "period_start": "2026-04-01",
                                                                     "discount": -1}),
                400, "discount")
        refused(api, op.post("/microgrid_tariffs", json={"period_start": "2026-07-01", "region": REGION,
                                                         "discount": -3}), 400, "microgrid_tariffs_discount_range")
        refused(api, op.post("/rpc/move_out", json={"account_id": people["owner"]["accounts"][0]["id"],
                                                    "move_out": "2026-03-18T14:10:00Z"}), 400, "half hour")
        assert counts(api, esco) == before

        # an account whose payer has no tariff: the whole run is refused, naming the account
        newcomer = ok(op.post("/rpc/onboard_customer", json={
            "property": community["homes"][1], "fullname": "Nina Newcomer", "role": "occupier",
            "move_in": "2026-03-25T00:00:00Z"}))
        before = counts(api, esco)
        response = op.post("/rpc/create_billing_run", json={"esco_code": code, "period_start": str(MONTH)})
        refused(api, response, 400, "no tariff in force", newcomer["accounts"][0]["account_number"], "Nina Newcomer",
                "generate_customer_tariffs")
        assert counts(api, esco) == before


def simple_community(api, homes: int) -> tuple[str, str]:
    """An ESCO of single-element homes, each with an owner-occupier and the first quarter's tariff."""
    esco_id, code = api.new_esco("Simple Energy")
    with api.sql() as conn:
        site = f.add_site(conn, esco_id, "K", "K")
        f.add_price_cap(conn, REGION, QUARTER, CAP_UNIT, CAP_STANDING)
        f.add_microgrid_tariff(conn, esco_id, QUARTER, REGION)
        customers = []
        for i in range(homes):
            prop = f.add_property(conn, site, f"K-{i}")
            head = f.add_service_head(conn, esco_id, f"KH{i}")
            f.link_property_head(conn, prop, head)
            meter = f.add_meter(conn, esco_id, hardware="B1.w", elements=["SINGLE"],
                                registers_from="2026-01-01T00:00:00Z")
            f.link_head_meter(conn, head, meter.id)
            customers.append(f.onboard_customer(conn, prop, f"Customer {i}", move_in="2026-01-01T00:00:00Z").customer)
        f.set_customer_status(conn, customers, "onboarding")
        f.generate_customer_tariffs(conn, code, QUARTER)
    return esco_id, code


def test_a_killed_run_started_again_makes_one_statement_per_account(api):
    """The run is one transaction: cancelled halfway it leaves nothing; run again, one statement each."""
    esco_id, code = simple_community(api, 40)
    with psycopg.connect(api.db_url) as killed:
        killed.execute("SET statement_timeout = '5ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            killed.execute("SELECT api.create_billing_run(%s, %s)", (code, MONTH))
    with api.sql() as conn:
        assert conn.execute("SELECT count(*) FROM billing.invoices WHERE esco = %s", (esco_id,)).fetchone()[0] == 0
        conn.execute("SELECT api.create_billing_run(%s, %s)", (code, MONTH))
        per_account = conn.execute("SELECT count(*), count(DISTINCT account_id) FROM billing.invoices WHERE esco = %s",
                                   (esco_id,)).fetchone()
    assert per_account == (40, 40)


def test_concurrent_finalisations_number_gap_free(api):
    """Three months of one ESCO finalised at the same moment: numbers 1..n, none twice, none skipped."""
    esco_id, code = simple_community(api, 15)
    with api.sql() as conn:
        runs = [conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (code, month)).fetchone()[0]
                for month in ("2026-01-01", "2026-02-01", "2026-03-01")]
    barrier = threading.Barrier(len(runs))

    def finalise(run_id):
        with psycopg.connect(api.db_url) as conn:
            barrier.wait()
            conn.execute("SELECT api.finalise_billing_run(%s)", (run_id,))

    threads = [threading.Thread(target=finalise, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with api.sql() as conn:
        numbers = [r[0] for r in conn.execute("SELECT number FROM billing.invoices WHERE esco = %s ORDER BY number",
                                              (esco_id,))]
    assert numbers == list(range(1, 46))

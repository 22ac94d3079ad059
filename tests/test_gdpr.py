"""Personal data through the real database and PostgREST: the registry covers every column that looks like
personal data, the export holds every registered table, erasure is refused while something is unsettled
(and waits for a billing run that could freeze the name into a statement), erasure leaves no name, email
or phone anywhere in the database while every figure stays, consent decides what a customer's own token
sees, and the `flows gdpr` commands."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from flows import factories as f
from flows.billing.documents import render_pending
from flows.payments.test_processor import event_object, new_id
from tests.support.api import start_postgrest
from tests.support.billing_factory import last_month_start
from tests.support.factory import sample_esco

FLOWS = str(Path(sys.executable).parent / "flows")


def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def month_start(conn) -> str:
    """This UK month's first midnight (a move-out there is billed up to by last month's statement)."""
    return conn.execute("SELECT flows.uk_day_start(flows.uk_month(flows.uk_day(now())))").fetchone()[0].isoformat()


def registry(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT relation FROM gdpr.personal_data")}


def mentions(conn, pattern: str) -> dict[str, int]:
    """Rows of every table of the database whose text matches ``pattern`` (case-insensitive), per table."""
    tables = [r[0] for r in conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')")]
    found = {t: conn.execute(f"SELECT count(*) FROM {t} AS t WHERE t::text ~* %s", (pattern,)).fetchone()[0]
             for t in tables}
    return {t: n for t, n in found.items() if n}


def settle_money(conn, customer: str) -> list[dict]:
    """What an operator settles before erasing a customer who moved out: a payment not yet submitted cancelled,
    their top-ups still waiting or failed cancelled (a gift's or credit's funding reversed; a payment's money
    stays their credit), and that credit paid back (cash and bank at once). Returns the events the processor
    sends when its refunds are paid (the erasure waits for them)."""
    for (payment,) in conn.execute("SELECT id FROM billing.payments WHERE customer_id = %s AND status = 'pending'",
                                   (customer,)).fetchall():
        conn.execute("SELECT api.cancel_payment(%s, 'moved out')", (payment,))
    for (topup,) in conn.execute("SELECT id FROM billing.topups WHERE customer_id = %s"
                                 " AND status NOT IN ('completed', 'cancelled')", (customer,)).fetchall():
        conn.execute("SELECT api.cancel_topup(%s, 'moved out')", (topup,))
    events = []
    for payment, left, provider, reference in conn.execute(
            "SELECT p.id, p.amount - p.refunded_amount, p.provider, p.provider_reference FROM billing.payments p"
            " WHERE p.customer_id = %s AND p.status = 'succeeded' AND p.amount > p.refunded_amount AND NOT EXISTS"
            " (SELECT FROM billing.topups t WHERE t.payment_id = p.id AND t.status = 'completed')",
            (customer,)).fetchall():
        refund = f.refund_payment(conn, str(payment), "moved out", left)
        if provider == "stripe":
            events.append(event_object("refund.updated", {
                "id": new_id("re"), "object": "refund", "amount": int(left * 100), "currency": "gbp",
                "payment_intent": reference, "status": "succeeded", "metadata": {"refund_id": refund}}))
    return events


def charge_event(conn, payment: str, kind: str = "charge.succeeded", **billing_details) -> dict:
    """The processor's charge of a card payment, with what it knows of the payer (Stripe's billing details)."""
    reference = conn.execute("SELECT provider_reference FROM billing.payments WHERE id = %s", (payment,)).fetchone()[0]
    return event_object(kind, {
        "id": new_id("ch"), "object": "charge", "amount": 2000, "currency": "gbp", "payment_intent": reference,
        "status": "succeeded", "paid": True, "receipt_url": f"https://pay.example/receipts/{reference}",
        "receipt_email": billing_details.get("email"),
        "billing_details": {**billing_details, "address": {"line1": "1 Street", "postal_code": "AB1 2CD"}}})


# -- the registry ----------------------------------------------------------------------------

def test_every_column_that_looks_like_personal_data_is_registered(db):
    problems = db.execute("SELECT relation, column_name, problem FROM gdpr.unregistered_personal_columns").fetchall()
    assert not problems, "register these in sql/schema/gdpr/personal_data.sql:\n" + "\n".join(map(str, problems))


def test_a_new_table_with_personal_data_fails_until_its_one_line_is_added(db):
    """What the notifications work will do: an outbox with recipients joins the export and the erasure by the
    one line docs/operations.md gives."""
    a = sample_esco(db)
    db.execute("SET ROLE flows_owner")
    db.execute("CREATE TABLE billing.tap_outbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), customer_id uuid,"
               " recipient text NOT NULL, phone text, body text NOT NULL, created_at timestamptz DEFAULT now())")
    db.execute("RESET ROLE")
    unregistered = db.execute("SELECT relation, column_name FROM gdpr.unregistered_personal_columns").fetchall()
    assert set(unregistered) == {("billing.tap_outbox", "recipient"), ("billing.tap_outbox", "phone")}

    db.execute("""CALL gdpr.register('billing.tap_outbox', subject => '{row}.customer_id = {customer}',
                  personal => '{"recipient": "redact", "phone": "null", "body": "scrub"}',
                  retain_until => '{row}.created_at + interval ''1 year''', retention => 'Messages sent: a year.')""")
    assert not db.execute("SELECT * FROM gdpr.unregistered_personal_columns").fetchall()
    db.execute("INSERT INTO billing.tap_outbox (customer_id, recipient, phone, body) VALUES (%s, %s, %s, %s)",
               (a.prospect, "x", "+44 1", "n/a"))  # the erased prospect's: nothing of theirs to find
    olive = a.billing.customer
    db.execute("INSERT INTO billing.tap_outbox (customer_id, recipient, phone, body) VALUES (%s, %s, %s, %s)",
               (olive, f"olive@{a.code.lower()}.example", "+44 7700 900321",
                "Dear Olive Owner, your statement is ready."))
    assert db.execute("SELECT api.customer_data_export(%s) -> 'tables' -> 'billing.tap_outbox' -> 0 ->> 'body'",
                      (olive,)).fetchone()[0] == "Dear Olive Owner, your statement is ready."
    db.execute("SELECT api.move_out(%s, %s)", (a.billing.account, month_start(db)))
    for event in settle_money(db, olive):
        assert f.apply_processor_event(db, event) == "applied"
    pseudonym = db.execute("SELECT api.erase_customer(%s) ->> 'pseudonym'", (olive,)).fetchone()[0]
    assert db.execute("SELECT recipient, phone, body FROM billing.tap_outbox WHERE customer_id = %s",
                      (olive,)).fetchone() == ("[erased]", None, f"Dear {pseudonym}, your statement is ready.")


# -- export -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def community(api):
    """A sample ESCO in the shared API database: Olive (owner-occupier, half-hourly consent), a landlord
    and his tenant Tina (no consent), statements, a rendered PDF, an erased prospect."""
    with api.sql() as conn:
        return sample_esco(conn)


def test_export_holds_every_registered_table(api, community):
    a = community
    with api.client("operator", a.code) as operator:
        document = ok(operator.post("/rpc/customer_data_export", json={"customer_id": a.billing.customer}))
    with api.sql() as conn:
        relations = registry(conn)
        half_hours = conn.execute(
            "SELECT count(*) FROM flows.register_interval_hh h JOIN billing.accounts a ON a.id = %s"
            " JOIN flows.meter_registers r ON r.meter_id = a.meter_id AND r.register_id = h.register_id"
            " WHERE h.timestamp >= (SELECT min(start_time) FROM billing.customer_accounts WHERE customer_id = %s)",
            (a.billing.account, a.billing.customer)).fetchone()[0]
        bank_topups = {str(t) for (t,) in conn.execute(
            "SELECT id FROM billing.topups WHERE payment_id = ANY(%s::uuid[])", (list(a.bank.customer_ids()),))}
    assert set(document["tables"]) == relations and len(relations) >= 32
    tables = document["tables"]
    ids = {name: {row.get("id") for row in rows} for name, rows in tables.items()}
    assert ids["billing.customers"] == {a.billing.customer}
    assert "invite_token" not in tables["billing.customers"][0], "the export omits credentials"
    assert ids["billing.customer_accounts"] == set(a.billing.links)
    assert a.billing.contract in ids["billing.contracts"] and len(ids["billing.contracts"]) == 2
    assert "solar" in {c["type"] for c in tables["billing.contracts"]}, "and her solar contract (money_factory)"
    assert ids["billing.customer_tariffs"] == set(a.billing.tariffs)
    assert ids["billing.invoices"] == {a.billing.invoice}
    assert ids["billing.invoice_lines"] == set(a.billing.lines)
    assert [d["invoice_id"] for d in tables["billing.invoice_documents"]] == [a.billing.invoice]
    assert "content" not in tables["billing.invoice_documents"][0], "documents' metadata, not the PDF"
    assert ids["flows.properties"] == {a.properties[0]} and ids["flows.meter_registry"] == {a.meters[0]}
    assert ids["gdpr.consents"] == {a.consent} and document["consents"] == {"half_hourly_data": True}
    money = a.money
    bank = a.bank
    assert ids["billing.payments"] == set(money.payments.values()) | bank.customer_ids(), "hers, bank ones too"
    # her bank transfer, the rule's decision and its match; the processor payout of her card payment: its link
    # only (the payout entry is the processor's, for every payment it pays); not the charges, nor mum's gift
    assert ids["billing.bank_transactions"] == {bank.transactions["transfer"]}
    assert tables["billing.bank_transactions"][0]["counterparty"] == "Olive Owner"
    assert [(d["transaction_id"], d["rule"]) for d in tables["billing.bank_decisions"]] == \
        [(bank.transactions["transfer"], "account_reference")]
    assert [m["payment_id"] for m in tables["billing.bank_matches"]] == [bank.payment]
    assert [(p["payout_id"], p["payment_id"]) for p in tables["billing.processor_payout_payments"]] == \
        [(bank.payout, money.payments["card"])]
    assert ids["billing.refunds"] == {money.refund}
    assert ids["billing.payment_methods"] == {money.payment_method} and ids["billing.wallets"] == {money.wallet}
    assert ids["billing.topups"] == set(money.topups.values()) | bank_topups and len(bank_topups) == 3
    assert ids["billing.gifts"] == set(money.gifts.values())
    assert ids["billing.solar_credits"] == {money.solar["credit.olive"]}
    assert {e["payment_id"] for e in tables["billing.processor_events"]} == {money.payments["card"],
                                                                             money.payments["declined"],
                                                                             bank.payments["card"]}
    assert {e["payload"]["data"]["object"]["object"] for e in tables["billing.processor_events"]} == {"payment_intent"}
    journals = {j["id"]: j for j in tables["billing.journals"]}
    assert {j["kind"] for j in journals.values()} >= {"payment_received", "refund", "topup_funded",
                                                      "statement_charge"}
    assert {e["journal_id"] for e in tables["billing.journal_entries"]} == set(journals)
    assert a.billing.invoice in {j["invoice_id"] for j in journals.values()}
    assert a.notifications["low_balance"] in ids["flows.notification_outbox"]
    assert {m["recipient"] for m in tables["flows.notification_outbox"]} == {f"olive@{a.code.lower()}.example"}
    assert [p["channels"] for p in tables["flows.notification_preferences"]] == [["email"]]
    assert len(tables["flows.register_interval_hh"]) == half_hours > 0
    assert {r["register_id"] for r in tables["flows.register_interval_hh"]} == set(a.registers[a.meters[0]])
    assert {e["relation"] for e in document["audit_log"]} >= {"billing.customers", "billing.customer_accounts",
                                                               "billing.contracts", "billing.customer_tariffs"}
    assert all(e["esco"] == a.esco for e in document["audit_log"])
    assert {r["relation"] for r in document["retention"]} == relations | {"flows.audit_log"}


def test_customers_export_their_own_data_only(api, community):
    a = community
    tina = a.billing.others["tenant.customer"]
    with api.client("customer", a.code, customer=a.billing.customer) as olive:
        mine = olive.get("/rpc/customer_data_export", params={"customer_id": a.billing.customer})
        theirs = olive.get("/rpc/customer_data_export", params={"customer_id": tina})
    assert ok(mine)["customer_id"] == a.billing.customer
    assert len(ok(mine)["audit_log"]) > 0, "a customer's export has the audit entries they cannot read themselves"
    assert theirs.status_code == 404 and theirs.json()["code"] == "PT404"
    other_id, other_code = api.new_esco("Another GDPR ESCO")
    with api.client("operator", other_code) as stranger, api.client("analyst", a.code) as analyst:
        assert stranger.post("/rpc/customer_data_export", json={"customer_id": tina}).status_code == 404
        assert stranger.post("/rpc/erase_customer", json={"customer_id": tina}).status_code == 404
        assert analyst.post("/rpc/customer_data_export", json={"customer_id": tina}).status_code == 403


# -- consent ------------------------------------------------------------------------------------

def test_consent_decides_whether_a_customer_sees_their_half_hours(api, community):
    a = community
    tina = a.billing.others["tenant.customer"]
    single = a.meters[1]
    with api.sql() as conn:
        expected = conn.execute(
            "SELECT count(*) FROM flows.register_interval_hh h JOIN flows.meter_registers r USING (register_id)"
            " WHERE r.meter_id = %s", (single,)).fetchone()[0]
    assert expected > 0
    with api.client("customer", a.code, customer=tina) as http:
        for relation in ("register_interval_hh", "property_interval_hh", "register_import"):
            assert ok(http.get(f"/{relation}")) == [], f"{relation} without consent"
        days = ok(http.get("/register_interval_daily"))
        assert days and ok(http.get("/register_interval_monthly")), "daily and monthly figures stay"

        given = ok(http.post("/rpc/record_consent", json={"given": True}))
        assert [(c["customer_id"], c["given"], c["source"], c["in_force"]) for c in given] == \
            [(tina, True, "customer", True)]
        assert len(ok(http.get("/register_interval_hh"))) == expected
        assert ok(http.get("/property_interval_hh")) and ok(http.get("/register_import"))
        assert ok(http.get("/register_interval_daily")) == days

        ok(http.post("/rpc/record_consent", json={"given": False}))
        assert ok(http.get("/register_interval_hh")) == []
        assert [c["given"] for c in ok(http.get("/consents", params={"order": "recorded_at"}))] == [True, False]
        refused = http.post("/rpc/record_consent", json={"given": True, "customer_id": a.billing.customer})
        assert refused.status_code == 404, "a customer records only their own consent"
        retention = ok(http.get("/data_retention", params={"relation": "eq.billing.invoices"}))
    assert [(r["customer_id"], r["rows"]) for r in retention] == [(tina, 1)]
    assert retention[0]["retain_until"] > "2031-01-01" and "HMRC" in retention[0]["retention"]
    with api.client("operator", a.code) as operator:
        recorded = ok(operator.post("/rpc/record_consent", json={"given": True, "customer_id": tina}))
    assert recorded[0]["source"] == "operator"
    with api.client("customer", a.code, customer=tina) as http:
        assert len(ok(http.get("/register_interval_hh"))) == expected


# -- erasure: refusals --------------------------------------------------------------------------

def test_erasure_is_refused_while_supplied_or_a_statement_is_open(api):
    with api.sql() as conn:
        a = sample_esco(conn)
        start = month_start(conn)
    tina, tina_account = a.billing.others["tenant.customer"], a.billing.others["tenant.account"]
    with api.client("operator", a.code) as operator:
        refused = operator.post("/rpc/erase_customer", json={"customer_id": a.billing.customer})
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["code"] == "PT409" and "they are still the occupier" in body["message"]
        # and money in flight: a card payment due in three days, top-ups waiting for the meter, money not yet on it
        assert {r["check_name"] for r in json.loads(body["details"])} == \
            {"still_supplied", "payment_in_flight", "topup_unfinished", "credit_held"}
        assert "their stripe payment of £25.00 is pending" in body["message"]
        assert "their payment top-up of £12.50 to meter" in body["message"]
        assert "rpc/move_out" in body["hint"] and "rpc/cancel_payment" in body["hint"]

        # Tina moves out; her last statement is corrected, and the month billed again: a draft is open
        ok(operator.post("/rpc/move_out", json={"account_id": tina_account, "move_out": start}))
        tina_invoice = ok(operator.get("/invoices", params={"customer_id": f"eq.{tina}", "select": "id"}))[0]["id"]
        ok(operator.post("/rpc/credit_invoice", json={"invoice_id": tina_invoice, "reason": "meter misread"}))
        run = ok(operator.post("/rpc/create_billing_run", json={"esco_code": a.code,
                                                                 "period_start": str(last_month_start_of(api))}))
        refused = operator.post("/rpc/erase_customer", json={"customer_id": tina})
        assert refused.status_code == 409 and "is open in the draft billing run" in refused.json()["message"]
        assert "rpc/finalise_billing_run" in refused.json()["hint"]

        ok(operator.post("/rpc/finalise_billing_run", json={"run_id": run[0]["id"]}))
        refused = operator.post("/rpc/erase_customer", json={"customer_id": tina})
        assert refused.status_code == 409 and {r["check_name"] for r in json.loads(refused.json()["details"])} == \
            {"topup_unfinished", "credit_held"}, "her bank transfer's top-up still waits for the meter"
        assert "£30.00 of theirs is held on account" in refused.json()["message"]
        with api.sql() as conn:
            assert settle_money(conn, tina) == [], "a bank transfer is paid back at once"
        erased = ok(operator.post("/rpc/erase_customer", json={"customer_id": tina, "reference": "DSR-42"}))
    assert erased["pseudonym"] == f"Erased customer {tina[:8]}" and erased["reference"] == "DSR-42"


def test_erasure_is_refused_while_money_is_owed_and_not_once_it_is_paid(api):
    """Larry owns an empty home; its meter becomes a credit meter (prepayment off) and last month is billed
    again: that statement is his to pay. By the ledger he owes it until payments cover it; then money is no
    reason to refuse (he still owns the home)."""
    with api.sql() as conn:
        a = sample_esco(conn)
        larry, spare = a.billing.others["landlord.customer"], a.billing.others["spare.account"]
        conn.execute("UPDATE flows.meter_registry SET prepay_enabled = false WHERE id = %s", (a.meters[2],))
        prepaid = conn.execute("SELECT id FROM billing.invoices WHERE account_id = %s AND status = 'final'",
                               (spare,)).fetchone()[0]
    with api.client("operator", a.code) as operator:
        ok(operator.post("/rpc/credit_invoice", json={"invoice_id": str(prepaid), "reason": "a credit meter"}))
        run = ok(operator.post("/rpc/create_billing_run", json={"esco_code": a.code,
                                                                 "period_start": str(last_month_start_of(api))}))
        ok(operator.post("/rpc/finalise_billing_run", json={"run_id": run[0]["id"]}))
        with api.sql() as conn:
            owed, number = conn.execute(
                "SELECT i.total, a.account_number FROM billing.invoices i"
                " JOIN billing.accounts a ON a.id = i.account_id"
                " WHERE i.account_id = %s AND i.status = 'final' AND i.kind = 'statement' AND NOT i.prepay",
                (spare,)).fetchone()
        assert owed > 0
        refused = operator.post("/rpc/erase_customer", json={"customer_id": larry})
        assert refused.status_code == 409
        reasons = {r["check_name"]: r["reason"] for r in json.loads(refused.json()["details"])}
        assert reasons["money_owed"].startswith(f"account {number} owes £{owed} ")
        assert "rpc/record_payment" in refused.json()["hint"]

        half = (owed / 2).quantize(owed)
        ok(operator.post("/rpc/record_payment", json={"account_id": spare, "amount": str(half),
                                                        "provider": "bank_transfer", "reference": f"LL-{a.code}"}))
        reasons = {r["check_name"]: r["reason"] for r in json.loads(
            operator.post("/rpc/erase_customer", json={"customer_id": larry}).json()["details"])}
        assert reasons["money_owed"].startswith(f"account {number} owes £{owed - half} ")

        ok(operator.post("/rpc/record_payment", json={"account_id": spare, "amount": str(owed - half),
                                                        "provider": "cash", "reference": f"LL2-{a.code}"}))
        refused = operator.post("/rpc/erase_customer", json={"customer_id": larry})
    assert refused.status_code == 409
    assert {r["check_name"] for r in json.loads(refused.json()["details"])} == {"still_supplied"}, \
        "a credit-meter customer who paid their statements owes nothing"


def last_month_start_of(api):
    with api.sql() as conn:
        return last_month_start(conn.execute("SELECT flows.uk_day(now())").fetchone()[0])


def test_erasure_waits_for_a_billing_run_that_could_freeze_the_name(api):
    """A run computing a month holds that month's lock (api.create_billing_run): the erasure takes the same
    lock for every month of the customer's supply, so it waits for the run, then sees its draft and refuses.
    (Waiting on the customer's row would not do: a run still computing has read the name but not yet
    locked the row, and would freeze the old name into its statement once the erasure commits.)"""
    with api.sql() as conn:
        a = sample_esco(conn)
        tina = a.billing.others["tenant.customer"]
        conn.execute("SELECT api.move_out(%s, %s)", (a.billing.others["tenant.account"], month_start(conn)))
        conn.execute("SELECT api.credit_invoice(id, 'meter misread') FROM billing.invoices WHERE customer_id = %s",
                     (tina,))
        month = last_month_start(conn.execute("SELECT flows.uk_day(now())").fetchone()[0])
    outcome = {}

    def erase():
        with psycopg.connect(api.db_url, autocommit=True) as eraser:
            outcome["pid"] = eraser.info.backend_pid
            try:
                eraser.execute("SELECT api.erase_customer(%s)", (tina,))
                outcome["erased"] = True
            except psycopg.Error as error:
                outcome["refused"] = error.diag.message_primary

    with psycopg.connect(api.db_url) as run:
        run.execute("SELECT api.create_billing_run(%s, %s)", (a.code, month))  # not committed yet
        eraser = threading.Thread(target=erase)
        eraser.start()
        waiting = None
        for _ in range(100):
            time.sleep(0.05)
            if "pid" in outcome:
                waiting = run.execute("SELECT locktype FROM pg_locks WHERE pid = %s AND NOT granted",
                                      (outcome["pid"],)).fetchone()
                if waiting:
                    break
        assert waiting == ("advisory",), "the erasure must wait for the billing run's own lock"
        run.commit()
    eraser.join(30)
    assert "is open in the draft billing run" in outcome.get("refused", ""), outcome


# -- erasure: effects ---------------------------------------------------------------------------

def money_figures(conn) -> tuple:
    """Every money figure and processor reference, and the bank's entries (their dedup keys and statuses),
    decisions and matches: erasure changes none of them."""
    return conn.execute(
        "SELECT (SELECT (count(*), sum(amount), sum(refunded_amount), string_agg(provider_reference, ','"
        "                ORDER BY id)) FROM billing.payments),"
        "       (SELECT (count(*), sum(amount)) FROM billing.refunds),"
        "       (SELECT (count(*), sum(amount), string_agg(status, ',' ORDER BY id)) FROM billing.topups),"
        "       (SELECT (count(*), string_agg(memo, ',' ORDER BY id)) FROM billing.journals),"
        "       (SELECT (count(*), sum(amount), sum(abs(amount))) FROM billing.journal_entries),"
        "       (SELECT (count(*), sum(amount), string_agg(dedup_key || status, ',' ORDER BY id))"
        "          FROM billing.bank_transactions),"
        "       (SELECT (count(*), string_agg(action || coalesce(rule, ''), ',' ORDER BY id))"
        "          FROM billing.bank_decisions),"
        "       (SELECT (count(*), sum(amount), string_agg(payment_id::text, ',' ORDER BY id))"
        "          FROM billing.bank_matches)"
        ).fetchone()


@pytest.fixture
def own_api(pg_server, template_db, tmp_path):
    """A database of its own (a scan of every table must find only this ESCO's people) with PostgREST."""
    name = f"flows_gdpr_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            a = sample_esco(conn)
        with start_postgrest(pg_server, name, tmp_path) as running:
            yield running, a


def pdf_text(content: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=content, capture_output=True, check=True).stdout.decode()


def test_erasure_leaves_no_name_email_or_phone_and_keeps_every_figure(own_api):
    api, a = own_api
    olive = a.billing.customer
    email = f"olive@{a.code.lower()}.example"
    identities = f"Olive Owner|{email}|7700 900555"
    with api.sql() as conn:  # what the processor knows of her, on her card payment
        assert f.apply_processor_event(conn, charge_event(conn, a.money.payments["card"], name="Olive Owner",
                                                          email=email, phone="+44 7700 900555")) == "applied"
    with api.client("operator", a.code, sub="alice@esco.example") as operator:
        # her card's label, and a cash payment whose description names her (it becomes its top-up's notes)
        ok(operator.patch("/payment_methods", params={"id": f"eq.{a.money.payment_method}"},
                          json={"label": "Olive Owner's Visa"}), 204)
        ok(operator.post("/rpc/record_payment", json={"account_id": a.billing.account, "amount": "8.00",
                                                        "reference": f"office-{a.code}",
                                                        "description": "paid by Olive Owner at the office"}))
        # a new phone number, and a correction whose reason names her: more copies to find
        ok(operator.patch("/customers", params={"id": f"eq.{olive}"}, json={"phone": "+44 7700 900555"}), 204)
        ok(operator.post("/rpc/credit_invoice", json={"invoice_id": a.billing.invoice,
                                                      "reason": "Olive Owner reported a misread"}))
        with api.sql() as conn:
            month = last_month_start(conn.execute("SELECT flows.uk_day(now())").fetchone()[0])
            start = month_start(conn)
        run = ok(operator.post("/rpc/create_billing_run", json={"esco_code": a.code, "period_start": str(month)}))
        ok(operator.post("/rpc/finalise_billing_run", json={"run_id": run[0]["id"]}))
        ok(operator.post("/rpc/move_out", json={"account_id": a.billing.account, "move_out": start}))
        with api.sql() as conn:
            refunds = settle_money(conn, olive)
            # the bank's next statement: a bank transfer paid back to her, and her mother's transfer for her meter,
            # which names no account (queued)
            today = conn.execute("SELECT flows.uk_day(now())").fetchone()[0]
            owed_back = f.statement([(today, "-8.00", "refund", "OLIVE OWNER"),
                                     (today, "3.00", "for Olive Owner's meter", "M OWNER")], "138.50", today, today)
            f.import_statement(conn, "main", [owed_back], esco_code=a.code)
            paid_back, queued = (str(conn.execute("SELECT id FROM billing.bank_transactions WHERE bank_account_id"
                                                  " = %s AND amount = %s", (a.bank.account, amount)).fetchone()[0])
                                 for amount in ("-8.00", "3.00"))
        refused = operator.post("/rpc/erase_customer", json={"customer_id": olive})
        assert refused.status_code == 409 and "a refund of £20.00 of their payment" in refused.json()["message"]
        assert f"a bank credit of £3.00 booked {today} that names them waits in the bank queue (entry {queued})" in \
            refused.json()["message"]
        assert {r["check_name"] for r in json.loads(refused.json()["details"])} == \
            {"refund_in_flight", "credit_held", "bank_entry_queued"}
        ok(operator.post("/rpc/dismiss_bank_transaction",
                         json={"transaction_id": paid_back, "reason": "her bank transfers paid back to Olive Owner"}))
        ok(operator.post("/rpc/dismiss_bank_transaction",
                         json={"transaction_id": queued, "reason": "sent back to the payer: Olive Owner moved out"}))
        with api.sql() as conn:
            # her two card payments: the money factory's and the bank factory's 8.20 not yet paid out
            assert [f.apply_processor_event(conn, event) for event in refunds] == ["applied", "applied"]
            render_pending(conn)
            totals = conn.execute("SELECT count(*), sum(net), sum(vat), sum(total), sum(kwh),"
                                  " sum(closing_balance) FROM billing.invoices").fetchone()
            lines = conn.execute("SELECT count(*), sum(amount), sum(quantity) FROM billing.invoice_lines").fetchone()
            money = money_figures(conn)
            before = mentions(conn, identities)
            documents = conn.execute("SELECT count(*) FROM billing.invoice_documents d JOIN billing.invoices i"
                                     " ON i.id = d.invoice_id WHERE i.customer_id = %s", (olive,)).fetchone()[0]
        assert {"billing.customers", "billing.invoices", "flows.audit_log", "billing.payments", "billing.topups",
                "billing.payment_methods", "billing.processor_events", "flows.notification_outbox",
                "billing.bank_transactions", "billing.bank_decisions"} <= set(before)
        assert not {"billing.journals", "billing.journal_entries"} & set(before), "the ledger refers to ids only"

        erased = ok(operator.post("/rpc/erase_customer", json={"customer_id": olive, "reference": "DSR-9"}))
        again = ok(operator.post("/rpc/erase_customer", json={"customer_id": olive}))
        exported = operator.post("/rpc/customer_data_export", json={"customer_id": olive}).text
        erasures = ok(operator.get("/audit_log", params={"relation": "eq.gdpr.erasures", "order": "id",
                                                         "after->>customer_id": f"eq.{olive}"}))

    pseudonym = f"Erased customer {olive[:8]}"
    assert documents == 3, "the statement, its credit note and the statement that replaced it"
    assert erased["pseudonym"] == pseudonym and erased["changed"]["billing.invoice_documents"]["deleted"] == 3
    assert erased["changed"]["flows.notification_outbox"]["deleted"] >= 1, "her low balance email"
    assert erased["changed"]["billing.processor_events"]["updated"] == 1, "the charge, which named her"
    assert erased["changed"]["billing.bank_transactions"]["updated"] == 3, "her transfer, the refund, mum's credit"
    assert erased["changed"]["billing.bank_decisions"]["updated"] == 2, "the two reasons that named her"
    assert "billing.journals" not in erased["changed"] and \
        {"billing.journals", "billing.payments"} <= {k["relation"] for k in erased["kept"]}
    assert again["already_erased"] is True and again["pseudonym"] == pseudonym
    with api.sql() as conn:
        assert mentions(conn, identities) == {}, "a name, email or phone of hers is still in the database"
        assert conn.execute("SELECT count(*), sum(net), sum(vat), sum(total), sum(kwh), sum(closing_balance)"
                            " FROM billing.invoices").fetchone() == totals
        assert conn.execute("SELECT count(*), sum(amount), sum(quantity) FROM billing.invoice_lines"
                            ).fetchone() == lines
        assert money_figures(conn) == money, "payments, refunds, top-ups, the ledger and the bank unchanged"
        assert conn.execute("SELECT array_agg(DISTINCT counterparty) FROM billing.bank_transactions WHERE id IN"
                            " (%s, %s, %s)", (a.bank.transactions["transfer"], paid_back, queued)).fetchone()[0] == \
            [pseudonym], "the payer's name as the bank gives it (M OWNER too) is the pseudonym"
        # the same entries in another bank format: each found again by its dedup key, nothing of hers comes back
        again_imported = f.import_statement(conn, "main", [owed_back], fmt="mt940", esco_code=a.code)
        assert again_imported["statements"][0]["added"] == 0 and mentions(conn, identities) == {}
        assert conn.execute("SELECT count(*) FROM flows.notification_outbox WHERE customer_id = %s",
                            (olive,)).fetchone()[0] == 0, "messages to her go at erasure"
        card = a.money.payments["card"]
        assert conn.execute("SELECT payload -> 'data' -> 'object' -> 'billing_details' FROM billing.processor_events"
                            " WHERE payment_id = %s AND type = 'charge.succeeded'", (card,)).fetchone()[0] is None
        # the processor speaks of her payment again after the erasure: stored erased as well
        assert f.apply_processor_event(conn, charge_event(conn, card, "charge.updated", name="Olive Owner",
                                                          email=email)) == "applied"
        late = conn.execute("SELECT payload -> 'data' -> 'object' FROM billing.processor_events"
                            " WHERE payment_id = %s AND type = 'charge.updated'", (card,)).fetchone()[0]
        assert late["billing_details"] is None and late["receipt_email"] is None and late["amount"] == 2000
        assert conn.execute("SELECT array_agg(DISTINCT reason) FROM billing.invoices WHERE customer_id = %s"
                            " AND reason IS NOT NULL", (olive,)).fetchone()[0] == [f"{pseudonym} reported a misread"]
        assert conn.execute("SELECT count(*) FROM flows.audit_log WHERE relation = 'billing.customers'"
                            " AND row_key ->> 'id' = %s", (olive,)).fetchone()[0] >= 3, "the audit rows stay"
        rendered = render_pending(conn)
        statements = [bytes(r[0]) for r in conn.execute(
            "SELECT d.content FROM billing.invoice_documents d JOIN billing.invoices i ON i.id = d.invoice_id"
            " WHERE i.customer_id = %s", (olive,))]
    assert len(rendered) == 3 and len(statements) == 3, "her statements and credit note, rendered again"
    for text in map(pdf_text, statements):
        assert pseudonym in text and "Olive" not in text and email not in text
    assert pseudonym in exported and "Olive" not in exported and email not in exported
    assert [(e["operation"], e["actor_sub"], e["after"]["reference"]) for e in erasures][:1] == \
        [("INSERT", "alice@esco.example", "DSR-9")]
    assert erasures[0]["after"]["requested_by"] == "alice@esco.example"


# -- the command line -----------------------------------------------------------------------------

def flows(*args):
    return subprocess.run([FLOWS, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "200"})


def test_flows_gdpr_commands(db, db_url, tmp_path):
    a = sample_esco(db)
    olive = a.billing.customer
    out = tmp_path / "olive.json"
    done = flows("gdpr", "export", olive, "-o", str(out), "--database-url", db_url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["file"] == str(out) and summary["tables"]["billing.invoices"] == 1
    assert set(json.loads(out.read_text())["tables"]) == registry(db)

    refused = flows("gdpr", "erase", olive, "--yes", "--database-url", db_url)
    assert refused.returncode == 4 and "cannot be erased yet:" in refused.stderr
    assert "they are still the occupier" in refused.stderr
    as_json = json.loads(flows("gdpr", "erase", olive, "--json", "--database-url", db_url).stdout)
    assert as_json["erased"] is False and "still_supplied" in {r["check_name"] for r in as_json["refusals"]}

    newcomer = f.add_customer(db, a.esco, "Nina Newcomer", "nina@example.com")
    dry = flows("gdpr", "erase", newcomer, "--database-url", db_url)
    assert dry.returncode == 0 and "would erase" in dry.stdout and "nothing changed" in dry.stdout, dry.stdout
    assert db.execute("SELECT fullname FROM billing.customers WHERE id = %s", (newcomer,)).fetchone()[0] == \
        "Nina Newcomer"
    done = json.loads(flows("gdpr", "erase", newcomer, "--yes", "--reference", "DSR-3", "--json",
                            "--database-url", db_url).stdout)
    assert done["erased"] is True and done["pseudonym"] == f"Erased customer {newcomer[:8]}"
    assert db.execute("SELECT fullname, email FROM billing.customers WHERE id = %s", (newcomer,)).fetchone() == \
        (f"Erased customer {newcomer[:8]}", None)

    withdrawn = json.loads(flows("gdpr", "consent", olive, "--withdraw", "--json", "--database-url", db_url).stdout)
    assert withdrawn["given"] is False and withdrawn["source"] == "operator"
    kept = json.loads(flows("gdpr", "retention", olive, "--json", "--database-url", db_url).stdout)
    assert {k["relation"] for k in kept} == registry(db) | {"flows.audit_log"}
    unknown = flows("gdpr", "export", str(uuid.uuid4()), "--database-url", db_url)
    assert unknown.returncode == 1 and "no customer" in unknown.stderr

"""The demo community (`flows up`): its shape, a year of history, and creating it again changes nothing."""

import itertools
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.stack import demo

TABLES = ["escos", "sites", "properties", "feeder_registry", "service_head_registry", "properties_service_head",
          "service_head_meter", "circuits", "circuit_register", "meter_registry", "meter_registers", "meter_shadows",
          "register_interval_monthly"]


MONEY = ["payments", "topups", "journals", "bank_accounts", "bank_statements", "bank_transactions", "bank_decisions",
         "bank_matches", "processor_payouts", "processor_payout_payments"]


def rows(db) -> dict[str, list]:
    return {**{t: db.execute(f"SELECT to_jsonb(t)::text FROM flows.{t} AS t ORDER BY 1").fetchall() for t in TABLES},
            **{t: db.execute(f"SELECT to_jsonb(t)::text FROM billing.{t} AS t ORDER BY 1").fetchall() for t in MONEY}}


def check_bank(db) -> None:
    """Four weekly statements imported and reconciled: customers' transfers (one reference mangled) made
    payments, the processor's payout settled the three card payments with its fees shown, the bank's fee
    dismissed, and one transfer nobody can place waits in the queue, saying why."""
    statements = db.execute("SELECT period_start, period_end, balance_check, entries_added FROM api.bank_statements"
                            " ORDER BY period_start").fetchall()
    assert len(statements) == 4 and all(s[2] == "totals" for s in statements)
    assert all(b[0] == a[1] + timedelta(days=1) for a, b in itertools.pairwise(statements)), "weeks end to end"
    decided = db.execute("SELECT t.bank_reference, t.status, d.rule, d.action FROM api.bank_transactions t"
                         " LEFT JOIN billing.bank_decisions d ON d.transaction_id = t.id").fetchall()
    transfers = [r for r in decided if r[2] == "account_reference"]
    assert len(transfers) == 8 and any(r[0].startswith("ref: acc-0001 ") for r in transfers), decided
    assert db.execute("SELECT count(*) FROM billing.payments WHERE origin = 'bank_statement'"
                      " AND provider = 'bank_transfer' AND status = 'succeeded'").fetchone()[0] == 8
    payout = db.execute("SELECT gross, fees, amount, payments FROM api.processor_payouts").fetchall()
    assert payout == [(Decimal("60.00"), Decimal("1.51"), Decimal("58.49"), 3)]
    by_operator = sorted((r[3], r[0]) for r in decided if r[3] is not None and r[2] is None)
    assert by_operator == [("dismissed", "MONTHLY ACCOUNT FEE"), ("matched", "STRIPE PAYMENTS UK po_1DemoMeadows0001")]
    queue = db.execute("SELECT amount, counterparty, queue_reason FROM api.bank_queue").fetchall()
    assert queue == [(Decimal("12.00"), "J SMITH", "no account number in the reference 'ELECTRIC'")]
    assert {r[1] for r in decided} == {"matched", "dismissed", "unmatched"}


def test_demo_community_is_created_once(db, db_url):
    started = time.monotonic()
    demo.create(db_url, 41000)
    took = time.monotonic() - started
    first = rows(db)
    plan = demo.fleet_plan()
    assert {t: len(r) for t, r in first.items() if t in TABLES} == {
        "escos": 1, "sites": 1, "properties": 20, "feeder_registry": 2, "service_head_registry": 20,
        "properties_service_head": 20, "service_head_meter": 20, "circuits": 2, "meter_registry": 20,
        "meter_shadows": 20, "meter_registers": 35, "circuit_register": 35,
        "register_interval_monthly": 35 * 13}
    meters = db.execute("SELECT serial, hardware, emop_port, prepay_enabled, installation_status"
                        " FROM flows.meter_registry ORDER BY serial").fetchall()
    assert [(m[0], m[1], m[2]) for m in meters] == sorted(
        (m["serial"], m["hardware"], 41000 + i) for i, m in enumerate(plan))
    assert {(m[1], m[3]) for m in meters} == {("C1.w", True), ("B1.w", True), ("P1.ax", False)}
    heat = db.execute("SELECT count(*) FROM flows.circuit_register cr JOIN flows.circuits c ON c.id = cr.circuit"
                      " JOIN flows.meter_registers r ON r.register_id = cr.register"
                      " WHERE c.type = 'heat' AND r.element = 'B'").fetchone()[0]
    assert heat == 15, "the B element of every twin-element meter measures the heat pumps"
    check_bank(db)

    again = time.monotonic()
    demo.create(db_url, 41000)
    assert rows(db) == first, "creating the demo again changed something"
    assert time.monotonic() - again < took / 3, "the history is recorded once"
    demo.create(db_url, 42000)  # the emulator moved to other ports: only the addresses follow
    moved = db.execute("SELECT min(emop_port), max(emop_port) FROM flows.meter_registry").fetchone()
    assert moved == (42000, 42019)


def test_demo_community_has_a_year_of_history(db, db_url):
    """Installed a year ago: registers and circuits from then, and every half hour since recorded from the
    meters' own logs, so the aggregates show a year at once."""
    demo.create(db_url, 41000)
    installed, registers = db.execute("SELECT min(start_time), count(DISTINCT start_time) FROM flows.meter_registers"
                                      ).fetchone()
    assert registers == 1 and datetime.now(UTC) - installed > timedelta(days=364)
    assert db.execute("SELECT count(*) FROM flows.circuit_register WHERE start_time <> %s",
                      (installed,)).fetchone()[0] == 0
    per_register = db.execute("SELECT register_id, count(*), min(timestamp), max(timestamp),"
                              " bool_and(source = 'profile_log'), bool_and(import_kwh >= 0)"
                              " FROM flows.register_interval_hh GROUP BY register_id").fetchall()
    assert len(per_register) == 35
    for _, count, first, last, from_the_log, plausible in per_register:
        assert first == installed and datetime.now(UTC) - last < timedelta(hours=1), (first, last)
        assert count == (last - first) / timedelta(minutes=30) + 1, "no half hour missing"
        assert from_the_log and plausible
    months = db.execute("SELECT month, import_kwh / extract(day FROM month + interval '1 month' - interval '1 day')"
                        " FROM api.site_interval_monthly ORDER BY month").fetchall()
    assert len(months) >= 12
    whole = [per_day for _, per_day in months[1:-1]]  # the first and the last month are partial
    assert max(whole) < Decimal('1.25') * min(whole), f"a year of steady use, month after month: {months}"
    three_phase = db.execute("SELECT sum(h.import_kwh) FROM flows.register_interval_hh h JOIN flows.meter_registers r"
                             " USING (register_id) JOIN flows.meter_registry m ON m.id = r.meter_id"
                             " WHERE m.hardware = 'P1.ax'").fetchone()[0]
    assert three_phase > 0, "the three-phase meter's interval profile too"


def test_demo_community_has_one_reconciliation_exception_of_each_kind(db, db_url):
    """The reconciliation queue (demo_reconciliation.py): one exception of each kind waiting, each on its home, and
    the shadow ledger explaining every other day of the homes whose story was told."""
    demo.create(db_url, 41000)
    esco = db.execute("SELECT id FROM flows.escos WHERE code = 'DEMO'").fetchone()[0]
    today = datetime.now(UTC).date()
    found = db.execute("SELECT x.kind, p.plot, x.amount FROM billing.reconciliation_exceptions(%s, %s, %s) x"
                       " JOIN billing.accounts a ON a.id = x.account_id JOIN flows.properties p ON p.id = a.property"
                       " ORDER BY x.kind", (esco, today - timedelta(days=30), today)).fetchall()
    assert [(kind, plot) for kind, plot, _ in found] == [
        ("credit_without_topup", "DM-05"), ("emergency_credit_taken", "DM-14"), ("payment_without_topup", "DM-17"),
        ("topup_without_credit", "DM-14"), ("unexplained_deduction", "DM-12")], found
    amounts = [amount for _, _, amount in found]
    assert abs(amounts[0] - 5) < Decimal("0.01") and amounts[1:4] == [15, 20, 15], found
    assert abs(amounts[4] - Decimal("1.5")) < Decimal("0.01"), found
    days = db.execute("SELECT count(*) FILTER (WHERE complete), count(*) FILTER (WHERE complete AND finding IS NULL)"
                      " FROM billing.shadow_ledger(%s, %s, %s)", (esco, today - timedelta(days=2), today)).fetchone()
    assert days[0] >= 6 and days[1] == days[0] - 1, days

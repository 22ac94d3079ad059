"""Three-way reconciliation and the shadow ledger end to end, on emulated meters (acceptance of issue 11): four
days of history on a simulated clock that ends now, recorded as the worker records it (tests/support/
meter_recording.py), a tariff change at a midnight in the middle, and five things that happen to money on
five meters; each is found as its own typed exception, and nothing else is."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.emulator import MeterConfig
from flows.vending.emulated import meter_key
from tests.support.meter_recording import MeterRecorder
from tests.support.payments import paying_homes
from tests.worker.conftest import new_esco, register, serials, wait_for

T1 = {"standing_charge": "0.5", "unit_rate_element_a": "0.2", "unit_rate_element_b": "0.1",
      "prepayment_emergency_credit": "15", "prepayment_ecredit_availability": "10",
      "prepayment_debt_recovery_rate": "0.25"}
T2 = {"standing_charge": "0.6", "unit_rate": Decimal("0.3"), "unit_rate_b": Decimal("0.1")}
DAYS = 4
EVERY = timedelta(hours=3, minutes=7)  # observations fall anywhere in a half hour


def uk_midnight_after(moment: datetime, days: int) -> datetime:
    return datetime.combine(moment.date() + timedelta(days=days), datetime.min.time(), UTC)  # GMT in winter


async def test_each_money_problem_is_its_own_exception_and_nothing_else_is(stack, fleet_of, running_worker):
    now = datetime.now(UTC)
    assert now.month in (11, 12, 1, 2), "the scenario's UK midnights are written for GMT (winter) dates"
    esco, code = new_esco(stack)
    paid, failed, keypad, emergency, faulty, quiet = serials(6, 801)
    balances = {paid: "20", failed: "20", keypad: "20", emergency: "10.5", faulty: "20", quiet: "20"}
    # the customer who takes the emergency credit uses little, so that on day 2 their balance is below the
    # threshold (10: the standing charge alone sees to it) but not yet gone, whatever hour the test starts
    # (at full load, two evening peaks in the first 45 hours emptied it first)
    loads = {emergency: 0.3}
    fleet = await fleet_of(*(MeterConfig(serial=s, hardware="C1.w", balance=Decimal(b), tariff=dict(T1),
                                         clock_drift_ppm=0.0, load_scale=loads.get(s, 1.0))
                             for s, b in balances.items()),
                           time_factor=1, start=now - timedelta(days=DAYS))
    ids = register(stack, fleet, esco)
    with stack.sql() as conn:
        homes = {home.serial: home for home in paying_homes(conn, esco, ids, site_code="REC")}
        conn.commit()
        conn.autocommit = True
        recorder = MeterRecorder(conn, fleet, ids)
        start = await recorder.observe()
        change = uk_midnight_after(start, 2)

        # day 1: the ESCO's new tariff is sent to every meter, active from midnight two days on
        await recorder.run(uk_midnight_after(start, 1) + timedelta(hours=10), EVERY)
        for serial in balances:
            meter = fleet[serial]
            client = recorder.client.meter(serial, host=meter.host, port=meter.port)
            await client.tariffs_future_write(from_ts=change, emergency_credit=Decimal("15"),
                                              ecredit_availability=Decimal("10"), debt_recovery_rate=Decimal("0.25"),
                                              standing_charge=Decimal(T2["standing_charge"]),
                                              unit_rate=T2["unit_rate"], unit_rate_b=T2["unit_rate_b"])
        # day 2: a token typed on the keypad; the customer with little left takes the emergency credit
        await recorder.run(uk_midnight_after(start, 2) + timedelta(hours=9, minutes=41), EVERY)
        fleet.clock.advance(timedelta(minutes=4))  # (not in the second of a read: events are logged to the second)
        fleet[keypad].model.type_token(Decimal("5"))
        await recorder.run(uk_midnight_after(start, 2) + timedelta(hours=14, minutes=3), EVERY)
        fleet.clock.advance(timedelta(minutes=4))
        assert fleet[emergency].model.take_emergency_credit(), "the balance is below the threshold by now"
        # day 3: the faulty meter loses 1.50 for no reason the tariff explains
        await recorder.run(uk_midnight_after(start, 3) + timedelta(hours=11, minutes=13), EVERY)
        fleet.clock.advance(timedelta(minutes=4))
        fleet[faulty].model.inject_deduction(Decimal("1.5"))
        # on to now: simulated time meets the wall clock (and keeps its pace)
        await recorder.run(datetime.now(UTC), EVERY)

        # two cash payments taken three hours ago; one meter no longer knows the vendor's key and refuses its token
        fleet[failed].model.token_key = meter_key(b"another vendor", failed)
        await running_worker(stack.worker_url)
        with stack.api.client("operator", code) as operator:
            payments = {}
            for serial in (paid, failed):
                response = operator.post("/rpc/record_payment", json={
                    "account_id": homes[serial].account, "amount": 10, "provider": "cash",
                    "reference": f"till {serial}", "received_at": (now - timedelta(hours=3)).isoformat()})
                assert response.status_code == 200, response.text
                payments[response.json()[0]["id"]] = serial

            def settled():
                rows = operator.get("/topups", params={"payment_id": f"in.({','.join(payments)})"}).json()
                done = {payments[row["payment_id"]]: row["status"] for row in rows}
                return len(done) == 2 and "wait" not in "".join(done.values()) and done
            statuses = await wait_for(settled, timeout=60)
        assert statuses == {paid: "completed", failed: "failed_token_push"}, statuses
        await recorder.observe()

        first, last = (start + timedelta(days=1)).date(), recorder.now().date()
        found = conn.execute(
            "SELECT x.kind, m.serial, x.amount, x.reason FROM billing.reconciliation_exceptions(%s, %s, %s) AS x "
            "JOIN flows.meter_registry AS m ON m.id = x.meter_id ORDER BY x.kind", (esco, first, last)).fetchall()
        ledger = conn.execute(
            "SELECT m.serial, l.day, l.complete, l.residual, l.finding FROM billing.shadow_ledger(%s, %s, %s) AS l "
            "JOIN flows.meter_registry AS m ON m.id = l.meter_id ORDER BY 1, 2", (esco, first, last)).fetchall()
        latest = conn.execute("SELECT valid_from, standing_charge FROM billing.meter_tariff_periods "
                              "WHERE meter_id = %s ORDER BY valid_from DESC LIMIT 1", (ids[quiet],)).fetchone()

    print("\n".join(map(str, found + ledger)))
    assert [(kind, serial) for kind, serial, _, _ in found] == [
        ("credit_without_topup", keypad), ("emergency_credit_taken", emergency), ("payment_without_topup", failed),
        ("unexplained_deduction", faulty)], found
    amounts = {kind: amount for kind, _, amount, _ in found}
    assert abs(amounts["credit_without_topup"] - Decimal("5")) < Decimal("0.01"), found
    assert amounts["emergency_credit_taken"] == Decimal("15") and amounts["payment_without_topup"] == Decimal("10")
    assert abs(amounts["unexplained_deduction"] - Decimal("1.5")) < Decimal("0.01"), found
    assert "rejected the token" in dict((k, r) for k, _, _, r in found)["payment_without_topup"]
    assert latest == (change, Decimal("0.6")), "the new tariff is active from its midnight"
    judged = [row for row in ledger if row[2]]
    assert len({row[1] for row in judged}) >= DAYS - 1, "every whole day's half hours were recorded"
    assert all(abs(row[3]) <= Decimal("0.01") for row in judged if row[0] != faulty), \
        [row for row in judged if abs(row[3]) > Decimal("0.01")]

"""Meter operations end to end: request over HTTP (real PostgREST), a worker
claims and runs them against emulated meters, results land in the database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.emulator import MeterConfig
from tests.worker.conftest import new_esco, register, serials, wait_for


async def command(http, command_id):
    rows = (await http.get("/meter_commands", params={"id": f"eq.{command_id}"})).json()
    return rows[0]


async def finished(http, command_id):
    row = await command(http, command_id)
    return row if row["status"] in ("done", "failed") else None


async def test_send_token_credits_once_and_shows_balances(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s, balance=Decimal("5")) for s in serials(1, 1)))
    ids = register(stack, fleet, esco)
    meter = fleet.meters[0]
    await running_worker(stack.worker_url)
    async with stack.api.async_client("operator", code) as http:
        response = await http.post("/rpc/send_token", json={"meter_id": ids[meter.serial], "amount": 12.5,
                                                              "idempotency_key": "order-77"})
        assert response.status_code == 200, response.text
        requested = response.json()[0]
        again = (await http.post("/rpc/send_token", json={"meter_id": ids[meter.serial], "amount": 12.5,
                                                          "idempotency_key": "order-77"})).json()[0]
        assert again["id"] == requested["id"], "the same idempotency key is the same command"
        done = await wait_for(lambda: finished(http, requested["id"]))
    assert done["status"] == "done", done
    result = done["result"]
    assert Decimal(result["balance_after"]) - Decimal(result["balance_before"]) == Decimal("12.50")
    assert result["transactions_after"] == result["transactions_before"] + 1
    assert meter.model.transaction_count == 1 and len(meter.model.used_sequences) == 1, "credited exactly once"
    assert meter.model.balance == Decimal(result["balance_after"])
    with stack.sql() as conn:
        shadow = conn.execute("SELECT balance, health FROM flows.meter_shadows WHERE id = %s",
                              (ids[meter.serial],)).fetchone()
    assert shadow == (Decimal(result["balance_after"]), "healthy")


async def test_tariff_rollout_to_a_whole_esco(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    hardware = ["C1.w", "C1.w", "B1.w", "C1.w"]
    fleet = await fleet_of(*(MeterConfig(serial=s, hardware=h) for s, h in zip(serials(4, 11), hardware, strict=True)))
    register(stack, fleet, esco)
    await running_worker(stack.worker_url)
    activation = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0)
    tariff = {"standing_charge": "0.6512", "unit_rate_element_a": "0.24567", "unit_rate_element_b": "0.19",
              "prepayment_emergency_credit": "10", "prepayment_ecredit_availability": "5",
              "prepayment_debt_recovery_rate": "0.3", "activation_datetime": activation.isoformat()}
    async with stack.api.async_client("operator", code) as http:
        response = await http.post("/rpc/set_future_tariff", json={"tariff": tariff, "whole_esco": True})
        assert response.status_code == 200, response.text
        rollout = response.json()[0]["batch_id"]

        async def confirmed():
            rows = (await http.get("/tariff_rollouts", params={"rollout_id": f"eq.{rollout}"})).json()
            return rows[0] if rows and rows[0]["in_progress"] == 0 else None

        summary = await wait_for(confirmed)
    assert summary["summary"] == "4 of 4 confirmed, 0 failed", summary
    for meter in fleet.meters:
        future = meter.model.tariff("future")
        assert future["unit_rate_element_a"] == Decimal("0.24567") and future["activation_datetime"] == activation
    with stack.sql() as conn:
        shadows = conn.execute("SELECT tariffs_future ->> 'standing_charge' FROM flows.meter_shadows s"
                               " JOIN flows.meter_registry m ON m.id = s.id WHERE m.esco = %s", (esco,)).fetchall()
    assert [row[0] for row in shadows] == ["0.6512"] * 4


async def test_sync_fills_shadows_and_history(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 21)[0], hardware="C1.w", csq=17),
                           MeterConfig(serial="EMP1AX2500000022", hardware="P1.ax"))
    ids = register(stack, fleet, esco)
    await running_worker(stack.worker_url)
    async with stack.api.async_client("operator", code) as http:
        requested = (await http.post("/rpc/request_sync", json={})).json()
        assert len(requested) == 2 and set(requested[0]["parameters"]["metrics"]) >= {"reads", "csq", "voltage"}
        done = [await wait_for(lambda c=c: finished(http, c["id"])) for c in requested]
        assert {d["status"] for d in done} == {"done"}, done
        shadows = (await http.get("/meter_shadows", params={
            "select": "id,balance,csq,voltage,voltage_l1,import_a,import_b,health,tariffs_active,"
                      "clock_time_diff_seconds,meter_registry(serial,hardware,firmware_version)"})).json()
    twin = next(s for s in shadows if s["meter_registry"]["serial"] == fleet.meters[0].serial)
    three = next(s for s in shadows if s["meter_registry"]["hardware"] == "P1.ax")
    model = fleet.meters[0].model
    assert Decimal(str(twin["balance"])) == model.balance and twin["health"] == "healthy"
    assert abs(twin["csq"] - 17) <= 3  # the emulated signal wanders around the configured 17
    assert Decimal(str(twin["import_a"])) == model.registers("A").import_active
    assert twin["tariffs_active"]["unit_rate_element_a"] and twin["meter_registry"]["firmware_version"] == "3_02_0"
    assert three["voltage_l1"] and three["import_a"] is not None and three["balance"] is None
    with stack.sql() as conn:
        history = conn.execute("""
            SELECT (SELECT count(*) FROM flows.register_import r JOIN flows.meter_registers g USING (register_id)
                    WHERE g.meter_id = %(m)s),
                   (SELECT count(*) FROM flows.meter_prepay_balance WHERE meter_id = %(m)s),
                   (SELECT count(*) FROM flows.meter_csq WHERE meter_id = %(m)s),
                   (SELECT count(*) FROM flows.meter_event_log WHERE meter_id = %(m)s),
                   (SELECT count(*) FROM flows.meter_metric_runs WHERE meter_id = %(m)s AND last_synced_at IS NOT NULL)
        """, {"m": ids[fleet.meters[0].serial]}).fetchone()
    assert history[0] == 2 and history[1] == 1 and history[2] == 1 and history[3] > 0 and history[4] >= 8


async def test_profile_log_fills_half_hours(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 31)[0], hardware="C1.w", history_days=3))
    ids = register(stack, fleet, esco)
    await running_worker(stack.worker_url)
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with stack.api.async_client("operator", code) as http:
        requested = (await http.post("/rpc/read_profile_log", json={
            "meter_id": ids[fleet.meters[0].serial], "start_time": day.isoformat(),
            "end_time": (day + timedelta(hours=6)).isoformat()})).json()[0]
        done = await wait_for(lambda: finished(http, requested["id"]))
        assert done["status"] == "done", done
        rows = (await http.get("/register_interval_hh", params={
            "select": "timestamp,import_kwh,source,meter_registers(element)", "order": "timestamp",
            "timestamp": f"gte.{day.isoformat()}"})).json()
    assert len(rows) == 2 * 12 and {r["source"] for r in rows} == {"profile_log"}
    assert {r["meter_registers"]["element"] for r in rows} == {"A", "B"}


async def test_faulty_meters_fail_with_the_reason_and_the_worker_goes_on(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    names = serials(5, 41)
    faults = {"refuse": 1.0, "silence": 1.0, "bad_crc": 1.0, "nak": 1.0}
    meters = [MeterConfig(serial=s) for s in names]
    fleet = await fleet_of(*meters)
    for meter, kind in zip(fleet.meters[:len(faults)], faults, strict=True):  # the fifth stays healthy
        meter.faults.set_rate(kind, faults[kind])
    ids = register(stack, fleet, esco)
    await running_worker(stack.worker_url)
    async with stack.api.async_client("operator", code) as http:
        requested = (await http.post("/rpc/request_sync", json={"metrics": ["csq", "prepay_balance"]})).json()
        done = {c["meter_id"]: await wait_for(lambda c=c: finished(http, c["id"]), timeout=30) for c in requested}
        response = await http.get("/meter_shadows", params={"select": "id,health,health_details"})
        shadows = {s["id"]: s for s in response.json()}
    by_serial = {serial: done[ids[serial]] for serial in names}
    reasons = {kind: by_serial[names[i]]["last_error"] for i, kind in enumerate(faults)}
    assert reasons["refuse"].startswith("ConnectionRefused")
    assert reasons["silence"].startswith("ReplyTimeout")
    assert reasons["bad_crc"].startswith("BadCrc")
    assert reasons["nak"].startswith("WorkflowRefused") and "NAK" in reasons["nak"]
    for i, kind in enumerate(faults):
        command = by_serial[names[i]]
        assert command["status"] == "failed"
        assert command["attempts"] == (1 if kind == "nak" else command["max_attempts"]), command
        shadow = shadows[ids[names[i]]]
        assert shadow["health"] == "unhealthy" and command["last_error"] in shadow["health_details"]
    healthy = by_serial[names[4]]
    assert healthy["status"] == "done" and shadows[ids[names[4]]]["health"] == "healthy"

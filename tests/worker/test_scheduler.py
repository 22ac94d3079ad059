"""The scheduler: meter_metrics cadence, no duplicates, passive meters left
alone, gaps repaired from the profile log, tariffs followed past activation."""

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg

from flows import factories
from flows.emulator import MeterConfig
from tests.worker.conftest import new_esco, register, serials, wait_for


def scheduled(conn, meter_ids, kind="sync"):
    return conn.execute("SELECT meter_id, parameters FROM flows.meter_commands WHERE kind = %s"
                        " AND meter_id = ANY(%s) ORDER BY created_at", (kind, meter_ids)).fetchall()


def test_metrics_become_syncs_once_per_period(db):
    esco = factories.add_esco(db, "SCH").id
    active = [factories.add_meter(db, esco, s).id for s in serials(3, 301)]
    passive = factories.add_meter(db, esco, serials(1, 304)[0], mode="passive").id
    db.execute("UPDATE flows.meter_metrics SET enabled = false WHERE name = 'voltage'")
    first = db.execute("SELECT flows.run_scheduler_v1()").fetchone()[0]
    assert first["syncs"] == 3
    rows = scheduled(db, active + [passive])
    assert {str(r[0]) for r in rows} == set(active), "passive meters are never contacted"
    metrics = set(rows[0][1]["metrics"])
    assert "reads" in metrics and "csq" in metrics and "voltage" not in metrics
    assert db.execute("SELECT flows.run_scheduler_v1()").fetchone()[0]["syncs"] == 0, "no duplicates"
    # the syncs ran; an hour later only the hourly metrics are due again
    db.execute("UPDATE flows.meter_commands SET status = 'done', finished_at = now()")
    db.execute("UPDATE flows.meter_metric_runs SET last_requested_at = last_requested_at - interval '61 minutes'")
    assert db.execute("SELECT flows.run_scheduler_v1()").fetchone()[0]["syncs"] == 3
    hourly = {r[1]["metrics"].__repr__() for r in scheduled(db, active)[3:]}
    assert hourly == {repr(["prepay_balance", "reads"])}


def test_concurrent_scheduler_passes_do_not_duplicate(db_url, db):
    esco = factories.add_esco(db, "SCC").id
    ids = [m.id for m in factories.add_meters(db, esco, [factories.MeterSpec(s) for s in serials(20, 311)])]

    def one_pass():
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute("SELECT flows.run_scheduler_v1()").fetchone()[0]

    async def many():
        return await asyncio.gather(*(asyncio.to_thread(one_pass) for _ in range(6)))

    results = asyncio.run(many())
    assert sum((r or {}).get("syncs", 0) for r in results) == 20
    assert len(scheduled(db, ids)) == 20


async def test_gaps_are_filled_from_the_profile_log(stack, fleet_of, running_worker):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 331)[0], hardware="C1.w", history_days=5))
    meter_id = register(stack, fleet, esco)[fleet.meters[0].serial]
    with stack.sql() as conn:
        conn.execute("UPDATE flows.meter_registers SET start_time = now() - interval '3 days' WHERE meter_id = %s",
                     (meter_id,))
        queued = conn.execute("SELECT flows.schedule_profile_log_reads(7)").fetchone()[0]
        command = conn.execute("SELECT id, parameters FROM flows.meter_commands WHERE meter_id = %s"
                               " AND kind = 'read_profile_log'", (meter_id,)).fetchone()
    assert queued >= 1 and command
    await running_worker(stack.worker_url)

    def done():
        with stack.sql() as conn:
            return conn.execute("SELECT status FROM flows.meter_commands WHERE id = %s", (command[0],)).fetchone()[0] \
                in ("done", "failed")

    await wait_for(done, timeout=30)
    with stack.sql() as conn:
        status, error = conn.execute("SELECT status, last_error FROM flows.meter_commands WHERE id = %s",
                                     (command[0],)).fetchone()
        assert status == "done", error
        missing = conn.execute("""
            SELECT sum(m.missing) FROM api.register_interval_hh_missing m
            JOIN flows.meter_registers r USING (register_id)
            WHERE r.meter_id = %s AND m.day < flows.uk_day(now()) AND m.day > flows.uk_day(now()) - 3
        """, (meter_id,)).fetchone()[0]
        assert missing == 0, "the gap days are complete"
        assert conn.execute("SELECT flows.schedule_profile_log_reads(7)").fetchone()[0] == 0, "and not read again"


async def test_tariffs_are_read_after_activation(stack, fleet_of, running_worker):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 341)[0]))
    meter_id = register(stack, fleet, esco)[fleet.meters[0].serial]
    await running_worker(stack.worker_url)
    activation = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    tariff = {"standing_charge": "0.5", "unit_rate_element_a": "0.31", "prepayment_emergency_credit": "10",
              "prepayment_ecredit_availability": "5", "prepayment_debt_recovery_rate": "0.3",
              "activation_datetime": activation.isoformat()}
    with stack.sql() as conn:
        command = factories.set_future_tariff(conn, tariff, [meter_id])[0]

    def status(command_id):
        with stack.sql() as conn:
            return conn.execute("SELECT status FROM flows.meter_commands WHERE id = %s", (command_id,)).fetchone()[0]

    await wait_for(lambda: status(command) == "done")
    await asyncio.sleep(max(0.0, (activation - datetime.now(UTC)).total_seconds()) + 0.5)
    fleet.clock.advance(timedelta(seconds=10))  # the meter's (frozen) clock passes the activation time
    with stack.sql() as conn:
        assert conn.execute("SELECT flows.schedule_tariff_checks()").fetchone()[0] == 1
        check = conn.execute("SELECT id FROM flows.meter_commands WHERE meter_id = %s AND kind = 'sync'",
                             (meter_id,)).fetchone()[0]
    await wait_for(lambda: status(check) == "done")
    with stack.sql() as conn:
        active = conn.execute("SELECT tariffs_active ->> 'unit_rate_element_a' FROM flows.meter_shadows"
                              " WHERE id = %s", (meter_id,)).fetchone()[0]
    assert active == "0.31"

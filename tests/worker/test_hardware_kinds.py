"""Hardware kinds live in one SQL table (flows.hardware_kinds); the EMOP client,
which runs without a database, carries a copy in flows.emop.values. These
tests hold the copy equal to the table, and check that everything agrees on
which meters are three phase."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.emop.client import hardware_name
from flows.emop.values import HARDWARE_KINDS, SINGLE_PHASE_HARDWARE, THREE_PHASE_HARDWARE, TWIN_ELEMENT_HARDWARE
from flows.emulator import MeterConfig
from flows.emulator.config import HARDWARE, HARDWARE_TEXT
from tests.worker.conftest import new_esco, wait_for


def test_python_hardware_kinds_equal_the_table(db):
    rows = db.execute("SELECT model, phases, elements, prepay_capable, serial_prefix, version_texts, description"
                      " FROM flows.hardware_kinds ORDER BY model").fetchall()
    mirrored = sorted((k.model, k.phases, k.elements, k.prepay_capable, k.serial_prefix, list(k.version_texts),
                       k.description) for k in HARDWARE_KINDS.values())
    assert [tuple(r) for r in rows] == mirrored, "update workers/flows/emop/values.py with the migration"


def test_derived_constants_follow_the_kinds(db):
    assert THREE_PHASE_HARDWARE == {m for (m,) in db.execute(
        "SELECT model FROM flows.hardware_kinds WHERE phases = 3")}
    assert TWIN_ELEMENT_HARDWARE == {m for (m,) in db.execute(
        "SELECT model FROM flows.hardware_kinds WHERE elements = 2")}
    assert SINGLE_PHASE_HARDWARE == dict(db.execute(
        "SELECT t, model FROM flows.hardware_kinds, unnest(version_texts) AS t").fetchall())
    # what the emulator says it is reads back as the same model, and it emulates every known model
    assert all(hardware_name(HARDWARE_TEXT[model]) == model for model in HARDWARE_TEXT)
    assert set(HARDWARE) == set(HARDWARE_KINDS) - {"SINGLE_PHASE_UNKNOWN"}
    assert {m for m, kind in HARDWARE.items() if kind == "three"} == THREE_PHASE_HARDWARE


def test_sql_and_worker_agree_on_three_phase(db):
    """is_three_phase (requests) and the claim (what the worker is told) give the same answer for every
    combination of serial and recorded hardware, including a three-phase serial with no hardware yet."""
    esco = db.execute("INSERT INTO flows.escos (code, name) VALUES ('KINDS', 'k') RETURNING id").fetchone()[0]
    cases = {("EMP1AX5000000001", None): True, ("EMP1CX5000000002", None): True, ("EML5000000003", None): False,
             ("EML5000000004", "P1.ax"): True, ("EML5000000005", "C1.w"): False,
             ("EML5000000006", "SINGLE_PHASE_UNKNOWN"): False}
    for port, (serial, hardware) in enumerate(cases, start=9100):
        db.execute("SELECT api.register_meter(serial => %s, hardware => %s, ip_address => '127.0.0.1',"
                   " emop_port => %s, esco => %s)", (serial, hardware, port, esco))
    db.execute("SELECT api.request_sync(NULL, ARRAY['csq'])")
    requested = dict(db.execute("SELECT m.serial, flows.is_three_phase(m) FROM flows.meter_registry m").fetchall())
    claimed = dict(db.execute("SELECT serial, three_phase FROM flows.claim_meter_commands_v1('kinds', 100)").fetchall())
    expected = {serial: three for (serial, _), three in cases.items()}
    assert requested == expected and claimed == expected


async def test_profile_log_of_a_three_phase_meter_is_recorded_as_half_hours(stack, fleet_of, running_worker):
    """A three-phase meter (its serial says so, no hardware recorded yet) keeps no profile log 1: the worker
    reads its interval profile (format 0x14) and records each half hour on its register."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial="EMP1AX2500000061", hardware="P1.ax"))
    meter = fleet.meters[0]
    with stack.sql() as conn:
        meter_id = conn.execute("SELECT api.register_meter(serial => %s, ip_address => %s::inet, emop_port => %s,"
                                " esco => %s) ->> 'id'", (meter.serial, meter.host, meter.port, esco)).fetchone()[0]
        conn.execute("UPDATE flows.meter_registers SET start_time = now() - interval '30 days' WHERE meter_id = %s",
                     (meter_id,))
    await running_worker(stack.worker_url)
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with stack.api.async_client("operator", code) as http:
        response = await http.post("/rpc/read_profile_log", json={
            "meter_id": meter_id, "start_time": day.isoformat(), "end_time": (day + timedelta(hours=5)).isoformat()})
        assert response.status_code == 200, response.text
        command_id = response.json()[0]["id"]

        async def finished():
            rows = (await http.get("/meter_commands", params={"id": f"eq.{command_id}"})).json()
            return rows[0] if rows[0]["status"] in ("done", "failed") else None

        command = await wait_for(finished)
        assert command["status"] == "done" and command["result"]["half_hours"] == 10, command
        rows = (await http.get("/register_interval_hh", params={
            "select": "timestamp,import_kwh,export_kwh,source", "order": "timestamp",
            "timestamp": f"gte.{day.isoformat()}"})).json()
    assert len(rows) == 10 and {r["source"] for r in rows} == {"profile_log"}
    # the meter's own half hours: energy between two of its records, in its three-phase units (Wh x 3 here)
    records = {r[0]: r for r in meter.model.profile_records(int(day.timestamp() - 946684800) // 1800, 11)}
    for row in rows:
        hh = int(datetime.fromisoformat(row["timestamp"]).timestamp() - 946684800) // 1800
        assert Decimal(str(row["import_kwh"])) == Decimal((records[hh + 1][1] - records[hh][1]) * 3) / 1000, row

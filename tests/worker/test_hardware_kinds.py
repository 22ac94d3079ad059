"""Hardware kinds live in one SQL table (flows.hardware_kinds); the EMOP client,
which runs without a database, carries a copy in flows.emop.values. These
tests hold the copy equal to the table, and check that everything agrees on
which meters are three phase."""

from datetime import UTC, datetime, timedelta

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


async def test_profile_log_on_a_three_phase_serial_without_hardware_is_refused_clearly(stack, fleet_of,
                                                                                         running_worker):
    """The worker used to ask such a meter for profile log 1 and fail on its NAK; it refuses up front now."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial="EMP1AX2500000061", hardware="P1.ax"))
    meter = fleet.meters[0]
    with stack.sql() as conn:
        meter_id = conn.execute("SELECT api.register_meter(serial => %s, ip_address => %s::inet, emop_port => %s,"
                                " esco => %s) ->> 'id'", (meter.serial, meter.host, meter.port, esco)).fetchone()[0]
    await running_worker(stack.worker_url)
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with stack.api.async_client("operator", code) as http:
        response = await http.post("/rpc/read_profile_log", json={
            "meter_id": meter_id, "start_time": day.isoformat(), "end_time": (day + timedelta(hours=2)).isoformat()})
        assert response.status_code == 200, response.text
        command_id = response.json()[0]["id"]

        async def failed():
            rows = (await http.get("/meter_commands", params={"id": f"eq.{command_id}"})).json()
            return rows[0] if rows[0]["status"] == "failed" else None

        command = await wait_for(failed)
    assert command["last_error"] == "WorkflowRefused: three-phase meters keep no profile log 1", command
    assert command["attempts"] == 1, "a refusal is final"

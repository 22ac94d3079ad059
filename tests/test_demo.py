"""The demo community (`flows up`): its shape, and creating it again changes nothing."""

from flows.stack import demo

TABLES = ["escos", "sites", "properties", "feeder_registry", "service_head_registry", "properties_service_head",
          "service_head_meter", "circuits", "circuit_register", "meter_registry", "meter_registers", "meter_shadows"]


def rows(db) -> dict[str, list]:
    return {t: db.execute(f"SELECT to_jsonb(t)::text FROM flows.{t} AS t ORDER BY 1").fetchall() for t in TABLES}


def test_demo_community_is_created_once(db, db_url):
    demo.create(db_url, 41000)
    first = rows(db)
    plan = demo.fleet_plan()
    assert {t: len(r) for t, r in first.items()} == {
        "escos": 1, "sites": 1, "properties": 20, "feeder_registry": 2, "service_head_registry": 20,
        "properties_service_head": 20, "service_head_meter": 20, "circuits": 2, "meter_registry": 20,
        "meter_shadows": 20, "meter_registers": 35, "circuit_register": 35}
    meters = db.execute("SELECT serial, hardware, emop_port, prepay_enabled, installation_status"
                        " FROM flows.meter_registry ORDER BY serial").fetchall()
    assert [(m[0], m[1], m[2]) for m in meters] == sorted(
        (m["serial"], m["hardware"], 41000 + i) for i, m in enumerate(plan))
    assert {(m[1], m[3]) for m in meters} == {("C1.w", True), ("B1.w", True), ("P1.ax", False)}
    heat = db.execute("SELECT count(*) FROM flows.circuit_register cr JOIN flows.circuits c ON c.id = cr.circuit"
                      " JOIN flows.meter_registers r ON r.register_id = cr.register"
                      " WHERE c.type = 'heat' AND r.element = 'B'").fetchone()[0]
    assert heat == 15, "the B element of every twin-element meter measures the heat pumps"

    demo.create(db_url, 41000)
    assert rows(db) == first, "creating the demo again changed something"
    demo.create(db_url, 42000)  # the emulator moved to other ports: only the addresses follow
    moved = db.execute("SELECT min(emop_port), max(emop_port) FROM flows.meter_registry").fetchone()
    assert moved == (42000, 42019)

"""The demo community the embedded stack runs (`flows up`; not with --no-demo).

Demo Meadows: one site, 20 homes and a community hall, two feeders, a service
head per property, and 20 emulated Emlite meters (twin-element, single-element
and three-phase) served by `flows emulator` on 127.0.0.1 and registered here
with their ports, plus circuits for homes and heat pumps. The workers sync them
like real meters: within a minute the API shows live balances, reads and health.

The money side (demo_billing.py): customers (owner-occupiers, a landlord
with tenants, the community hall), tariffs for the current and next quarter
(not yet rolled out to the meters), and last month's statements, issued and
rendered.

Creating it twice changes nothing.
"""

import json
from pathlib import Path

import psycopg

from flows.db.connect import connect

ESCO = ("DEMO", "Demo Community Energy")
SITE = ("DM", "Demo Meadows")
FIRST_SERIAL = 2400000001


def fleet_plan() -> list[dict]:
    """The 20 demo meters: serial, hardware, plot, and a starting balance."""
    meters = []
    for i in range(20):
        hardware = "P1.ax" if i == 19 else ("B1.w" if i % 4 == 3 else "C1.w")
        serial = f"EMP1AX{FIRST_SERIAL + i:010d}" if hardware == "P1.ax" else f"EML{FIRST_SERIAL + i:010d}"
        meters.append({"serial": serial, "hardware": hardware, "plot": "Hall" if i == 19 else f"DM-{i + 1:02d}",
                       "balance": str(3 + (i * 7) % 40)})
    return meters


def fleet_meters(base_port: int = 0) -> list[dict]:
    """The demo meters as the emulator's config file describes them."""
    return [
        {"serial": m["serial"], "hardware": m["hardware"], "port": base_port + i, "balance": m["balance"],
         "history_days": 7, **({"solar_kw": 3.0} if i % 5 == 0 and m["hardware"] == "C1.w" else {})}
        for i, m in enumerate(fleet_plan())
    ]


def write_fleet_config(path: Path, base_port: int, state_file: Path) -> Path:
    """The `flows emulator --config` file for the demo fleet (ports base_port, +1, ...)."""
    config = {
        "host": "127.0.0.1",
        "latency_ms": 150,
        "time_factor": 1,
        "state_file": str(state_file),
        "meters": fleet_meters(base_port),
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def create(database_url: str, base_port: int) -> None:
    """The demo ESCO, its topology, and the emulated meters at their ports."""
    with connect(database_url) as conn, conn.transaction():
        esco = _one(conn, "INSERT INTO flows.escos (code, name) VALUES (%s, %s) ON CONFLICT (code)"
                          " DO UPDATE SET name = excluded.name RETURNING id", ESCO)
        site = _one(conn, "INSERT INTO flows.sites (esco, code, name, location, capacity_kw) VALUES (%s, %s, %s,"
                          " 'Somerset', 350) ON CONFLICT (esco, code) DO UPDATE SET name = excluded.name RETURNING id",
                    (esco, *SITE))
        feeders = [_one(conn, "INSERT INTO flows.feeder_registry (esco, name, substation, rating_amps) VALUES"
                              " (%s, %s, 'Meadows substation', 400) ON CONFLICT (esco, name)"
                              " DO UPDATE SET substation = excluded.substation RETURNING id", (esco, name))
                   for name in ("Feeder North", "Feeder South")]
        circuits = {kind: _one(conn, "INSERT INTO flows.circuits (esco, site, type, name) VALUES (%s, %s, %s, %s)"
                                     " ON CONFLICT (site, name) DO UPDATE SET type = excluded.type RETURNING id",
                               (esco, site, kind, name))
                    for kind, name in (("power", "Homes"), ("heat", "Heat pumps"))}
        for i, meter in enumerate(fleet_plan()):
            prop = _one(conn, "INSERT INTO flows.properties (esco, site, plot, type) VALUES (%s, %s, %s, %s)"
                              " ON CONFLICT (site, plot) DO UPDATE SET type = excluded.type RETURNING id",
                        (esco, site, meter["plot"], "commercial" if meter["plot"] == "Hall" else "residential"))
            head = _one(conn, "INSERT INTO flows.service_head_registry (esco, name, phase, fuse_rating, type, feeder)"
                              " VALUES (%s, %s, %s, 100, 'network_owned', %s) ON CONFLICT (esco, name)"
                              " DO UPDATE SET feeder = excluded.feeder RETURNING id",
                        (esco, f"SH-{i + 1:02d}", i % 3 + 1, feeders[i % 2]))
            conn.execute("INSERT INTO flows.properties_service_head (property, service_head, esco)"
                         " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (prop, head, esco))
            meter_id = _meter(conn, meter, esco, site, base_port + i)
            conn.execute("INSERT INTO flows.service_head_meter (service_head, meter, esco)"
                         " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (head, meter_id, esco))
            for element, register in conn.execute(
                    "SELECT element, register_id FROM flows.meter_registers WHERE meter_id = %s", (meter_id,)):
                circuit = circuits["heat" if element == "B" else "power"]
                conn.execute("INSERT INTO flows.circuit_register (circuit, register, esco, start_time)"
                             " SELECT %s, %s, %s, '2024-01-01' WHERE NOT EXISTS (SELECT FROM flows.circuit_register"
                             " WHERE register = %s)", (circuit, register, esco, register))
    from flows.stack import demo_billing  # the money side builds on the meters above

    demo_billing.create(database_url)


def _meter(conn: psycopg.Connection, meter: dict, esco, site, port: int):
    found = conn.execute("SELECT id FROM flows.meter_registry WHERE serial = %s", (meter["serial"],)).fetchone()
    if found:
        conn.execute("UPDATE flows.meter_registry SET ip_address = '127.0.0.1', emop_port = %s WHERE id = %s",
                     (port, found[0]))
        return found[0]
    elements = ["A", "B"] if meter["hardware"] == "C1.w" else ["SINGLE"]
    return _one(conn, "SELECT api.register_meter(serial => %s, name => %s, hardware => %s, ip_address => '127.0.0.1',"
                      " emop_port => %s, esco => %s, site => %s, installation_status => 'commissioned',"
                      " prepay_enabled => %s, registers => %s::jsonb) ->> 'id'",
                (meter["serial"], f"{meter['plot']} supply", meter["hardware"], port, esco, site,
                 meter["hardware"] != "P1.ax",  # three-phase meters are credit meters
                 json.dumps([{"element": e, "start_time": "2024-01-01T00:00:00Z"} for e in elements])))


def _one(conn: psycopg.Connection, sql: str, params):
    return conn.execute(sql, params).fetchone()[0]

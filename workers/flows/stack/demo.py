"""The demo community the embedded stack runs (`flows up`; not with --no-demo).

Demo Meadows: one site, 20 homes and a community hall, two feeders, a service
head per property, and 20 emulated Emlite meters (twin-element, single-element
and three-phase) served by `flows emulator` on 127.0.0.1 and registered here
with their ports, plus circuits for homes and heat pumps. The workers sync them
like real meters: within a minute the API shows live balances, reads and health.

The money side (demo_billing.py): customers (owner-occupiers, a landlord
with tenants, the community hall), tariffs for the current and next quarter,
and last month's statements, issued and rendered; then (demo_payments.py)
payment methods, wallets, a card payment, a Direct Debit, a cash payment, a
gift and last month's solar credit, their top-ups reaching the meters a minute
behind the first syncs, and next quarter's customer tariffs rolled out to the
prepay meters.

Creating it twice changes nothing.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from flows import factories as f
from flows.db.connect import connect
from flows.stack import demo_billing, demo_payments

ESCO = ("DEMO", "Demo Community Energy")
SITE = ("DM", "Demo Meadows")
FIRST_SERIAL = 2400000001
REGISTERS_FROM = "2024-01-01T00:00:00Z"  # before the emulated meters' history

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
        esco = f.add_esco(conn, *ESCO).id
        site = f.add_site(conn, esco, *SITE, location="Somerset", capacity_kw=350)
        feeders = [f.add_feeder(conn, esco, name, substation="Meadows substation", rating_amps=400)
                   for name in ("Feeder North", "Feeder South")]
        circuits = {kind: f.add_circuit(conn, site, name, kind) for kind, name in (("power", "Homes"),
                                                                                 ("heat", "Heat pumps"))}
        plan = fleet_plan()
        meters = f.add_meters(conn, esco, [
            f.MeterSpec(m["serial"], m["hardware"], f"{m['plot']} supply", "127.0.0.1", base_port + i,
                        prepay_enabled=m["hardware"] != "P1.ax")  # three-phase meters are credit meters
            for i, m in enumerate(plan)], site=site, installation_status="commissioned", registers_from=REGISTERS_FROM)
        for i, (planned, meter) in enumerate(zip(plan, meters, strict=True)):
            home = f.add_property(conn, site, planned["plot"],
                                  type="commercial" if planned["plot"] == "Hall" else "residential")
            head = f.add_service_head(conn, esco, f"SH-{i + 1:02d}", phase=i % 3 + 1, fuse_rating=100,
                                      feeder=feeders[i % 2])
            f.link_property_head(conn, home, head)
            f.link_head_meter(conn, head, meter.id)
            for element, register in meter.registers.items():
                f.link_circuit_register(conn, circuits["heat" if element == "B" else "power"], register,
                                        REGISTERS_FROM)
    demo_billing.create(database_url)  # the money side builds on the meters above
    with connect(database_url) as conn, conn.transaction():
        _money_on_meters(conn, esco)


def _money_on_meters(conn: psycopg.Connection, esco: str) -> None:
    """Money flow to watch on the meters (dashboards, audit, the ledger): payments, wallets, a gift and solar
    credit made through the platform (demo_payments.py), their top-ups on the meters; and next quarter's customer
    tariffs rolled out to the prepay meters. Each happens once, however often the demo is created; the meter
    commands wait a minute behind the first syncs, so live readings come first, as they would on a real first
    day."""
    demo_payments.create(conn, esco, ESCO[0], demo_billing.last_month(datetime.now(UTC).date()))
    if not conn.execute("SELECT FROM flows.meter_commands WHERE esco = %s AND kind = 'set_future_tariff'",
                        (esco,)).fetchone():
        conn.execute("SELECT api.roll_out_customer_tariffs(%s, (date_trunc('quarter', now() AT TIME ZONE"
                     " 'Europe/London') + interval '3 months')::date)", (ESCO[0],))
    conn.execute("UPDATE flows.meter_commands SET run_at = now() + interval '1 minute' WHERE esco = %s"
                 " AND status = 'pending' AND kind IN ('send_token', 'set_future_tariff')"
                 " AND requested_by <> 'scheduler'", (esco,))

"""The demo community the embedded stack runs (`flows up`; not with --no-demo).

Demo Meadows: one site, 20 homes and a community hall, two feeders, a service
head per property, and 20 emulated Emlite meters (twin-element, single-element
and three-phase) served by `flows emulator` on 127.0.0.1 and registered here
with their ports, plus circuits for homes and heat pumps. The community was
installed a year ago: its registers measure their circuits from then, and a
year of half hours is recorded from the meters' own logs (``record_history``),
so every aggregate and 12-month figure has data as soon as `flows up` ends.
The workers sync the meters like real ones: within a minute the API shows live
balances, reads and health.

The money side (demo_billing.py): customers (owner-occupiers, a landlord
with tenants, the community hall), tariffs for the current and next quarter,
and last month's statements, issued and rendered; then (demo_payments.py)
payment methods, wallets, a card payment, a Direct Debit, a cash payment, a
gift and last month's solar credit, their top-ups reaching the meters a minute
behind the first syncs, and next quarter's customer tariffs rolled out to the
prepay meters; then (demo_bank.py) four weeks of bank statements imported and
matched: customers' bank transfers, the card processor's payout, the bank's
fee dismissed and one transfer nobody can place waiting in the queue.

Creating it twice changes nothing.
"""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from flows import factories as f
from flows.db.connect import connect
from flows.emulator.clock import SimClock
from flows.emulator.config import MeterConfig
from flows.emulator.model import MeterModel
from flows.stack import demo_bank, demo_billing, demo_payments, demo_reconciliation

ESCO = ("DEMO", "Demo Community Energy")
SITE = ("DM", "Demo Meadows")
FIRST_SERIAL = 2400000001
HISTORY_DAYS = 366  # the emulated meters' profile logs reach back a year, to the installation


def fleet_plan() -> list[dict]:
    """The 20 demo meters: serial, hardware, plot, and a starting balance."""
    meters = []
    for i in range(20):
        hardware = "P1.ax" if i == 19 else ("B1.w" if i % 4 == 3 else "C1.w")
        serial = f"EMP1AX{FIRST_SERIAL + i:010d}" if hardware == "P1.ax" else f"EML{FIRST_SERIAL + i:010d}"
        meters.append({"serial": serial, "hardware": hardware, "plot": "Hall" if i == 19 else f"DM-{i + 1:02d}",
                       "balance": str(3 + (i * 7) % 40)})
    return meters


def meter_configs(base_port: int) -> list[MeterConfig]:
    """The emulated demo meters (ports base_port, +1, ...), as the emulator and the history both see them."""
    # registers that have counted more than a year of the meter's use (so its log has a whole year to tell)
    return [MeterConfig(serial=m["serial"], hardware=m["hardware"], port=base_port + i, balance=m["balance"],
                        history_days=HISTORY_DAYS, solar_kw=3.0 if i % 5 == 0 and m["hardware"] == "C1.w" else 0.0,
                        import_kwh=Decimal(40000 + 997 * i))
            for i, m in enumerate(fleet_plan())]


def write_fleet_config(path: Path, base_port: int, state_file: Path) -> Path:
    """The `flows emulator --config` file for the demo fleet (ports base_port, +1, ...)."""
    config = {
        "host": "127.0.0.1",
        "latency_ms": 150,
        "time_factor": 1,
        "state_file": str(state_file),
        "meters": [
            {"serial": m.serial, "hardware": m.hardware, "port": m.port, "balance": str(m.balance),
             "history_days": m.history_days, "import_kwh": str(m.import_kwh),
             **({"solar_kw": m.solar_kw} if m.solar_kw else {})}
            for m in meter_configs(base_port)
        ],
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def create(database_url: str, base_port: int) -> int:
    """The demo ESCO, its topology, the emulated meters at their ports, and their history; returns the half
    hours of history recorded (none when it was there already)."""
    with connect(database_url) as conn, conn.transaction():
        esco = f.add_esco(conn, *ESCO).id
        installed = installation(conn, esco)
        site = f.add_site(conn, esco, *SITE, location="Somerset", capacity_kw=350)
        feeders = [f.add_feeder(conn, esco, name, substation="Meadows substation", rating_amps=400)
                   for name in ("Feeder North", "Feeder South")]
        circuits = {kind: f.add_circuit(conn, site, name, kind) for kind, name in (("power", "Homes"),
                                                                                 ("heat", "Heat pumps"))}
        plan = fleet_plan()
        meters = f.add_meters(conn, esco, [
            f.MeterSpec(m["serial"], m["hardware"], f"{m['plot']} supply", "127.0.0.1", base_port + i,
                        prepay_enabled=m["hardware"] != "P1.ax")  # three-phase meters are credit meters
            for i, m in enumerate(plan)], site=site, installation_status="commissioned", registers_from=installed)
        for i, (planned, meter) in enumerate(zip(plan, meters, strict=True)):
            home = f.add_property(conn, site, planned["plot"],
                                  type="commercial" if planned["plot"] == "Hall" else "residential")
            head = f.add_service_head(conn, esco, f"SH-{i + 1:02d}", phase=i % 3 + 1, fuse_rating=100,
                                      feeder=feeders[i % 2])
            f.link_property_head(conn, home, head)
            f.link_head_meter(conn, head, meter.id)
            for element, register in meter.registers.items():
                f.link_circuit_register(conn, circuits["heat" if element == "B" else "power"], register, installed)
    recorded = record_history(database_url, meters, meter_configs(base_port), installed)
    demo_billing.create(database_url)  # the money side builds on the meters above and their history
    with connect(database_url) as conn, conn.transaction():
        configs = {m["plot"]: c for m, c in zip(fleet_plan(), meter_configs(base_port), strict=True)}
        _money_on_meters(conn, esco, configs)
    return recorded


def _money_on_meters(conn: psycopg.Connection, esco: str, configs: dict[str, MeterConfig]) -> None:
    """Money flow to watch on the meters (dashboards, audit, the ledger): payments, wallets, a gift and solar
    credit made through the platform (demo_payments.py), bank statements imported and matched (demo_bank.py),
    their top-ups on the meters; next quarter's customer tariffs rolled out to the prepay meters; then the
    reconciliation queue, one exception of each kind waiting (demo_reconciliation.py). Each happens once,
    however often the demo is created; the meter commands wait a minute behind the first syncs, so live
    readings come first, as they would on a real first day."""
    demo_payments.create(conn, esco, ESCO[0], demo_billing.last_month(datetime.now(UTC).date()))
    demo_bank.create(conn, esco, ESCO[0])
    if not conn.execute("SELECT FROM flows.meter_commands WHERE esco = %s AND kind = 'set_future_tariff'",
                        (esco,)).fetchone():
        conn.execute("SELECT api.roll_out_customer_tariffs(%s, (date_trunc('quarter', now() AT TIME ZONE"
                     " 'Europe/London') + interval '3 months')::date)", (ESCO[0],))
    conn.execute("UPDATE flows.meter_commands SET run_at = now() + interval '1 minute' WHERE esco = %s"
                 " AND status = 'pending' AND kind IN ('send_token', 'set_future_tariff')"
                 " AND requested_by <> 'scheduler'", (esco,))
    demo_reconciliation.create(conn, esco, configs)


def installation(conn, esco: str) -> datetime:
    """When the community was installed: a year before it was first created here (UK midnight, in UTC);
    the same every later time (its registers say so)."""
    known = conn.execute("SELECT min(r.start_time) FROM flows.meter_registers r JOIN flows.meter_registry m"
                         " ON m.id = r.meter_id WHERE m.esco = %s", (esco,)).fetchone()[0]
    if known is not None:
        return known
    return conn.execute("SELECT flows.uk_day_start(flows.uk_day(now()) - 365)").fetchone()[0]


def record_history(database_url: str, meters: list[f.Meter], configs: list[MeterConfig], installed: datetime) -> int:
    """A year of half hours (back to the installation at most) for each demo meter, from its emulated
    profile log up to the last whole half hour; nothing for a meter whose history is there already.
    Returns the half hours recorded.

    Two processes share the meters (one transaction a meter): working a year out of a meter's log is
    Python, recording it is PostgreSQL, and together they are most of `flows up` on a new stack."""
    now = datetime.now(UTC)
    until = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0)
    since = max(installed, until - timedelta(days=HISTORY_DAYS))
    with connect(database_url) as conn:
        done = {str(m) for (m,) in conn.execute(
            "SELECT DISTINCT r.meter_id FROM flows.register_interval_hh h JOIN flows.meter_registers r"
            " USING (register_id) WHERE r.meter_id = ANY (%s::uuid[]) AND h.source = 'profile_log'"
            " AND h.timestamp < %s", ([m.id for m in meters], until - timedelta(days=8)))}
        # the partitions first: the two processes would otherwise both create each month's
        conn.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %s, %s)", (since, until))
        conn.commit()
    todo = [(meter, config) for meter, config in zip(meters, configs, strict=True) if meter.id not in done]
    if not todo:
        return 0
    shares = [todo[0::2], todo[1::2]]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        return sum(pool.map(_record_share, [database_url] * 2, shares, [since] * 2, [until] * 2))


def _record_share(database_url: str, share: list[tuple[f.Meter, MeterConfig]], since: datetime,
                  until: datetime) -> int:
    """record_history's work in one process: these meters' history, a transaction each."""
    clock = SimClock()
    recorded = 0
    with connect(database_url, autocommit=True) as conn:
        for meter, config in share:
            model = MeterModel(config, clock, token_key=b"")  # its log, not its tokens
            recorded += f.record_profile_history(conn, meter, model, since, until)
    return recorded

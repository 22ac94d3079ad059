"""Test data: one ESCO with something in every table, made through the same
functions the product uses (api.register_meter, flows.record_meter_states, ...).

The RLS test builds two of these and checks, relation by relation, that each
role sees exactly its share. A new table or view needs rows here, or that test
fails for lack of data.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from flows.billing.documents import render_invoice
from tests.support.billing_factory import BillingData, build_billing


def new_serial(prefix: str = "EML") -> str:
    digits = str(uuid.uuid4().int)[:10]
    return f"{prefix}{digits}" if prefix == "EML" else f"{prefix}{digits[:8]}"


@dataclass
class EscoData:
    code: str
    esco: str = ""
    site: str = ""
    properties: list[str] = field(default_factory=list)
    feeder: str = ""
    heads: list[str] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)  # meter -> register ids
    circuits: list[str] = field(default_factory=list)
    circuit_registers: list[str] = field(default_factory=list)
    billing: BillingData = field(default_factory=BillingData)

    def ids(self) -> set[str]:
        """Every id this ESCO's rows carry."""
        found = {self.esco, self.site, self.feeder, *self.properties, *self.heads, *self.meters, *self.circuits,
                 *self.circuit_registers, *self.billing.ids()}
        for registers in self.registers.values():
            found.update(registers)
        return found

    def customer_ids(self) -> set[str]:
        """What the customer of the first property may see: its property, the
        head and the meters behind it (twin element and three phase), their
        registers, the ESCO and site they point at, and their own billing rows."""
        meters = [self.meters[0], self.meters[2]]
        registers = [r for m in meters for r in self.registers[m]]
        return {self.esco, self.site, self.properties[0], self.heads[0], *meters, *registers,
                *self.billing.customer_ids()}


def _one(conn: psycopg.Connection, sql: str, params=()) -> str:
    return str(conn.execute(sql, params).fetchone()[0])


def build_esco(conn: psycopg.Connection, code: str | None = None) -> EscoData:
    """Create an ESCO with topology, three meters, state, history and readings.

    Run as a superuser (or admin); times are relative to now so that the
    monitoring views have something to show.
    """
    data = EscoData(code or "T" + uuid.uuid4().hex[:8].upper())
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(days=4)
    data.esco = _one(conn, "INSERT INTO flows.escos (code, name) VALUES (%s, %s) RETURNING id",
                     (data.code, f"ESCO {data.code}"))
    data.site = _one(conn, "INSERT INTO flows.sites (esco, code, name, capacity_kw) VALUES (%s, 'S1', 'Site', 250)"
                           " RETURNING id", (data.esco,))
    for plot in ("P-01", "P-02"):
        data.properties.append(_one(conn, "INSERT INTO flows.properties (esco, site, plot, address)"
                                          " VALUES (%s, %s, %s, 'Street') RETURNING id", (data.esco, data.site, plot)))
    data.feeder = _one(conn, "INSERT INTO flows.feeder_registry (esco, name, substation, rating_amps)"
                             " VALUES (%s, 'F1', 'Sub 1', 400) RETURNING id", (data.esco,))
    for i, name in enumerate(("H1", "H2")):
        data.heads.append(_one(conn, "INSERT INTO flows.service_head_registry (esco, name, phase, fuse_rating, feeder)"
                                     " VALUES (%s, %s, %s, 100, %s) RETURNING id",
                               (data.esco, name, i + 1, data.feeder if i == 0 else None)))
        conn.execute("INSERT INTO flows.properties_service_head (property, service_head, esco) VALUES (%s, %s, %s)",
                     (data.properties[i], data.heads[i], data.esco))

    # Meters: twin element (A, B), single element, three phase.
    for hardware, prefix, head in (("C1.w", "EML", 0), ("B1.w", "EML", 1), ("P1.ax", "EMP1AX", 0)):
        elements = ["A", "B"] if hardware == "C1.w" else ["SINGLE"]
        registers = json.dumps([{"element": e, "start_time": since.isoformat()} for e in elements])
        meter = _one(conn, "SELECT api.register_meter(serial => %s, name => %s, hardware => %s, esco => %s,"
                           " site => %s, registers => %s::jsonb) ->> 'id'",
                     (new_serial(prefix), f"{hardware} meter", hardware, data.esco, data.site, registers))
        data.meters.append(meter)
        data.registers[meter] = [str(r[0]) for r in conn.execute(
            "SELECT register_id FROM flows.meter_registers WHERE meter_id = %s ORDER BY element", (meter,))]
        conn.execute("INSERT INTO flows.service_head_meter (service_head, meter, esco) VALUES (%s, %s, %s)",
                     (data.heads[head], meter, data.esco))

    twin, single, three_phase = data.meters
    for kind, name in (("power", "Homes"), ("heat", "Heat pumps")):
        data.circuits.append(_one(conn, "INSERT INTO flows.circuits (esco, site, type, name) VALUES (%s, %s, %s, %s)"
                                        " RETURNING id", (data.esco, data.site, kind, name)))
    for circuit, register in ((data.circuits[0], data.registers[twin][0]),
                              (data.circuits[1], data.registers[single][0])):
        data.circuit_registers.append(_one(
            conn, "INSERT INTO flows.circuit_register (circuit, register, esco, start_time) VALUES (%s, %s, %s, %s)"
                  " RETURNING id", (circuit, register, data.esco, since)))

    # State five hours ago: offline for 3-24 hours; the twin is low on credit and drifting.
    seen = (now - timedelta(hours=5)).isoformat()
    tariff = {"standing_charge": "0.6975", "unit_rate_element_a": "0.24567", "unit_rate_element_b": "0.12",
              "prepayment_ecredit_availability": "5", "prepayment_debt_recovery_rate": "0.5",
              "prepayment_emergency_credit": "10"}
    future = {**tariff, "unit_rate_element_a": "0.25", "activation_datetime": (now + timedelta(days=30)).isoformat()}
    states = [
        {"meter_id": twin, "observed_at": seen, "balance": "4.5", "emergency_credit": "0", "csq": 17,
         "voltage": 239.8, "import_a": 1200.5, "export_a": 3.25, "import_b": 400.125, "export_b": 0,
         "health": "healthy", "tariffs_active": tariff, "tariffs_future": future,
         "clock_time_diff_seconds": 120, "backlight": "normal", "load_switch": "normal", "prepay_enabled": True},
        {"meter_id": single, "observed_at": seen, "balance": "52.31", "csq": 99, "voltage": 241,
         "import_a": 880, "health": "healthy", "tariffs_active": tariff, "clock_time_diff_seconds": -2},
        {"meter_id": three_phase, "observed_at": seen, "voltage_l1": 240.1, "voltage_l2": 239.5, "voltage_l3": 241.2,
         "import_a": 15000, "health": "unhealthy", "health_details": "NAK 5 on prepay_balance"},
    ]
    conn.execute("SELECT flows.record_meter_states(%s::jsonb)", (json.dumps(states),))
    conn.execute("SELECT flows.record_meter_events(%s, %s, %s, %s)",
                 (twin, [now - timedelta(days=1), now - timedelta(hours=6)], [33, 34], [1, 1]))

    # Commands: a token top-up and a tariff rollout to two meters.
    conn.execute("SELECT * FROM api.send_token(%s, amount => 10)", (twin,))
    conn.execute("SELECT * FROM api.set_future_tariff(%s::jsonb, ARRAY[%s, %s]::uuid[])",
                 (json.dumps(future), twin, single))

    # Half hours of the last two UK days, with gaps (so register_interval_hh_missing shows them).
    ids, times, imports, exports = [], [], [], []
    start = conn.execute("SELECT flows.uk_day_start(flows.uk_day(now()) - 2)").fetchone()[0]
    for meter, registers in data.registers.items():
        for register in registers:
            for k in range(0, 96, 1):
                if k % 17 == 5:
                    continue  # a missing half hour
                ids.append(register)
                times.append(start + timedelta(minutes=30 * k))
                imports.append(Decimal("0.1") + (k % 7) * Decimal("0.05"))
                exports.append(Decimal("0.01") if meter == twin else Decimal(0))
    conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], %s::numeric[])",
                 (ids, times, imports, exports))

    # Customers, tariffs, last month's final statements and a rendered PDF.
    data.billing = build_billing(conn, data.esco, data.code, data.properties, render=render_invoice)
    return data

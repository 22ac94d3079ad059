"""Meters with their registers, through api.register_meter (the function
operators call), so each meter gets its registers and its shadow exactly as
in production.

Registers default from the hardware as register_meter decides (twin element
or single); ``elements`` names them instead. ``registers_from`` is when the
registers start measuring (default: when the meter is registered), for
readings older than the meter's registration.
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Meter:
    id: str
    serial: str
    registers: dict[str, str] = field(default_factory=dict)  # element -> register id

    @property
    def register_ids(self) -> list[str]:
        """Register ids in element order (A, B or SINGLE)."""
        return [self.registers[element] for element in sorted(self.registers)]


def new_serial(prefix: str = "EML") -> str:
    """A serial no other meter has: EML + 10 digits, or a three-phase prefix (EMP1AX) + 8 digits."""
    digits = str(uuid.uuid4().int)[:10]
    return f"{prefix}{digits}" if prefix == "EML" else f"{prefix}{digits[:8]}"


@dataclass(frozen=True)
class MeterSpec:
    """One meter to register; None leaves register_meter's default."""
    serial: str
    hardware: str | None = None
    name: str | None = None
    ip_address: str | None = None
    emop_port: int | None = None
    prepay_enabled: bool = True  # three-phase meters are credit meters


def add_meter(conn: psycopg.Connection, esco: str, serial: str | None = None, *, hardware: str | None = None,
              name: str | None = None, ip_address: str | None = None, emop_port: int | None = None,
              prepay_enabled: bool = True, **options) -> Meter:
    """One meter (a new serial by default); options as for add_meters."""
    spec = MeterSpec(serial or new_serial("EMP1AX" if hardware in ("P1.ax", "P1.cx") else "EML"), hardware, name,
                     ip_address, emop_port, prepay_enabled)
    return add_meters(conn, esco, [spec], **options)[0]


def add_meters(conn: psycopg.Connection, esco: str, meters: Sequence[MeterSpec], *, site: str | None = None,
               mode: str = "active", installation_status: str | None = None,
               elements: Sequence[str] | None = None, registers_from: datetime | str | None = None) -> list[Meter]:
    """Registers meters of one ESCO in one statement, in the order given.

    A serial already registered is not registered again: the meter is moved to
    the address given (an emulated meter on a new port) and returned as it is.
    """
    known = dict(conn.execute("SELECT serial, id FROM flows.meter_registry WHERE serial = ANY(%s)",
                              ([m.serial for m in meters],)).fetchall())
    for meter in meters:
        if meter.serial in known and (meter.ip_address or meter.emop_port):
            conn.execute("UPDATE flows.meter_registry AS m SET ip_address = coalesce(%(ip)s::inet, ip_address),"
                         " emop_port = coalesce(%(port)s, emop_port) WHERE id = %(id)s"
                         " AND (m.ip_address, m.emop_port) IS DISTINCT FROM"
                         " (coalesce(%(ip)s::inet, m.ip_address), coalesce(%(port)s, m.emop_port))",
                         {"ip": meter.ip_address, "port": meter.emop_port, "id": known[meter.serial]})
    new = [m for m in meters if m.serial not in known]
    registers = None
    if elements:
        registers = json.dumps([{"element": e, **({"start_time": str(registers_from)} if registers_from else {})}
                                for e in elements])
    created = conn.execute(
        "SELECT (m ->> 'id')::uuid"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::inet[], %s::integer[], %s::boolean[])"
        "     WITH ORDINALITY AS x (serial, hardware, name, ip_address, emop_port, prepay_enabled, n)"
        " CROSS JOIN LATERAL api.register_meter(serial => x.serial, hardware => x.hardware, name => x.name,"
        "     ip_address => x.ip_address, emop_port => coalesce(x.emop_port, 8080), esco => %s, site => %s,"
        "     mode => %s, prepay_enabled => x.prepay_enabled, installation_status => %s, registers => %s::jsonb) AS m"
        " ORDER BY x.n",
        ([m.serial for m in new], [m.hardware for m in new], [m.name for m in new], [m.ip_address for m in new],
         [m.emop_port for m in new], [m.prepay_enabled for m in new], esco, site, mode, installation_status,
         registers)).fetchall()
    ids = {**{serial: str(meter_id) for serial, meter_id in known.items()},
           **{m.serial: str(row[0]) for m, row in zip(new, created, strict=True)}}
    if registers_from and not elements and new:
        conn.execute("UPDATE flows.meter_registers SET start_time = %s WHERE meter_id = ANY(%s::uuid[])",
                     (registers_from, [ids[m.serial] for m in new]))
    found: dict[str, dict[str, str]] = {}
    for meter_id, element, register_id in conn.execute(
            "SELECT meter_id, element, register_id FROM flows.meter_registers WHERE meter_id = ANY(%s::uuid[])"
            " AND status = 'enabled'", (list(ids.values()),)):
        found.setdefault(str(meter_id), {})[element] = str(register_id)
    return [Meter(ids[m.serial], m.serial, found.get(ids[m.serial], {})) for m in meters]


def add_emulated_meters(conn: psycopg.Connection, esco: str, meters: Sequence, **options) -> dict[str, str]:
    """Meters of an emulated fleet (anything with .serial, .hardware, .host and .port, e.g.
    flows.emulator.Fleet().meters) registered at their addresses; serial -> meter id."""
    specs = [MeterSpec(m.serial, m.hardware, ip_address=m.host, emop_port=m.port) for m in meters]
    return {m.serial: m.id for m in add_meters(conn, esco, specs, **options)}

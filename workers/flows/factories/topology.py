"""ESCOs and their topology: sites, properties, the network (feeders and
service heads), circuits, and the links between them.

No SQL function writes these rows (operators write them through the api
views), so the factories insert into the flows tables. Each is keyed on the
row's natural key: called again with the same key it brings the row to the
values given and returns the same id. Children take their ESCO from their
parent, so a link across two ESCOs fails here as it would over HTTP.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg


@dataclass(frozen=True)
class Esco:
    id: str
    code: str


def new_esco_code(prefix: str = "T") -> str:
    """A code no other ESCO has: the prefix and 8 hex digits (codes are A-Z0-9, 2-16 long)."""
    return prefix + uuid.uuid4().hex[:8].upper()


def add_esco(conn: psycopg.Connection, code: str | None = None, name: str | None = None, *,
             max_running_commands: int | None = None, low_balance_threshold: Decimal | None = None) -> Esco:
    """The ESCO with this code (a new unique code by default). Settings left None keep their value
    (a new ESCO gets the column defaults)."""
    code = code or new_esco_code()
    esco = _one(conn, "INSERT INTO flows.escos (code, name) VALUES (%s, %s)"
                      " ON CONFLICT (code) DO UPDATE SET name = excluded.name RETURNING id",
                (code, name or f"ESCO {code}"))
    conn.execute("UPDATE flows.escos SET max_running_commands = coalesce(%s, max_running_commands),"
                 " low_balance_threshold = coalesce(%s, low_balance_threshold) WHERE id = %s",
                 (max_running_commands, low_balance_threshold, esco))
    return Esco(esco, code)


def add_site(conn: psycopg.Connection, esco: str, code: str = "S1", name: str | None = None, *,
             location: str | None = None, capacity_kw: Decimal | int | None = None) -> str:
    return _one(conn, "INSERT INTO flows.sites (esco, code, name, location, capacity_kw) VALUES (%s, %s, %s, %s, %s)"
                      " ON CONFLICT (esco, code) DO UPDATE SET name = excluded.name, location = excluded.location,"
                      " capacity_kw = excluded.capacity_kw RETURNING id",
                (esco, code, name or f"Site {code}", location, capacity_kw))


def add_property(conn: psycopg.Connection, site: str, plot: str, *, address: str | None = None,
                 type: str = "residential") -> str:
    return _one(conn, "INSERT INTO flows.properties (esco, site, plot, address, type)"
                      " SELECT s.esco, s.id, %s, %s, %s FROM flows.sites AS s WHERE s.id = %s"
                      " ON CONFLICT (site, plot, esco) DO UPDATE SET address = excluded.address, type = excluded.type"
                      " RETURNING id", (plot, address, type, site))


def add_feeder(conn: psycopg.Connection, esco: str, name: str, *, substation: str | None = None,
               rating_amps: int | None = None) -> str:
    return _one(conn, "INSERT INTO flows.feeder_registry (esco, name, substation, rating_amps) VALUES (%s, %s, %s, %s)"
                      " ON CONFLICT (esco, name) DO UPDATE SET substation = excluded.substation,"
                      " rating_amps = excluded.rating_amps RETURNING id", (esco, name, substation, rating_amps))


def add_service_head(conn: psycopg.Connection, esco: str, name: str, *, phase: int | None = None,
                     fuse_rating: int | None = None, type: str = "network_owned", feeder: str | None = None) -> str:
    return _one(conn, "INSERT INTO flows.service_head_registry (esco, name, phase, fuse_rating, type, feeder)"
                      " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (esco, name) DO UPDATE SET phase = excluded.phase,"
                      " fuse_rating = excluded.fuse_rating, type = excluded.type, feeder = excluded.feeder"
                      " RETURNING id", (esco, name, phase, fuse_rating, type, feeder))


def add_circuit(conn: psycopg.Connection, site: str, name: str, type: str = "power", *,
                rating_amps: int | None = None) -> str:
    return _one(conn, "INSERT INTO flows.circuits (esco, site, type, name, rating_amps)"
                      " SELECT s.esco, s.id, %s, %s, %s FROM flows.sites AS s WHERE s.id = %s"
                      " ON CONFLICT (site, name, esco) DO UPDATE SET type = excluded.type,"
                      " rating_amps = excluded.rating_amps RETURNING id", (type, name, rating_amps, site))


def link_property_head(conn: psycopg.Connection, property: str, service_head: str) -> None:
    """The service head feeds the property (many to many)."""
    conn.execute("INSERT INTO flows.properties_service_head (property, service_head, esco)"
                 " SELECT p.id, %s, p.esco FROM flows.properties AS p WHERE p.id = %s ON CONFLICT DO NOTHING",
                 (service_head, property))


def link_head_meter(conn: psycopg.Connection, service_head: str, meter: str) -> None:
    """The meter sits behind the service head (many to many)."""
    conn.execute("INSERT INTO flows.service_head_meter (service_head, meter, esco)"
                 " SELECT h.id, %s, h.esco FROM flows.service_head_registry AS h WHERE h.id = %s"
                 " ON CONFLICT DO NOTHING", (meter, service_head))


def link_circuit_register(conn: psycopg.Connection, circuit: str, register: str, start_time: datetime | str,
                          end_time: datetime | str | None = None) -> str:
    """The register measures the circuit from start_time to end_time (None: still). Where the
    register already measures a circuit in that time, that link is kept and returned."""
    added = conn.execute("INSERT INTO flows.circuit_register (circuit, register, esco, start_time, end_time)"
                         " SELECT c.id, %s, c.esco, %s, %s FROM flows.circuits AS c WHERE c.id = %s"
                         " ON CONFLICT DO NOTHING RETURNING id", (register, start_time, end_time, circuit)).fetchone()
    if added:
        return str(added[0])
    return _one(conn, "SELECT id FROM flows.circuit_register WHERE register = %s"
                      " AND tstzrange(start_time, end_time) && tstzrange(%s, %s) ORDER BY start_time LIMIT 1",
                (register, start_time, end_time))


def _one(conn: psycopg.Connection, sql: str, params) -> str:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise LookupError(f"no row: the parent named in {params} does not exist")
    return str(row[0])

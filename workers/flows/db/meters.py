"""Meters as the command-line tools look them up."""

from flows.db.connect import connect, database_url
from flows.emop.directory import MeterAddress
from flows.errors import ConfigError


def address_from_database(serial: str) -> MeterAddress | None:
    """The meter's EMOP address from meter_registry, when a database is configured
    (FLOWS_DATABASE_URL or the embedded stack); None when none is or the serial is unknown."""
    try:
        url = database_url()
    except ConfigError:
        return None
    with connect(url) as conn:
        row = conn.execute(
            "SELECT host(ip_address), emop_port FROM flows.meter_registry WHERE serial = %s", (serial,)
        ).fetchone()
    return MeterAddress(serial, row[0], row[1]) if row and row[0] else None

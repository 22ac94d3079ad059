"""Meters as the command-line tools look them up."""

from flows.db.connect import connect
from flows.emop.directory import MeterAddress


def address_from_database(database_url: str, serial: str) -> MeterAddress | None:
    """The meter's EMOP address from meter_registry; None when the serial is unknown or has no address."""
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT host(ip_address), emop_port FROM flows.meter_registry WHERE serial = %s", (serial,)
        ).fetchone()
    return MeterAddress(serial, row[0], row[1]) if row and row[0] else None

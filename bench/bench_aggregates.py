"""Aggregates: a site's monthly totals for one year, 50 circuits.

One register per circuit, a year of half hours each (876,000 rows), recorded
through flows.record_interval_hh (so the daily and monthly rollups exist).
Measured in one run, on one database, median of several runs each:
  aggregate path  api.site_interval_monthly for the site and the year
  raw scan        the same totals summed from the half hours, honouring the
                  circuit_register ranges
Target: aggregate path >= 50x faster. The two must agree to the Wh.
"""

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report, timed  # noqa: E402
from flows import factories  # noqa: E402

CIRCUITS = 50
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)  # UK winter time: midnight UTC = midnight UK
HALF_HOURS = 365 * 48

AGGREGATE = """
    SELECT month, import_kwh, export_kwh FROM api.site_interval_monthly
    WHERE site_id = %(site)s AND month >= '2025-01-01' AND month < '2026-01-01' ORDER BY month
"""
RAW = """
    SELECT flows.uk_month(flows.uk_day(h."timestamp")) AS month, coalesce(sum(h.import_kwh), 0),
           coalesce(sum(h.export_kwh), 0)
    FROM flows.circuits c
    JOIN flows.circuit_register cr ON cr.circuit = c.id
    JOIN flows.register_interval_hh h ON h.register_id = cr.register
     AND h."timestamp" >= cr.start_time AND (cr.end_time IS NULL OR h."timestamp" < cr.end_time)
    WHERE c.site = %(site)s AND h."timestamp" >= '2025-01-01 00:00+00' AND h."timestamp" < '2026-01-01 00:00+00'
    GROUP BY 1 ORDER BY 1
"""


def build(conn) -> str:
    """One site, CIRCUITS circuits each measured by one meter's register from 2024-06-01, a year of half hours."""
    esco = factories.add_esco(conn, "AGGB", "Bench").id
    site = factories.add_site(conn, esco, "S", "Site")
    meters = factories.add_meters(conn, esco, [factories.MeterSpec(f"EML{i:010d}") for i in range(1, CIRCUITS + 1)],
                                  site=site, elements=["SINGLE"], registers_from="2024-01-01T00:00:00Z")
    registers = [meter.registers["SINGLE"] for meter in meters]
    for i, register in enumerate(registers, 1):
        factories.link_circuit_register(conn, factories.add_circuit(conn, site, f"circuit {i}"), register,
                                        "2024-06-01T00:00:00Z")
    times = [YEAR_START + timedelta(minutes=30 * k) for k in range(HALF_HOURS)]
    conn.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %s, %s)",
                 (YEAR_START, YEAR_START + timedelta(days=180)))
    conn.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %s, %s)",
                 (YEAR_START + timedelta(days=180), YEAR_START + timedelta(days=366)))
    for n, register in enumerate(registers):
        imports = [Decimal((k * 13 + n) % 900) / 1000 for k in range(HALF_HOURS)]
        factories.record_half_hours(conn, [register] * HALF_HOURS, times, imports)
    conn.execute("VACUUM ANALYZE")
    return site


def main() -> None:
    with database() as url, psycopg.connect(url, autocommit=True) as conn:
        site = build(conn)
        args = {"site": site}
        aggregate = conn.execute(AGGREGATE, args).fetchall()
        raw = conn.execute(RAW, args).fetchall()
        assert aggregate == raw and len(aggregate) == 12, f"aggregate path and raw scan disagree: {aggregate} {raw}"
        aggregate_seconds = timed(lambda: conn.execute(AGGREGATE, args).fetchall(), repeat=21)
        raw_seconds = timed(lambda: conn.execute(RAW, args).fetchall(), repeat=5)
    report("aggregates: site monthly totals for a year, 50 circuits", raw_seconds / aggregate_seconds, 50, [
        f"aggregate path {aggregate_seconds * 1000:8.2f} ms  (api.site_interval_monthly, median of 21)",
        f"raw scan       {raw_seconds * 1000:8.2f} ms  ({CIRCUITS * HALF_HOURS:,} half hours, median of 5)",
        "both give the same 12 monthly totals",
    ])


if __name__ == "__main__":
    main()

"""Circuit, site and property aggregates equal a brute-force sum of half hours,
whatever the circuit ranges (mid-day, mid-month, open), across the UK clock
change; the missing-data view knows UK days have 46 or 50 half hours."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import factories

START = datetime(2026, 9, 27, 23, tzinfo=UTC)  # 00:00 BST on 28 Sep
HALF_HOURS = 2 * 24 * 40  # to 6 Nov: two month ends and the 25 Oct clock change
BOUNDARIES = sorted({
    START + timedelta(minutes=30 * k) for k in (0, 37, 48 * 3 + 5, 48 * 4 - 2, 48 * 10, 48 * 27 + 13, 48 * 35 + 22)
} | {datetime(2026, 9, 30, 23, tzinfo=UTC), datetime(2026, 10, 25, 0, tzinfo=UTC),
     datetime(2026, 11, 1, 0, tzinfo=UTC), datetime(2026, 10, 17, 12, 30, tzinfo=UTC)})


@pytest.fixture
def world(db):
    esco = factories.add_esco(db, "AGG", "Aggregates").id
    site = factories.add_site(db, esco, "S", "S")
    circuits = [factories.add_circuit(db, site, name) for name in ("one", "two")]
    meters = factories.add_meters(db, esco, [factories.MeterSpec(factories.new_serial()) for _ in range(2)],
                                  elements=["SINGLE"], registers_from="2026-01-01T00:00:00Z")
    registers = [meter.registers["SINGLE"] for meter in meters]
    times = [START + timedelta(minutes=30 * k) for k in range(HALF_HOURS)]
    for n, register in enumerate(registers):
        imports = [Decimal(k % 11) / 8 + n for k in range(HALF_HOURS)]
        exports = [Decimal(k % 3) / 1000 for k in range(HALF_HOURS)]
        factories.record_half_hours(db, [register] * HALF_HOURS, times, imports, exports)
    return {"esco": esco, "site": site, "circuits": circuits, "registers": registers}


BRUTE = """
    SELECT cr.circuit, {period} AS period, coalesce(sum(h.import_kwh), 0), coalesce(sum(h.export_kwh), 0)
    FROM flows.register_interval_hh h
    JOIN flows.circuit_register cr ON cr.register = h.register_id
     AND h."timestamp" >= cr.start_time AND (cr.end_time IS NULL OR h."timestamp" < cr.end_time)
    GROUP BY 1, 2
"""
PERIODS = {
    "hh": ('h."timestamp"', "timestamp"),
    "daily": ('flows.uk_day(h."timestamp")', "day"),
    "monthly": ('flows.uk_month(flows.uk_day(h."timestamp"))', "month"),
}


def ranges_strategy():
    """Up to two consecutive ranges per register, over both circuits."""
    return st.lists(st.tuples(st.sampled_from(BOUNDARIES), st.sampled_from(BOUNDARIES + [None])), min_size=1,
                    max_size=2)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(plan=st.lists(ranges_strategy(), min_size=2, max_size=2))
def test_circuit_and_site_figures_equal_brute_force(db, world, plan):
    db.execute("DELETE FROM flows.circuit_register")
    for register, ranges in zip(world["registers"], plan, strict=True):
        end_of_last = None
        for i, (start, end) in enumerate(ranges):
            start = max(start, end_of_last) if end_of_last else start
            if end is not None and end <= start:
                continue
            factories.link_circuit_register(db, world["circuits"][i % 2], register, start, end)
            if end is None:
                break
            end_of_last = end
    for period, (expression, column) in PERIODS.items():
        expected = sorted(db.execute(BRUTE.format(period=expression)).fetchall())
        circuit_rows = sorted(db.execute(
            f"SELECT circuit_id, {column}, import_kwh, export_kwh FROM api.circuit_interval_{period}").fetchall())
        assert circuit_rows == expected, f"circuit_interval_{period}"
        site_rows = db.execute(f"SELECT {column}, import_kwh, export_kwh FROM api.site_interval_{period}"
                               f" WHERE site_id = %s ORDER BY 1", (world["site"],)).fetchall()
        by_period: dict = {}
        for _, when, imported, exported in expected:
            total = by_period.setdefault(when, [Decimal(0), Decimal(0)])
            total[0] += imported
            total[1] += exported
        assert site_rows == [(k, v[0], v[1]) for k, v in sorted(by_period.items())], f"site_interval_{period}"


def test_property_figures(db, world):
    prop = factories.add_property(db, world["site"], "P")
    head = factories.add_service_head(db, world["esco"], "H")
    factories.link_property_head(db, prop, head)
    meter = db.execute("SELECT meter_id FROM flows.meter_registers WHERE register_id = %s",
                       (world["registers"][1],)).fetchone()[0]
    factories.link_head_meter(db, head, meter)
    monthly = db.execute("SELECT month, import_kwh FROM api.property_interval_monthly WHERE property_id = %s"
                         " ORDER BY month", (prop,)).fetchall()
    expected = db.execute("SELECT flows.uk_month(flows.uk_day(\"timestamp\")), sum(import_kwh)"
                          " FROM flows.register_interval_hh WHERE register_id = %s GROUP BY 1 ORDER BY 1",
                          (world["registers"][1],)).fetchall()
    assert monthly == expected and len(monthly) == 3


def test_missing_half_hours_know_uk_clock_changes(db, world):
    rows = dict(db.execute(
        "SELECT day, expected FROM api.register_interval_hh_missing WHERE register_id = %s"
        " AND day IN ('2026-10-24', '2026-10-25', '2026-10-26')", (world["registers"][0],)).fetchall())
    assert [rows[d] for d in sorted(rows)] == [48, 50, 48]
    spring = db.execute("SELECT expected FROM api.register_interval_hh_missing WHERE register_id = %s"
                        " AND day = '2026-03-29'", (world["registers"][0],)).fetchone()[0]
    assert spring == 46
    full = db.execute("SELECT present, missing FROM api.register_interval_hh_missing WHERE register_id = %s"
                      " AND day = '2026-10-25'", (world["registers"][0],)).fetchone()
    assert full == (50, 0)
    before_data = db.execute("SELECT present, missing FROM api.register_interval_hh_missing WHERE register_id = %s"
                             " AND day = '2026-09-01'", (world["registers"][0],)).fetchone()
    assert before_data == (0, 48)

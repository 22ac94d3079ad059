"""Recording half hours and meter state: properties that must hold for any input."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import factories

# Half hours around the UK autumn clock change (25 Oct 2026, a 50-half-hour
# day) and a month boundary, so UK days and months are exercised.
SLOTS = [datetime(2026, 10, 24, 22, tzinfo=UTC) + timedelta(minutes=30 * k) for k in range(0, 400, 7)]
SLOTS += [datetime(2026, 10, 31, 23, tzinfo=UTC) + timedelta(minutes=30 * k) for k in range(4)]

kwh = st.one_of(st.none(), st.decimals(min_value=0, max_value=50, places=3))


def half_hour(registers):
    return st.tuples(st.sampled_from(registers), st.sampled_from(SLOTS), kwh, kwh).filter(
        lambda row: row[2] is not None or row[3] is not None)


@pytest.fixture
def registers(db):
    esco = factories.add_esco(db, "REC", "Recording").id
    meters = factories.add_meters(db, esco, [factories.MeterSpec(factories.new_serial(), "C1.w") for _ in range(2)],
                                  registers_from="2026-01-01T00:00:00Z")
    return [register for meter in meters for register in meter.register_ids]


def record(db, rows, source):
    ids, times, imports, exports = (list(column) for column in zip(*rows, strict=True))
    return db.execute("SELECT flows.record_interval_hh(%s, %s, %s::numeric[], %s::numeric[], %s)",
                      (ids, times, imports, exports, source)).fetchone()[0]


def snapshot(db):
    return db.execute("""
        SELECT (SELECT coalesce(jsonb_agg(h ORDER BY register_id, "timestamp"), '[]')
                FROM flows.register_interval_hh h),
               (SELECT coalesce(jsonb_agg(d ORDER BY register_id, day), '[]') FROM flows.register_interval_daily d),
               (SELECT coalesce(jsonb_agg(m ORDER BY register_id, month), '[]') FROM flows.register_interval_monthly m)
    """).fetchone()


ROLLUPS_MATCH_HALF_HOURS = """
    SELECT
      (SELECT count(*) FROM (
          SELECT register_id, flows.uk_day("timestamp") AS day, coalesce(sum(import_kwh), 0) AS i,
                 coalesce(sum(export_kwh), 0) AS e, count(*) AS n
          FROM flows.register_interval_hh GROUP BY 1, 2
          EXCEPT SELECT register_id, day, import_kwh, export_kwh, intervals FROM flows.register_interval_daily) x)
    + (SELECT count(*) FROM (
          SELECT register_id, day, import_kwh, export_kwh, intervals
          FROM flows.register_interval_daily WHERE intervals > 0
          EXCEPT SELECT register_id, flows.uk_day("timestamp"), coalesce(sum(import_kwh), 0),
                        coalesce(sum(export_kwh), 0), count(*)
          FROM flows.register_interval_hh GROUP BY 1, 2) y)
    + (SELECT count(*) FROM (
          SELECT register_id, flows.uk_month(flows.uk_day("timestamp")), coalesce(sum(import_kwh), 0),
                 coalesce(sum(export_kwh), 0), count(*)
          FROM flows.register_interval_hh GROUP BY 1, 2
          EXCEPT SELECT register_id, month, import_kwh, export_kwh, intervals FROM flows.register_interval_monthly) z)
"""


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(data=st.data())
def test_rollups_stay_exact_and_redelivery_changes_nothing(db, registers, data):
    batches = data.draw(st.lists(
        st.tuples(st.lists(half_hour(registers), min_size=1, max_size=25), st.sampled_from(["reads", "profile_log"])),
        min_size=1, max_size=4))
    for rows, source in batches:
        profile_before = {
            (r[0], r[1]): (r[2], r[3]) for r in db.execute(
                "SELECT register_id, \"timestamp\", import_kwh, export_kwh FROM flows.register_interval_hh"
                " WHERE source = 'profile_log'")}
        record(db, rows, source)
        assert db.execute(ROLLUPS_MATCH_HALF_HOURS).fetchone()[0] == 0, "rollups differ from the half hours"
        before = snapshot(db)
        assert record(db, rows, source) == 0, "re-delivering a batch changed something"
        assert snapshot(db) == before
        if source == "reads":  # reads may fill gaps but never change what the profile log said
            for key, old in profile_before.items():
                new = db.execute("SELECT import_kwh, export_kwh FROM flows.register_interval_hh"
                                 " WHERE register_id = %s AND \"timestamp\" = %s", key).fetchone()
                assert all(o is None or o == n for o, n in zip(old, new, strict=True)), (key, old, new)


def test_bad_batches_are_refused_whole(db, registers):
    good = (registers[0], SLOTS[0], Decimal("1.5"), None)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown register"):
        record(db, [good, (str(uuid.UUID(int=7)), SLOTS[1], Decimal(1), None)], "reads")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="implausible"):
        record(db, [good, (registers[0], datetime(1999, 1, 1, tzinfo=UTC), Decimal(1), None)], "reads")
    with pytest.raises(psycopg.errors.CheckViolation):
        record(db, [good, (registers[0], SLOTS[2], Decimal(-1), None)], "reads")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="same length"):
        db.execute("SELECT flows.record_interval_hh(%s, %s, %s::numeric[], %s::numeric[])",
                   ([registers[0]], [SLOTS[0], SLOTS[1]], [1, 2], [None, None]))
    assert db.execute("SELECT count(*) FROM flows.register_interval_hh").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM flows.register_interval_daily").fetchone()[0] == 0


def test_late_data_gets_a_partition(db, registers):
    """A meter offline for months delivers old profile log; its month gets a partition on the fly."""
    old = datetime(2025, 3, 3, 12, tzinfo=UTC)
    assert record(db, [(registers[0], old, Decimal("0.4"), None)], "profile_log") == 1
    assert db.execute("SELECT to_regclass('flows.register_interval_hh_p2025_03') IS NOT NULL").fetchone()[0]


state_values = st.fixed_dictionaries({}, optional={
    "balance": st.decimals(min_value=-500, max_value=500, places=5).map(str),
    "csq": st.one_of(st.integers(0, 31), st.just(99)),
    "voltage": st.decimals(min_value=180, max_value=260, places=1).map(float),
    "import_a": st.decimals(min_value=0, max_value=10**6, places=3).map(str),
    "health": st.sampled_from(["healthy", "unhealthy"]),
    "clock_time_diff_seconds": st.integers(-3600, 3600),
})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40, deadline=None)
@given(observations=st.lists(st.tuples(st.integers(0, 48), state_values), min_size=1, max_size=6))
def test_shadow_holds_the_latest_observation_whatever_the_arrival_order(db, registers, observations):
    meter = db.execute("SELECT meter_id FROM flows.meter_registers WHERE register_id = %s",
                       (registers[0],)).fetchone()[0]
    db.execute("DELETE FROM flows.meter_prepay_balance; DELETE FROM flows.meter_csq; DELETE FROM flows.register_import")
    db.execute("UPDATE flows.meter_shadows SET balance = NULL, balance_updated_at = NULL, csq = NULL,"
               " csq_updated_at = NULL WHERE id = %s", (meter,))
    base = datetime(2026, 11, 1, tzinfo=UTC)
    latest: dict[str, tuple] = {}
    for hour, values in observations:  # arrival order = list order, observation time = hour
        at = base + timedelta(hours=hour)
        db.execute("SELECT flows.record_meter_states(%s::jsonb)",
                   (json.dumps([{"meter_id": str(meter), "observed_at": at.isoformat(), **values}]),))
        for field in ("balance", "csq"):
            if field in values and (field not in latest or at >= latest[field][0]):
                latest[field] = (at, values[field])
    balance, csq = db.execute("SELECT balance, csq FROM flows.meter_shadows WHERE id = %s", (meter,)).fetchone()
    assert balance == (Decimal(latest["balance"][1]) if "balance" in latest else None)
    assert csq == (latest["csq"][1] if "csq" in latest else None)


def test_half_hours_estimated_from_reads_give_way_to_the_profile_log(db, registers):
    meter = db.execute("SELECT meter_id FROM flows.meter_registers WHERE register_id = %s",
                       (registers[0],)).fetchone()[0]

    def read(at, kwh):
        db.execute("SELECT flows.record_meter_states(%s::jsonb)",
                   (json.dumps([{"meter_id": str(meter), "observed_at": at.isoformat(), "import_a": kwh}]),))
        db.execute("SELECT flows.estimate_interval_hh()")  # what the scheduler does every pass

    start = datetime(2026, 11, 3, 10, 10, tzinfo=UTC)
    read(start, "100.000")
    read(start + timedelta(minutes=70), "101.400")  # 10:10 -> 11:20: 1.4 kWh at a steady rate
    rows = db.execute("SELECT \"timestamp\", import_kwh, source FROM flows.register_interval_hh"
                      " WHERE register_id = %s ORDER BY 1", (registers[0],)).fetchall()
    # half hours wholly between the reads: 10:30-11:00 (boundaries interpolated at 10:30 and 11:00)
    assert [(r[0].strftime("%H:%M"), r[1], r[2]) for r in rows] == [("10:30", Decimal("0.600"), "reads")]
    # 12:20: 11:00-11:30 (0.5: 101.0 -> 101.5) and 11:30-12:00 (0.3: 101.5 -> 101.8) are known now
    read(start + timedelta(minutes=130), "102.000")
    rows = db.execute("SELECT \"timestamp\", import_kwh FROM flows.register_interval_hh"
                      " WHERE register_id = %s ORDER BY 1", (registers[0],)).fetchall()
    assert [r[0].strftime("%H:%M") for r in rows] == ["10:30", "11:00", "11:30"]
    assert db.execute("SELECT estimated, intervals FROM flows.register_interval_daily WHERE register_id = %s",
                      (registers[0],)).fetchone() == (3, 3)
    # the meter's profile log replaces the estimate
    record(db, [(registers[0], datetime(2026, 11, 3, 11, tzinfo=UTC), Decimal("0.9"), None)], "profile_log")
    assert db.execute("SELECT estimated, import_kwh FROM flows.register_interval_daily WHERE register_id = %s",
                      (registers[0],)).fetchone() == (2, Decimal("0.600") + Decimal("0.9") + Decimal("0.300"))
    # a jump too big to be consumption is no estimate; the read is kept
    read(start + timedelta(minutes=160), "99999.000")
    assert db.execute("SELECT count(*) FROM flows.register_import WHERE register_id = %s",
                      (registers[0],)).fetchone()[0] == 4


def test_two_sessions_recording_into_the_same_new_month_both_succeed(db_url):
    """The second session waits for the partition the first creates, then uses it (it used to fail with
    "relation ... already exists": its catalog cache still said there was none)."""
    import threading

    month = datetime(2019, 3, 10, tzinfo=UTC)
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        assert first.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %s, %s)",
                             (month, month)).fetchone()[0] == 1  # created, not committed yet
        answer = {}

        def other_session():
            try:
                answer["created"] = second.execute("SELECT flows.ensure_partitions('flows.register_interval_hh',"
                                                   " %s, %s)", (month, month)).fetchone()[0]
            except psycopg.Error as error:
                answer["error"] = error

        waiting = threading.Thread(target=other_session)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive(), "the second session waits for the first"
        first.commit()
        waiting.join(10)
        second.commit()
    assert answer == {"created": 0}, answer

"""The shadow ledger's days (flows.meter_ledger_days) stay exact whatever order the raw rows arrive in.

Property: any sequence of writes (batches of balances, a worker's one-at-a-time latest balances, half hours as reads
or profile log, balance corrections and deletions) leaves the kept rows equal to a recomputation of every day from
the raw rows; and where no balance is at zero or below, the ledger read from them gives each complete day the energy
of its intervals computed from the raw rows (billing.shadow_ledger_intervals).
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import factories

# Three UK days around the autumn clock change (25 Oct 2026: a 25-hour day), so UK days are exercised.
START = datetime(2026, 10, 23, 23, tzinfo=UTC)  # 24 Oct 00:00 in London (BST)
SLOTS = [START + timedelta(minutes=30 * k) for k in range(3 * 48 + 2)]
TARIFF = {"standing_charge": "0.5", "unit_rate_element_a": "0.2", "unit_rate_element_b": "0.1",
          "prepayment_emergency_credit": "0", "prepayment_ecredit_availability": "0",
          "prepayment_debt_recovery_rate": "0"}

balances = st.lists(st.tuples(st.integers(0, len(SLOTS) * 30 - 1),
                              st.decimals(min_value=-2, max_value=80, places=2)), min_size=1, max_size=8)
half_hours = st.tuples(st.lists(st.tuples(st.integers(0, 1), st.integers(0, len(SLOTS) - 1),
                                          st.decimals(min_value=0, max_value=2, places=3)), min_size=1, max_size=60),
                       st.sampled_from(["reads", "profile_log"]))
# a worker's syncs: one observation at a time, each after the meter's latest (the appending path)
appends = st.lists(st.tuples(st.integers(1, 600), st.decimals(min_value=-2, max_value=80, places=2)),
                   min_size=1, max_size=6)
writes = st.lists(st.one_of(st.tuples(st.just("balances"), balances), st.tuples(st.just("half_hours"), half_hours),
                            st.tuples(st.just("appends"), appends),
                            st.tuples(st.just("correct"), st.integers(0, 1000), st.decimals(-2, 80, places=2)),
                            st.tuples(st.just("delete"), st.integers(0, 1000))), min_size=1, max_size=8)

KEPT = "SELECT * FROM flows.meter_ledger_days WHERE meter_id = %s ORDER BY day"
RECOMPUTE = """
SELECT flows.refresh_meter_ledger_days(array_agg(b.meter_id), array_agg(flows.uk_day(b."timestamp")))
FROM flows.meter_prepay_balance AS b WHERE b.meter_id = %(m)s
"""


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


def apply(db, meter, registers, write) -> None:
    kind = write[0]
    if kind == "balances":
        states = [{"meter_id": str(meter), "observed_at": at(m).isoformat(), "balance": str(b)} for m, b in write[1]]
        db.execute("SELECT flows.record_meter_states(%s::jsonb)", (json.dumps(states),))
    elif kind == "appends":
        latest = db.execute('SELECT max("timestamp") FROM flows.meter_prepay_balance WHERE meter_id = %s',
                            (meter,)).fetchone()[0] or START
        for gap, balance in write[1]:
            latest += timedelta(minutes=gap)
            state = {"meter_id": str(meter), "observed_at": latest.isoformat(), "balance": str(balance)}
            db.execute("SELECT flows.record_meter_states(%s::jsonb)", (json.dumps([state]),))
    elif kind == "half_hours":
        rows, source = write[1]
        db.execute("SELECT flows.record_interval_hh(%s, %s, %s::numeric[], %s::numeric[], %s)",
                   ([registers[r] for r, _, _ in rows], [SLOTS[s] for _, s, _ in rows], [k for _, _, k in rows],
                    [None] * len(rows), source))
    else:
        stored = [r[0] for r in db.execute('SELECT "timestamp" FROM flows.meter_prepay_balance WHERE meter_id = %s'
                                           ' ORDER BY "timestamp"', (meter,))]
        if not stored:
            return
        when = stored[write[1] % len(stored)]
        if kind == "correct":
            db.execute('UPDATE flows.meter_prepay_balance SET balance = %s WHERE meter_id = %s AND "timestamp" = %s',
                       (write[2], meter, when))
        else:
            db.execute('DELETE FROM flows.meter_prepay_balance WHERE meter_id = %s AND "timestamp" = %s', (meter, when))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(sequence=writes)
def test_kept_days_equal_a_recomputation_whatever_the_order(db, sequence):
    with db.transaction(force_rollback=True):
        esco = factories.add_esco(db, "DAYS", "Days").id
        meter = factories.add_meters(db, esco, [factories.MeterSpec(factories.new_serial(), "C1.w")],
                                     registers_from="2026-01-01T00:00:00Z")[0]
        registers = meter.register_ids
        db.execute("SELECT flows.record_meter_states(%s::jsonb)", (json.dumps([{
            "meter_id": str(meter.id), "observed_at": "2026-10-01T12:00:00Z", "tariffs_active": TARIFF}]),))
        for write in sequence:
            apply(db, meter.id, registers, write)
        kept = db.execute(KEPT, (meter.id,)).fetchall()
        db.execute("DELETE FROM flows.meter_ledger_days WHERE meter_id = %s", (meter.id,))
        db.execute(RECOMPUTE, {"m": meter.id})
        assert db.execute(KEPT, (meter.id,)).fetchall() == kept, f"kept days differ from the raw rows after {sequence}"

        if db.execute("SELECT bool_or(balance <= 0) FROM flows.meter_prepay_balance WHERE meter_id = %s",
                      (meter.id,)).fetchone()[0]:
            return  # at zero the two paths may split the range's first read differently (docs: "Limits")
        ledger = dict(db.execute(
            "SELECT day, energy_cost FROM billing.shadow_ledger(%s, '2026-10-24', '2026-10-26')"
            " WHERE meter_id = %s AND complete", (esco, meter.id)).fetchall())
        intervals = dict(db.execute(
            "SELECT day, sum(energy_cost) FROM billing.shadow_ledger_intervals(%s, '2026-10-24', '2026-10-26')"
            " WHERE meter_id = %s GROUP BY day HAVING bool_and(complete)", (esco, meter.id)).fetchall())
        for day, energy in ledger.items():
            assert abs(energy - intervals[day]) <= Decimal("0.0001"), (day, energy, intervals[day], sequence)


def test_the_half_hour_an_observation_falls_in_reaches_its_tail_when_recorded_after_it(db):
    """A worker's sync at 10:17 and then, alone, the half hour 10:00-10:30 from the profile log: the day's tail
    takes the 13 minutes after the observation (the appending path and the rollups' probe both)."""
    with db.transaction(force_rollback=True):
        esco = factories.add_esco(db, "TAIL", "Tail").id
        meter = factories.add_meters(db, esco, [factories.MeterSpec(factories.new_serial(), "C1.w")],
                                     registers_from="2026-01-01T00:00:00Z")[0]
        observed = START + timedelta(hours=10, minutes=17)
        apply(db, meter.id, meter.register_ids, ("appends", [(10 * 60 + 17, Decimal("5"))]))
        db.execute("SELECT flows.record_interval_hh(%s, %s, %s::numeric[], NULL, 'profile_log')",
                   ([meter.register_ids[0]], [START + timedelta(hours=10)], [Decimal("0.3")]))
        row = db.execute("SELECT last_at, round(tail_kwh_a, 9), tail_overlapping, tail_after"
                         " FROM flows.meter_ledger_days WHERE meter_id = %s", (meter.id,)).fetchone()
        assert row == (observed, Decimal("0.130000000"), 1, 0)

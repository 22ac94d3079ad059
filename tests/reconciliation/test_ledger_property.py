"""The shadow prepay ledger explains an emulated fleet's balances over 30 days to within a penny per meter and
day when nothing was injected (acceptance of issue 11), whatever the consumption, tariffs and debts: each example
is a fleet of three emulated meters charging by their own model, recorded through the EMOP client on simulated
time (tests/support/meter_recording.py), its debts loaded as an operator would."""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.emulator import Fleet, FleetConfig, MeterConfig
from tests.support.meter_recording import MeterRecorder
from tests.worker.conftest import VENDOR_SECRET, new_esco, register, serials

DAYS = 30
PENNY = Decimal("0.01")
numbers = itertools.count(901, 3)


def money(low: str, high: str, places: int):
    return st.decimals(Decimal(low), Decimal(high), places=places).map(str)


homes = st.fixed_dictionaries({
    "hardware": st.sampled_from(["C1.w", "B1.w"]),
    "load_scale": st.floats(0.2, 3.0),
    "balance": st.decimals(Decimal("5"), Decimal("150"), places=2),
    "debt": st.sampled_from([Decimal(0), Decimal(0), Decimal("3.5"), Decimal("40")]),
    "tariff": st.fixed_dictionaries({
        "standing_charge": money("0.1", "1.2", 4), "unit_rate_element_a": money("0.05", "0.6", 5),
        "unit_rate_element_b": money("0.05", "0.6", 5), "prepayment_debt_recovery_rate": money("0.05", "1", 2),
        "prepayment_emergency_credit": st.just("15"), "prepayment_ecredit_availability": st.just("10")}),
})


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=st.lists(homes, min_size=3, max_size=3), second=st.integers(0, 86399))
def test_the_ledger_explains_thirty_days_of_an_emulated_fleet(stack, fleet, second):
    asyncio.run(_thirty_days(stack, fleet, second))


async def _thirty_days(stack, homes: list[dict], second: int) -> None:
    """``second``: of the UTC day the emulated time starts, DAYS + 2 days ago (where the reads fall in the day:
    drawn, so that a failure is replayed where it happened)."""
    esco, _ = new_esco(stack)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=DAYS + 2) + timedelta(seconds=second)
    configs = [MeterConfig(serial=serial, clock_drift_ppm=0.0, **home)
               for serial, home in zip(serials(3, next(numbers)), homes, strict=True)]
    fleet = Fleet(FleetConfig(meters=configs, time_factor=0, start=start, latency=0.0, vendor_secret=VENDOR_SECRET))
    await fleet.start()
    try:
        ids = register(stack, fleet, esco)
        with stack.sql() as conn:
            conn.autocommit = True
            for config in configs:
                if config.debt:
                    conn.execute("INSERT INTO billing.prepay_debts (meter_id, esco, amount, as_of) "
                                 "VALUES (%s, %s, %s, %s)", (ids[config.serial], esco, config.debt, start))
            recorder = MeterRecorder(conn, fleet, ids)
            await recorder.observe()
            await recorder.run(start + timedelta(days=DAYS + 1), timedelta(hours=7, minutes=53))
            first = (start + timedelta(days=1)).date()
            days = conn.execute(
                "SELECT m.serial, l.day, l.complete, l.residual, l.finding FROM billing.shadow_ledger(%s, %s, %s) AS l"
                " JOIN flows.meter_registry AS m ON m.id = l.meter_id ORDER BY 1, 2",
                (esco, first, first + timedelta(days=DAYS - 1))).fetchall()
            exceptions = conn.execute("SELECT kind, reason FROM billing.reconciliation_exceptions(%s, %s, %s)",
                                      (esco, first, first + timedelta(days=DAYS - 1))).fetchall()
    finally:
        await fleet.stop()
    assert len(days) == 3 * DAYS and all(complete for _, _, complete, _, _ in days), \
        [row for row in days if not row[2]]
    assert [row for row in days if abs(row[3]) > PENNY or row[4]] == [], "a day the ledger does not explain"
    assert exceptions == []

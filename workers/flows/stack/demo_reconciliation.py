"""The demo community's reconciliation queue (docs/reconciliation.md): one exception of each kind waiting.

Three homes' meters are told the three days before the demo was created: their emulated models (the same
meters `flows emulator` serves) run on a simulated clock from then to now, and what a worker would have read from
them every few hours (balance, tariffs, event log) is recorded by the product's recording functions at the
moment it was read; their half hours are the year of history already recorded. Each model starts from the
balance that brings it to the emulated meter's own balance now, so the live readings carry on from the story.

- DM-05: a 5.00 token typed on the keypad two days ago (credit_without_topup).
- DM-14: low on credit, the customer took the 15.00 emergency credit yesterday (emergency_credit_taken); a 15.00
  cash payment at the hall just now, whose top-up all went to repaying it, so the balance did not rise
  (topup_without_credit: the operator checks and resolves it).
- DM-12: the meter lost 1.50 two days ago for no reason its tariff explains (unexplained_deduction).
- DM-17: 20.00 paid at the hall three hours ago; its top-up was cancelled, the meter being replaced
  (payment_without_topup: a refund is due).

Told once, however often the demo is created.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from flows import factories as f
from flows.emop.results import to_jsonable
from flows.emop.units import epoch2000_to_datetime
from flows.emulator.clock import SimClock
from flows.emulator.config import MeterConfig
from flows.emulator.model import MeterModel

DAYS = 3
EVERY = timedelta(hours=2, minutes=53)  # how often the worker read the meters
KEYPAD, EMERGENCY, FAULTY, CANCELLED = "DM-05", "DM-14", "DM-12", "DM-17"
CANCELLED_REFERENCE = "DEMO-TILL-0002"  # its payment says the story was told
# what happens to each meter: when (after the story's start) and how its balance moves for it
HAPPENINGS = {
    KEYPAD: [(timedelta(days=1, hours=4, minutes=17), "keypad token", Decimal("5"))],
    EMERGENCY: [(timedelta(days=2, hours=1, minutes=39), "emergency credit", Decimal("15"))],
    FAULTY: [(timedelta(days=1, hours=2, minutes=8), "deduction", Decimal("-1.5"))],
}


def create(conn: psycopg.Connection, esco: str, configs: dict[str, MeterConfig]) -> None:
    """The story, once: ``configs`` are the demo meters' emulator configurations by plot."""
    if conn.execute("SELECT EXISTS (SELECT FROM billing.payments WHERE esco = %s AND provider_reference = %s)",
                    (esco, CANCELLED_REFERENCE)).fetchone()[0]:
        return
    now = conn.execute("SELECT date_trunc('second', now())").fetchone()[0]  # the transaction's now: used_at
    homes = {plot: (str(meter), str(account)) for plot, meter, account in conn.execute(
        "SELECT p.plot, a.meter_id, a.id FROM billing.accounts a JOIN flows.properties p ON p.id = a.property"
        " WHERE a.esco = %s AND a.type = 'supply' AND a.status = 'open'", (esco,))}
    for plot, happenings in HAPPENINGS.items():
        meter, account = homes[plot]
        model, seen = _told(conn, meter, configs[plot], now - timedelta(seconds=30), happenings)
        if plot == EMERGENCY:
            _top_up_repaying_emergency_credit(conn, meter, account, model, seen)
    payment = f.record_payment(conn, homes[CANCELLED][1], 20, reference=CANCELLED_REFERENCE,
                               received_at=now - timedelta(hours=3), description="paid at the community hall")
    topup = conn.execute("SELECT id FROM billing.topups WHERE payment_id = %s", (payment,)).fetchone()[0]
    conn.execute("SELECT billing.cancel_topup(%s, %s)",
                 (topup, "the meter is being replaced: refund the payment to the customer"))


def _told(conn: psycopg.Connection, meter: str, config: MeterConfig, now: datetime,
          happenings: list[tuple[timedelta, str, Decimal]]) -> tuple[MeterModel, datetime]:
    """The meter's days up to ``now``, recorded as read; its model as of now, and its newest event recorded."""
    start = now - timedelta(days=DAYS)
    spent = _spent(config, start, now)
    clock = SimClock(0, start)
    model = MeterModel(config, clock, token_key=b"")  # its tokens are not needed: credit is applied as typed
    model.set_balance(model.config.balance + spent - sum(change for _, _, change in happenings))
    seen = _record(conn, meter, model, clock, start, tariffs=True)
    for when, what, change in sorted(happenings):
        seen = _read_until(conn, meter, model, clock, start + when, seen)
        if what == "keypad token":
            model.type_token(change)
        elif what == "emergency credit":
            if not model.take_emergency_credit():
                raise RuntimeError(f"{config.serial}: the balance was not low enough for emergency credit")
        else:
            model.inject_deduction(-change)
    return model, _read_until(conn, meter, model, clock, now, seen)


def _spent(config: MeterConfig, start: datetime, end: datetime) -> Decimal:
    """What the meter takes from its balance from start to end (energy and daily charges), nothing happening."""
    clock = SimClock(0, start)
    model = MeterModel(config, clock, token_key=b"")
    model.set_balance(Decimal(10000))
    clock.advance(end - start)
    return Decimal(10000) - model.balance


def _read_until(conn: psycopg.Connection, meter: str, model: MeterModel, clock: SimClock, until: datetime,
                seen: datetime) -> datetime:
    while clock.now() + EVERY < until:
        clock.advance(EVERY)
        seen = _record(conn, meter, model, clock, seen)
    clock.advance(until - clock.now())
    return _record(conn, meter, model, clock, seen)


def _record(conn: psycopg.Connection, meter: str, model: MeterModel, clock: SimClock, seen: datetime,
            tariffs: bool = False) -> datetime:
    """What a sync reads (balance, the tariff the first time, the event log since ``seen``), recorded at the
    simulated moment; the newest event recorded."""
    state = {"meter_id": meter, "observed_at": clock.now().isoformat(), "balance": str(model.balance)}
    if tariffs:
        state["tariffs_active"] = to_jsonable(model.tariff("active"))
    conn.execute("SELECT flows.record_meter_states(%s)", (Jsonb([state]),))
    events = [(epoch2000_to_datetime(ts), kind, number) for ts, kind, number in model.events]
    fresh = [e for e in events if e[0] > seen]
    if fresh:
        conn.execute("SELECT flows.record_meter_events(%s, %s::timestamptz[], %s::integer[], %s::integer[])",
                     (meter, [e[0] for e in fresh], [e[1] for e in fresh], [e[2] for e in fresh]))
        return max(e[0] for e in fresh)
    return seen


def _top_up_repaying_emergency_credit(conn: psycopg.Connection, meter: str, account: str, model: MeterModel,
                                      seen: datetime) -> None:
    """A cash payment of what the meter owes, its token pushed as the worker pushes it and the command finished
    with what the worker reads after it: counted, logged, but all of it repaid the emergency credit."""
    payment = f.record_payment(conn, account, 15, reference="DEMO-TILL-0003", description="paid at the community hall")
    command = conn.execute("SELECT command_id FROM billing.topups WHERE payment_id = %s", (payment,)).fetchone()[0]
    before, count = model.balance, model.transaction_count
    model.type_token(Decimal(15))  # credited as the meter credits any token
    f.finish_command(conn, str(command), {
        "amount": "15", "source": "payment", "balance_before": str(before), "balance_after": str(model.balance),
        "transactions_before": count, "transactions_after": model.transaction_count,
        "reconciled_after_restart": False})
    model.clock.advance(1)
    _record(conn, meter, model, model.clock, seen)

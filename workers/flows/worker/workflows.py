"""What each kind of command does on the meter, and what it records.

A workflow talks EMOP through a ``MeterClient`` (one session per meter, held
for the whole command) and returns an ``Outcome`` for
``flows.finish_meter_command_v1``: meter states, half hours, events, and the
result shown in the API. It raises to fail: ``Nak`` and ``WorkflowRefused`` are
final (the meter said no), everything else (``TariffReadBackDiffers`` among
them) is retried with backoff until the command's attempts are used up.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.emop.client import MeterClient
from flows.emop.errors import Nak
from flows.emop.messages import ProfileStatus
from flows.emop.results import to_jsonable
from flows.emop.values import THREE_PHASE_HARDWARE, TWIN_ELEMENT_HARDWARE
from flows.errors import FlowsError, Refused
from flows.vending import VendingAdapter
from flows.worker.outcome import Events, HalfHours, MeterIdentity, MeterState, Outcome
from flows.worker.queries import Command, Queries

HALF_HOUR = timedelta(minutes=30)


class WorkflowRefused(Refused):
    """A final failure decided by the workflow (e.g. a token the meter did not credit)."""


class TokenRefused(WorkflowRefused):
    """The meter refused the token itself (a NAK to the push, or it took it and credited nothing): a top-up's
    next round vends a new one (billing.token_failure_kind tells this from a meter that did not answer)."""


class TariffReadBackDiffers(FlowsError):
    """The meter took the tariff writes but reads back something else. Retried (the writes are repeated) until
    the command's attempts are used up; then the command fails with the differences named."""


@dataclass
class Context:
    command: Command
    meter: MeterClient
    queries: Queries
    vendor: VendingAdapter


def state(command: Command, **fields) -> MeterState:
    return MeterState(meter_id=command.meter_id, observed_at=datetime.now(UTC), **fields)


# -- sync ---------------------------------------------------------------------------------

@dataclass
class Reading:
    """What a sync gathers: meter state fields, and what else the outcome records."""

    hardware: str
    fields: dict = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)


async def sync(ctx: Context) -> Outcome:
    """Reads the metrics asked for (meter_metrics names). A metric the meter
    refuses (NAK) is reported and skipped; an unreachable meter fails the lot."""
    command, meter = ctx.command, ctx.meter
    metrics = command.parameters.get("metrics") or []
    read: dict[str, str] = {}
    refused: dict[str, str] = {}
    hardware = command.hardware
    identity = None
    if hardware is None or "hardware" in metrics:
        hardware = await meter.hardware()
        identity = MeterIdentity(hardware=hardware)
    reading = Reading(hardware, outcome=Outcome(meter=identity))
    three_phase = hardware in THREE_PHASE_HARDWARE
    for metric in metrics:
        if three_phase and metric in SINGLE_PHASE_ONLY:
            continue  # three-phase meters have no prepayment, tariffs or event log over EMOP
        reader = METRIC_READERS.get(metric)
        if reader is None:
            raise WorkflowRefused(f"unknown metric {metric}")
        try:
            await reader(ctx, reading)
            read[metric] = "ok"
        except Nak as nak:
            refused[metric] = str(nak)
    if metrics and not read and refused:
        raise WorkflowRefused(f"the meter refused every metric: {'; '.join(refused.values())}")
    outcome = reading.outcome
    if reading.fields:
        outcome.states = [state(command, **reading.fields)]
    outcome.result = {"metrics": read, "refused": refused, "state": to_jsonable(reading.fields)}
    return outcome


async def _read_reads(ctx: Context, reading: Reading) -> None:
    meter = ctx.meter
    if reading.hardware in THREE_PHASE_HARDWARE:
        totals = await meter.three_phase_read()
        reading.fields.update(import_a=totals.active_import, export_a=totals.active_export)
        return
    a = await meter.read_element_a()
    reading.fields.update(import_a=a.import_active, export_a=a.export_active)
    if reading.hardware in TWIN_ELEMENT_HARDWARE:
        b = await meter.read_element_b()
        reading.fields.update(import_b=b.import_active, export_b=b.export_active)


async def _read_prepay_balance(ctx: Context, reading: Reading) -> None:
    reading.fields["balance"] = await ctx.meter.prepay_balance()


async def _read_csq(ctx: Context, reading: Reading) -> None:
    reading.fields["csq"] = await ctx.meter.csq()


async def _read_voltage(ctx: Context, reading: Reading) -> None:
    if reading.hardware in THREE_PHASE_HARDWARE:
        l1, l2, l3 = await ctx.meter.three_phase_instantaneous_voltage()
        reading.fields.update(voltage_l1=l1, voltage_l2=l2, voltage_l3=l3)
    else:
        reading.fields["voltage"] = await ctx.meter.instantaneous_voltage()


async def _read_event_log(ctx: Context, reading: Reading) -> None:
    since = await ctx.queries.last_event_time(ctx.command.meter_id)
    events = await ctx.meter.event_log_since(since)
    if events:
        reading.outcome.events = Events(
            timestamps=[e.timestamp.isoformat() for e in events],
            event_types=[e.event_id for e in events],
            event_sets=[e.event_set for e in events],
        )


async def _read_firmware_version(ctx: Context, reading: Reading) -> None:
    identity = reading.outcome.meter or MeterIdentity()
    reading.outcome.meter = MeterIdentity(identity.hardware, await ctx.meter.firmware_version())


async def _read_hardware(ctx: Context, reading: Reading) -> None:
    pass  # read before the others (sync)


async def _read_clock_drift(ctx: Context, reading: Reading) -> None:
    before = datetime.now(UTC)
    meter_time = await ctx.meter.clock_time_read()
    server_time = before + (datetime.now(UTC) - before) / 2
    reading.fields["clock_time_diff_seconds"] = round((meter_time - server_time).total_seconds())


async def _read_tariffs_active(ctx: Context, reading: Reading) -> None:
    reading.fields["tariffs_active"] = (await ctx.meter.tariffs_active_read()).to_json()


async def _read_tariffs_future(ctx: Context, reading: Reading) -> None:
    future = await ctx.meter.tariffs_future_read()
    # a meter with no future tariff reports activation at epoch 2000: that is "none"
    pending = future.activation_datetime and future.activation_datetime > datetime(2001, 1, 1, tzinfo=UTC)
    reading.fields["tariffs_future"] = future.to_json() if pending else {}


# How each metric of flows.meter_metrics is read (tests/worker/test_contract.py: one reader per metric).
METRIC_READERS: dict[str, Callable[[Context, Reading], Awaitable[None]]] = {
    "reads": _read_reads,
    "prepay_balance": _read_prepay_balance,
    "csq": _read_csq,
    "voltage": _read_voltage,
    "event_log": _read_event_log,
    "firmware_version": _read_firmware_version,
    "hardware": _read_hardware,
    "clock_drift": _read_clock_drift,
    "tariffs_active": _read_tariffs_active,
    "tariffs_future": _read_tariffs_future,
}
SINGLE_PHASE_ONLY = {"prepay_balance", "event_log", "tariffs_active", "tariffs_future"}


# -- send_token ----------------------------------------------------------------------------

async def send_token(ctx: Context) -> Outcome:
    """Credits the meter once. The token (vended now if the request gave an
    amount) and the transaction count before the push are saved before the
    push, so an attempt after a crash can tell whether the token was credited
    (the count rose) and never sends it twice."""
    command, meter, queries = ctx.command, ctx.meter, ctx.queries
    progress = dict(command.progress)
    token = command.parameters.get("token") or progress.get("token")
    if token is None:
        vended = await ctx.vendor.vend(command.serial, Decimal(command.parameters["amount"]))
        token = vended.token
        progress.update(token=token, vendor=vended.vendor, vend_sequence=vended.sequence)
        await queries.note_progress(command, {"token": token, "vendor": vended.vendor,
                                              "vend_sequence": vended.sequence})
    count = await meter.monetary_info_transaction_count()
    balance = await meter.prepay_balance()
    if "count_before" in progress:  # an earlier attempt got as far as pushing
        if count > progress["count_before"]:
            return _credited(command, token, Decimal(progress["balance_before"]), balance,
                             progress["count_before"], count, reconciled=True)
    if command.attempt > command.max_attempts:
        raise WorkflowRefused(f"gave up after {command.max_attempts} attempts; the token was not credited "
                              f"(transaction count still {count})")
    await queries.note_progress(command, {"count_before": count, "balance_before": str(balance),
                                          "pushed_at": datetime.now(UTC).isoformat()})
    try:
        await meter.prepay_send_token(token)
    except Nak as nak:
        raise TokenRefused(f"the meter rejected the token ({nak})") from None
    count_after = await meter.monetary_info_transaction_count()
    balance_after = await meter.prepay_balance()
    if count_after <= count and balance_after <= balance:
        raise TokenRefused(f"the meter took the token but credited nothing (balance {balance} -> "
                              f"{balance_after} GBP)")
    return _credited(command, token, balance, balance_after, count, count_after, reconciled=False)


def _credited(command: Command, token: str, before: Decimal, after: Decimal, count_before: int,
              count_after: int, reconciled: bool) -> Outcome:
    return Outcome(
        states=[state(command, balance=after)],
        result={
            "token": token, "amount": command.parameters.get("amount"), "source": command.parameters.get("source"),
            "balance_before": before, "balance_after": after,
            "transactions_before": count_before, "transactions_after": count_after,
            "reconciled_after_restart": reconciled,
        },
    )


# -- set_future_tariff --------------------------------------------------------------------

async def set_future_tariff(ctx: Context) -> Outcome:
    """Writes the future tariff (the 11 writes, in simt-emlite's order), reads
    it back and compares every field: confirmed only if the meter holds it."""
    command, meter = ctx.command, ctx.meter
    wanted = command.parameters["tariff"]
    activation = datetime.fromisoformat(wanted["activation_datetime"])
    unit_rate = Decimal(str(wanted["unit_rate_element_a"]))
    try:
        await meter.tariffs_future_write(
            from_ts=activation,
            standing_charge=Decimal(str(wanted["standing_charge"])),
            unit_rate=unit_rate,
            unit_rate_b=Decimal(str(wanted.get("unit_rate_element_b", unit_rate))),
            emergency_credit=Decimal(str(wanted["prepayment_emergency_credit"])),
            ecredit_availability=Decimal(str(wanted["prepayment_ecredit_availability"])),
            debt_recovery_rate=Decimal(str(wanted["prepayment_debt_recovery_rate"])),
        )
    except Nak as nak:
        raise WorkflowRefused(f"the meter refused the tariff ({nak})") from None
    back = (await meter.tariffs_future_read()).to_json()
    expected = {**wanted, "unit_rate_element_b": wanted.get("unit_rate_element_b", wanted["unit_rate_element_a"])}
    differences = [
        f"{key}: wrote {expected[key]}, read {back.get(key)}"
        for key in expected
        if not _same(key, expected[key], back.get(key))
    ]
    if differences:
        raise TariffReadBackDiffers("read-back differs: " + "; ".join(differences))
    return Outcome(states=[state(command, tariffs_future=back)], result={"confirmed": True, "read_back": back})


def _same(key: str, wrote, read) -> bool:
    if read is None:
        return False
    if key == "activation_datetime":
        return datetime.fromisoformat(str(wrote)) == datetime.fromisoformat(str(read))
    return Decimal(str(wrote)) == Decimal(str(read))


# -- read_profile_log ---------------------------------------------------------------------

async def read_profile_log(ctx: Context) -> Outcome:
    """Reads profile log 1 (cumulative import at each half hour) over the range
    and records the energy of each half hour between two valid records."""
    command, meter = ctx.command, ctx.meter
    if command.three_phase:
        raise WorkflowRefused("three-phase meters keep no profile log 1")
    start = datetime.fromisoformat(command.parameters["from"])
    end = datetime.fromisoformat(command.parameters["to"])
    # a record holds the registers at the start of its half hour: the last half hour needs the record at `end`
    records = await meter.profile_log_1_range(start, end + HALF_HOUR)
    by_time = {r.timestamp: r for r in records if _valid(r)}
    columns: dict[str, list] = {"register_ids": [], "timestamps": [], "import_kwh": [], "export_kwh": []}
    counted = 0
    for moment, record in sorted(by_time.items()):
        following = by_time.get(moment + HALF_HOUR)
        if following is None or not start <= moment < end:
            continue
        for element, value_of in (("A", lambda r: r.import_a), ("B", lambda r: r.import_b)):
            register = command.registers.get(element) or (command.registers.get("SINGLE") if element == "A" else None)
            if register is None:
                continue
            kwh = value_of(following) - value_of(record)
            if kwh < 0:
                continue  # the register was reset: no energy can be told for this half hour
            reversed_ = register["direction_reversed"]
            columns["register_ids"].append(register["register_id"])
            columns["timestamps"].append(moment.isoformat())
            columns["import_kwh"].append(None if reversed_ else str(kwh))
            columns["export_kwh"].append(str(kwh) if reversed_ else None)
        counted += 1
    return Outcome(
        intervals=HalfHours(**columns, source="profile_log") if columns["register_ids"] else None,
        result={"half_hours": counted, "records": len(records)},
    )


def _valid(record) -> bool:
    return bool(record.status & ProfileStatus.VALID_DATA)


# -- set_clock ----------------------------------------------------------------------------

async def set_clock(ctx: Context) -> Outcome:
    before = datetime.now(UTC)
    meter_time = await ctx.meter.clock_time_read()
    drift = round((meter_time - before).total_seconds())
    written = await ctx.meter.clock_time_write()
    after = await ctx.meter.clock_time_read()
    drift_after = round((after - datetime.now(UTC)).total_seconds())
    return Outcome(
        states=[state(ctx.command, clock_time_diff_seconds=drift_after)],
        result={"drift_before_seconds": drift, "written": written.isoformat(), "drift_after_seconds": drift_after},
    )


WORKFLOWS: dict[str, Callable[[Context], Awaitable[Outcome]]] = {
    "sync": sync,
    "send_token": send_token,
    "set_future_tariff": set_future_tariff,
    "read_profile_log": read_profile_log,
    "set_clock": set_clock,
}

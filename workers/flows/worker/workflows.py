"""What each kind of command does on the meter, and what it records.

A workflow talks EMOP through a ``MeterClient`` (one session per meter, held
for the whole command) and returns an ``Outcome`` for
``flows.finish_meter_commands_v1``: meter states, half hours, events, and the
result shown in the API. Long work marks where it can resume
(``Context.checkpoint``: its progress and what it observed so far), so it
runs in steps that give the meter up to a top-up (``flows.worker.steps``); a
workflow resumed after such a step starts from ``Context.progress``. It raises
to fail: ``Nak`` and ``WorkflowRefused`` are final (the meter said no),
everything else (``TariffReadBackDiffers`` among them) is retried with backoff
until the command's attempts are used up.
"""

from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.emop import messages
from flows.emop.client import MeterClient
from flows.emop.errors import Nak
from flows.emop.messages import ProfileStatus
from flows.emop.objects import OBJECTS
from flows.emop.results import to_jsonable
from flows.emop.values import THREE_PHASE_HARDWARE, TWIN_ELEMENT_HARDWARE
from flows.errors import FlowsError, Refused
from flows.vending import VendingAdapter
from flows.worker.outcome import Events, HalfHours, MeterIdentity, MeterState, Outcome
from flows.worker.queries import Command, Queries
from flows.worker.steps import Steps

HALF_HOUR = timedelta(minutes=30)
# Three-phase interval profiles carry one value per channel; the channels are the totals' object ids.
ACTIVE_IMPORT = f"{OBJECTS['three_phase_total_active_import'].id:06X}"
ACTIVE_EXPORT = f"{OBJECTS['three_phase_total_active_export'].id:06X}"
INTERVAL_VALID = 0x0080  # second status byte, bit 7: valid_data (docs/emop-protocol.md §7.4)
VALID_DATA = int(ProfileStatus.VALID_DATA)  # a profile log record's status (compared as an int: cheaper)


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
    steps: Steps

    @property
    def progress(self) -> dict:
        """How far the command got: earlier attempts' progress and this one's checkpoints."""
        return self.steps.progress

    def checkpoint(self, progress: dict, observed: Outcome | None = None) -> None:
        """The workflow can resume from here (``Steps.checkpoint``)."""
        self.steps.checkpoint(progress, observed)


def state(command: Command, **fields) -> MeterState:
    return MeterState(meter_id=command.meter_id, observed_at=datetime.now(UTC), **fields)


# -- sync ---------------------------------------------------------------------------------

@dataclass
class Reading:
    """What one metric's reader gathers: meter state fields, and what else the outcome records."""

    hardware: str
    fields: dict = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)


async def sync(ctx: Context) -> Outcome:
    """Reads the metrics asked for (meter_metrics names). A metric the meter
    refuses (NAK) is reported and skipped; an unreachable meter fails the lot.
    Each metric read is a checkpoint: a sync resumed after a step reads only
    the metrics it has not read yet."""
    command, meter = ctx.command, ctx.meter
    metrics = command.parameters.get("metrics") or []
    read: dict[str, str] = dict(ctx.progress.get("metrics_read", {}))
    refused: dict[str, str] = dict(ctx.progress.get("metrics_refused", {}))
    seen: dict = dict(ctx.progress.get("state", {}))
    hardware = command.hardware
    if hardware is None or ("hardware" in metrics and "hardware" not in read):
        hardware = await meter.hardware()
        ctx.checkpoint({}, Outcome(meter=MeterIdentity(hardware=hardware)))
    three_phase = hardware in THREE_PHASE_HARDWARE
    for metric in metrics:
        if metric in read or metric in refused or (three_phase and metric in SINGLE_PHASE_ONLY):
            continue  # three-phase meters have no prepayment, tariffs or event log over EMOP
        reader = METRIC_READERS.get(metric)
        if reader is None:
            raise WorkflowRefused(f"unknown metric {metric}")
        reading = Reading(hardware)
        try:
            await reader(ctx, reading)
            read[metric] = "ok"
        except Nak as nak:
            refused[metric] = str(nak)
        if reading.fields:
            reading.outcome.states = [state(command, **reading.fields)]
        seen.update(to_jsonable(reading.fields))
        ctx.checkpoint({"metrics_read": read, "metrics_refused": refused, "state": seen}, reading.outcome)
    if metrics and not read and refused:
        raise WorkflowRefused(f"the meter refused every metric: {'; '.join(refused.values())}")
    return Outcome(result={"metrics": read, "refused": refused, "state": seen})


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
    """Entries since the last recorded, page by page (newest first); each page is a checkpoint, so a read
    resumed after a step goes on from the page it reached, since the same moment."""
    where = ctx.progress.get("event_log")
    if where is None:
        since = await ctx.queries.last_event_time(ctx.command.meter_id)
        where = {"since": since.isoformat() if since else None, "page": 0}
    since = datetime.fromisoformat(where["since"]) if where["since"] else None
    for index in range(where["page"], messages.EVENT_LOG_PAGES):
        page = await ctx.meter.event_log(index)
        fresh = [e for e in page if since is None or e.timestamp > since]
        last = len(fresh) < messages.EVENTS_PER_PAGE
        events = Events([e.timestamp.isoformat() for e in fresh], [e.event_id for e in fresh],
                        [e.event_set for e in fresh]) if fresh else None
        ctx.checkpoint({"event_log": {**where, "page": messages.EVENT_LOG_PAGES if last else index + 1}},
                       Outcome(events=events))
        if last:
            break


async def _read_firmware_version(ctx: Context, reading: Reading) -> None:
    reading.outcome.meter = MeterIdentity(firmware_version=await ctx.meter.firmware_version())


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
    (the count rose) and never sends it twice. A top-up goes first on its
    meter and never ends a step."""
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
    it back and compares every field: confirmed only if the meter holds it.
    Each write is a checkpoint: a rollout resumed after a step goes on with
    the next write (a retry after a failure writes them all again)."""
    command, meter = ctx.command, ctx.meter
    wanted = command.parameters["tariff"]
    unit_rate = Decimal(str(wanted["unit_rate_element_a"]))
    try:
        writes = await meter.tariffs_future_writes(
            from_ts=datetime.fromisoformat(wanted["activation_datetime"]),
            standing_charge=Decimal(str(wanted["standing_charge"])),
            unit_rate=unit_rate,
            unit_rate_b=Decimal(str(wanted.get("unit_rate_element_b", unit_rate))),
            emergency_credit=Decimal(str(wanted["prepayment_emergency_credit"])),
            ecredit_availability=Decimal(str(wanted["prepayment_ecredit_availability"])),
            debt_recovery_rate=Decimal(str(wanted["prepayment_debt_recovery_rate"])),
        )
        done = ctx.progress.get("writes_done", 0) if ctx.progress.get("writes_attempt") == command.attempt else 0
        for number, (name, value) in enumerate(writes[done:], start=done + 1):
            await meter.write_object(name, value)
            ctx.checkpoint({"writes_done": number, "writes_attempt": command.attempt})
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
    """Reads the meter's half-hour log over the range and records each half
    hour with source profile_log, page by page (each page a checkpoint: a
    backfill resumed after a step goes on from the page it reached). Single
    phase: profile log 1, cumulative import at each half hour, so a half hour's
    energy is the difference of two valid records. Three phase: the interval
    profile (format 0x14), energy per half hour as it is."""
    command = ctx.command
    start = datetime.fromisoformat(command.parameters["from"])
    end = datetime.fromisoformat(command.parameters["to"])
    cursor = datetime.fromisoformat(ctx.progress["cursor"]) if "cursor" in ctx.progress else start
    if command.three_phase:
        await _read_interval_profile(ctx, cursor, start, end)
    else:
        await _read_profile_log_1(ctx, cursor, start, end)
    return Outcome(result={"half_hours": ctx.progress.get("half_hours", 0), "records": ctx.progress.get("records", 0)})


async def _read_profile_log_1(ctx: Context, cursor: datetime, start: datetime, end: datetime) -> None:
    previous = _record_from(ctx.progress.get("last_record"))  # the record before the cursor (carried over)
    # a record holds the registers at the start of its half hour: the last half hour needs the record at `end`
    async with aclosing(ctx.meter.profile_log_1_pages(cursor, end + HALF_HOUR)) as pages:
        async for records, following in pages:
            rows, previous = profile_log_1_half_hours(records, previous, ctx.command.registers, start, end)
            _page_done(ctx, following, rows, len(records), _record_json(previous))


async def _read_interval_profile(ctx: Context, cursor: datetime, start: datetime, end: datetime) -> None:
    async with aclosing(ctx.meter.three_phase_interval_pages(cursor, end)) as pages:
        async for intervals, following in pages:
            _page_done(ctx, following, interval_profile_half_hours(intervals, ctx.command.registers),
                       len(intervals), None)


def profile_log_1_half_hours(records, previous, registers: dict, start: datetime,
                             end: datetime) -> tuple["HalfHourRows", messages.ProfileLog1Record | None]:
    """Half hours in [start, end) from profile log 1 records (in time order, after ``previous``): the energy
    of a half hour is the difference of its valid record and the next; returns them and the last valid
    record (the ``previous`` of the next page)."""
    rows = HalfHourRows()
    elements = [(register, attribute) for register, attribute in ((_register(registers, "A"), "import_a"),
                                                                 (_register(registers, "B"), "import_b"))
                if register is not None]
    for record in records:
        if not int(record.status) & VALID_DATA:
            continue
        if previous is not None and previous.timestamp + HALF_HOUR == record.timestamp \
                and start <= previous.timestamp < end:
            moment = previous.timestamp.isoformat()
            for register, attribute in elements:
                kwh = getattr(record, attribute) - getattr(previous, attribute)
                if kwh >= 0:  # below zero: the register was reset, no energy known
                    rows.add(register, moment, kwh)
            rows.counted += 1
        previous = record
    return rows, previous


def interval_profile_half_hours(intervals, registers: dict) -> "HalfHourRows":
    """Half hours from a three-phase interval profile: each valid interval's active import and export."""
    rows = HalfHourRows()
    register = _register(registers, "A")
    for interval in intervals:
        if not interval.status & INTERVAL_VALID or register is None:
            continue
        rows.add(register, interval.start.isoformat(), interval.values.get(ACTIVE_IMPORT, Decimal(0)),
                 interval.values.get(ACTIVE_EXPORT))
        rows.counted += 1
    return rows


@dataclass
class HalfHourRows:
    """Half hours of registers, as flows.record_interval_hh takes them."""

    register_ids: list = field(default_factory=list)
    timestamps: list = field(default_factory=list)
    import_kwh: list = field(default_factory=list)
    export_kwh: list = field(default_factory=list)
    counted: int = 0  # half hours (of the meter, whatever its registers)

    def add(self, register: dict, moment: str, imported: Decimal, exported: Decimal | None = None) -> None:
        """A half hour (ISO 8601) of the register; a register wired the other way round swaps import and export."""
        if register["direction_reversed"]:
            imported, exported = exported, imported
        self.register_ids.append(register["register_id"])
        self.timestamps.append(moment)
        self.import_kwh.append(None if imported is None else str(imported))
        self.export_kwh.append(None if exported is None else str(exported))

    def half_hours(self) -> HalfHours | None:
        if not self.register_ids:
            return None
        return HalfHours(self.register_ids, self.timestamps, self.import_kwh, self.export_kwh, source="profile_log")


def _page_done(ctx: Context, following: datetime, half_hours: HalfHourRows, records: int, last: dict | None) -> None:
    ctx.checkpoint({"cursor": following.isoformat(), "last_record": last,
                    "half_hours": ctx.progress.get("half_hours", 0) + half_hours.counted,
                    "records": ctx.progress.get("records", 0) + records},
                   Outcome(intervals=half_hours.half_hours()))


def _register(registers: dict, element: str) -> dict | None:
    """The register measuring an element: A (or SINGLE on single-register meters), B."""
    return registers.get(element) or (registers.get("SINGLE") if element == "A" else None)


def _record_json(record: messages.ProfileLog1Record | None) -> dict | None:
    if record is None:
        return None
    return {"timestamp": record.timestamp.isoformat(), "import_a": str(record.import_a),
            "import_b": str(record.import_b)}


def _record_from(saved: dict | None) -> messages.ProfileLog1Record | None:
    if not saved:
        return None
    return messages.ProfileLog1Record(datetime.fromisoformat(saved["timestamp"]), ProfileStatus.VALID_DATA,
                                      Decimal(saved["import_a"]), Decimal(saved["import_b"]))


# -- set_clock ----------------------------------------------------------------------------

async def set_clock(ctx: Context) -> Outcome:
    drift = ctx.progress.get("drift_before_seconds")
    if drift is None:
        before = datetime.now(UTC)
        drift = round((await ctx.meter.clock_time_read() - before).total_seconds())
        ctx.checkpoint({"drift_before_seconds": drift})
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
# Kinds of command no worker runs: an operator's emop CLI holds the meter itself (sql/schema/emop_sessions.sql).
NOT_RUN_BY_WORKERS = {"emop_session"}
# Kinds that never end a step (flows.command_priority puts them first on their meter).
UNSTEPPED = {"send_token"}
# Kinds whose steps record their progress as they go (weeks of profile log), not only when handed back.
RECORDED_STEPS = {"read_profile_log"}

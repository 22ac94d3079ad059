"""Async EMOP client: sessions, retries, pacing, and the meter operations by their production names.

    client = EmopClient(pacing=2.0)                      # one per process is enough
    meter = client.meter("EML2137580826", host="10.0.0.7", port=8080)
    balance = await meter.prepay_balance()               # Decimal GBP
    async with meter.session():                          # several operations, nobody in between
        top_up = await meter.prepay_top_up(token)

Rules every caller in the process shares (they live in a per-event-loop registry
keyed by host and port, not in the client object):

* one TCP session per meter at a time (an asyncio lock per meter); a session is
  re-entrant for the task holding it;
* at least ``pacing`` seconds between the end of one exchange with a meter and
  the start of the next (production: 2 s; tests and benchmarks: 0).

Each exchange opens a connection, sends one frame, reads one whole frame and
closes, as simt-emlite does. Transport failures and damaged frames are retried
(``attempts`` in all, exponential backoff with jitter); a NAK is not. Each
meter's slot also keeps how long an exchange takes (a moving average, pacing
included), which sizes the steps of long work (``MeterClient.exchange_seconds``),
and a meter handle may carry an ``after_exchange`` hook the worker uses to end
a step.
"""

import asyncio
import contextlib
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flows.emop import messages
from flows.emop.directory import DEFAULT_PORT
from flows.emop.errors import EmopError, MeterUnreachable, Nak, UnexpectedResponse
from flows.emop.frame import CLIENT_ADDRESS, CLIENT_CONTROL, FORMAT_DEFAULT, Frame, build_frame, parse_frame
from flows.emop.objects import ObjectDef, lookup, parse_object_id
from flows.emop.results import MeterRead, Tariff, ThreePhaseIntervalValues, ThreePhaseTotals, TopUp
from flows.emop.transport import RETRYABLE, exchange_once
from flows.emop.units import from_meter_local, money_to_raw, to_meter_local
from flows.emop.values import (
    SINGLE_PHASE_HARDWARE,
    THREE_PHASE_HARDWARE,
    TWIN_ELEMENT_HARDWARE,
    UNKNOWN_SINGLE_PHASE,
    Backlight,
    LoadSwitch,
    RegisterRead,
    ThreePhaseHardware,
    three_phase_divisor,
)
from flows.errors import FlowsError, Refused
from flows.log import get_logger

HALF_HOUR = timedelta(minutes=30)
THREE_PHASE_CHUNK = timedelta(hours=4)
UNIT_RATE_RANGE = (Decimal(0), Decimal(1))  # GBP per kWh (docs/data-model.md, "Tariff JSON")
STANDING_CHARGE_RANGE = (Decimal(0), Decimal(2))  # GBP per day
PREPAY_MINIMUM_BALANCE = Decimal(10)  # simt-emlite refuses to enable prepay below this

Trace = Callable[[str, str | None, bytes], None]


class TokenNotCredited(Refused):
    """The meter accepted the token frame but neither the balance nor the transaction count moved."""


class _Slot:
    """What every caller in the process shares about one meter."""

    __slots__ = ("lock", "owner", "last_end", "exchange_seconds")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.owner: asyncio.Task | None = None
        self.last_end = float("-inf")
        self.exchange_seconds: float | None = None  # moving average, pacing and retries included

    def measured(self, seconds: float) -> None:
        previous = self.exchange_seconds
        self.exchange_seconds = seconds if previous is None else previous + (seconds - previous) / 4


_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], _Slot]]" = (
    weakref.WeakKeyDictionary()
)


def _slot(host: str, port: int) -> _Slot:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = {}
    slot = slots.get((host, port))
    if slot is None:
        slot = slots[(host, port)] = _Slot()
    return slot


def hardware_name(text: str) -> str:
    """hardware_version text -> the registry name (C1.w, B1.w, EMA1.w, SINGLE_PHASE_UNKNOWN); '' -> ''."""
    cleaned = text.replace("\x00", "").strip()
    if not cleaned:
        return ""
    return SINGLE_PHASE_HARDWARE.get(cleaned, UNKNOWN_SINGLE_PHASE)


def firmware_text(raw: bytes) -> str:
    """4 ASCII digits -> d_dd_d ("3020" -> "3_02_0"); anything else -> lowercase hex."""
    if len(raw) == 4 and raw.isdigit():
        text = raw.decode("ascii")
        return f"{text[0]}_{text[1:3]}_{text[3]}"
    return raw.hex()


def _check_rate(name: str, value, low: Decimal, high: Decimal) -> Decimal:
    money_to_raw(value)  # refuses floats, negatives and more than 5 decimals
    value = Decimal(value)
    if not low <= value <= high:
        raise FlowsError(f"{name} {value} GBP is outside {low}-{high} GBP")
    return value


class EmopClient:
    """Settings shared by the meters it hands out; cheap, one per process is enough."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 10.0,
        pacing: float = 2.0,
        proxy: str | None = None,
        source_address: int = CLIENT_ADDRESS,
        sequence: int = CLIENT_CONTROL & 0x07,
        trace: Trace | None = None,
    ):
        if attempts < 1:
            raise FlowsError("attempts must be at least 1")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.pacing = pacing
        self.proxy = proxy
        self.source_address = source_address
        self.sequence = sequence
        self.trace = trace

    def meter(self, serial: str | None = None, *, host: str, port: int = DEFAULT_PORT) -> "MeterClient":
        return MeterClient(self, serial, host, port)

    def retry_delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: backoff, 2 x backoff, 4 x ... up to backoff_max, plus up to
        one backoff of jitter."""
        if self.backoff <= 0:
            return 0.0
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_max) + random.uniform(0, self.backoff)

    async def for_each(
        self,
        meters: Iterable["MeterClient"],
        operation: Callable[["MeterClient"], Awaitable],
        concurrency: int | None = None,
        progress: Callable[[], None] | None = None,
    ) -> list:
        """Run ``operation(meter)`` on many meters at once; each result or the error it raised, in order."""
        limit = asyncio.Semaphore(concurrency) if concurrency else contextlib.nullcontext()

        async def one(meter):
            async with limit:
                try:
                    return await operation(meter)
                except FlowsError as error:
                    return error
                finally:
                    if progress:
                        progress()

        return await asyncio.gather(*(one(m) for m in meters))


@dataclass(frozen=True, slots=True)
class _Echo:
    format: int
    object_id: int | None


class _Session:
    """``MeterClient.session()``: the meter's lock, taken unless the task holds it already. A plain class
    rather than a generator-based context manager: every exchange enters one."""

    __slots__ = ("meter", "slot", "owned")

    def __init__(self, meter: "MeterClient"):
        self.meter = meter
        self.slot = meter._slot()
        self.owned = False

    async def __aenter__(self) -> "MeterClient":
        slot = self.slot
        task = asyncio.current_task()
        if slot.owner is not task:
            await slot.lock.acquire()
            slot.owner = task
            self.owned = True
        return self.meter

    async def __aexit__(self, *exc) -> None:
        if self.owned:
            self.slot.owner = None
            self.slot.lock.release()


class MeterClient:
    """One meter: its exchanges and operations. Obtain it from ``EmopClient.meter``."""

    def __init__(self, client: EmopClient, serial: str | None, host: str, port: int):
        self.client = client
        self.serial = serial
        self.host = host
        self.port = port
        self.log = get_logger("flows.emop", serial=serial, host=host, port=port)
        self._hardware: str | None = None
        self.exchanges = 0  # answered exchanges this handle made
        self._slots: tuple[asyncio.AbstractEventLoop, _Slot] | None = None  # the shared slot, found once a loop
        # called after each answered exchange (the worker ends a step there); may raise to stop the operation
        self.after_exchange: Callable[[], Awaitable[None]] | None = None

    @property
    def exchange_seconds(self) -> float | None:
        """How long an exchange with this meter takes, pacing included (a moving average; None: none yet)."""
        return self._slot().exchange_seconds

    def _slot(self) -> _Slot:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, _slot(self.host, self.port))
        return self._slots[1]

    def __repr__(self) -> str:
        return f"MeterClient({self.serial!r}, {self.host}:{self.port})"

    # -- sessions and exchanges ------------------------------------------------------------

    def session(self) -> "_Session":
        """Hold this meter for the caller's task: no other session to it until the block ends
        (``async with meter.session(): ...``; re-entrant for the task holding it)."""
        return _Session(self)

    async def exchange(self, data: bytes, object_id: int | None = None) -> Frame:
        """Send one data field, return the reply frame (NAK raised as ``Nak``), with retries."""
        async with self.session():
            frame = await self._exchange(data, object_id)
        if self.after_exchange is not None:
            await self.after_exchange()
        return frame

    async def _exchange(self, data: bytes, object_id: int | None) -> Frame:
        client = self.client
        slot = self._slot()
        loop = asyncio.get_running_loop()
        request = build_frame(data, source_address=client.source_address, control=client.sequence)
        echo = _Echo(data[0], object_id)
        started = loop.time()
        attempt = 0
        while True:
            attempt += 1
            wait = slot.last_end + client.pacing - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if client.trace:
                    client.trace("request", self.serial, request)
                try:
                    raw = await exchange_once(self.host, self.port, request, client.timeout, client.proxy)
                finally:
                    slot.last_end = loop.time()
                if client.trace:
                    client.trace("response", self.serial, raw)
                frame = self._check(parse_frame(raw), echo)
            except RETRYABLE as error:
                if attempt < client.attempts:
                    self._log_retry(error, attempt, object_id)
                    await asyncio.sleep(client.retry_delay(attempt))
                    continue
                self._failed(error, attempt, object_id)
                raise
            except EmopError as error:
                self._failed(error, attempt, object_id)
                raise
            self.exchanges += 1
            slot.measured(loop.time() - started)
            return frame

    def _failed(self, error: EmopError | MeterUnreachable, attempt: int, object_id: int | None) -> None:
        error.attempts = attempt
        if self.serial and isinstance(error, MeterUnreachable) and self.serial not in str(error):
            error.args = (f"meter {self.serial}: {error.args[0]}",)
        self.log.info("exchange failed", object=_hex(object_id), attempts=attempt, error=str(error))

    def _check(self, frame: Frame, echo: _Echo) -> Frame:
        if frame.nak_code:
            raise Nak(frame.nak_code, echo.object_id, self.serial)
        if frame.sequence != self.client.sequence:
            raise UnexpectedResponse(f"reply carries sequence {frame.sequence}, not {self.client.sequence}")
        if frame.format != echo.format:
            raise UnexpectedResponse(f"reply has format {frame.format:02X}, not {echo.format:02X}")
        if echo.format == FORMAT_DEFAULT and echo.object_id is not None:
            echoed = int.from_bytes(frame.data[1:4], "big")
            if echoed != echo.object_id:
                raise UnexpectedResponse(f"reply is for object {echoed:06X}, not {echo.object_id:06X}")
        return frame

    def _log_retry(self, error: Exception, attempt: int, object_id: int | None) -> None:
        self.log.warning("retrying", object=_hex(object_id), attempt=attempt, error=f"{type(error).__name__}: {error}")

    # -- objects ---------------------------------------------------------------------------

    async def read_object(self, obj: str | int | ObjectDef):
        """Read a registered object and decode its payload to its typed value."""
        definition = obj if isinstance(obj, ObjectDef) else lookup(obj)
        frame = await self.exchange(messages.read_request(definition.id), definition.id)
        return definition.codec.decode(messages.parse_default(frame.data).payload)

    async def write_object(self, obj: str | int | ObjectDef, value) -> None:
        definition = obj if isinstance(obj, ObjectDef) else lookup(obj)
        payload = definition.codec.encode(value)
        await self.exchange(messages.write_request(definition.id, payload), definition.id)

    async def obis_read(self, obj: str | int) -> bytes:
        """Raw payload of any object id (name, hex or a.b.c triplet), registered or not."""
        object_id = obj if isinstance(obj, int) else parse_object_id(obj)
        frame = await self.exchange(messages.read_request(object_id), object_id)
        return messages.parse_default(frame.data).payload

    async def obis_write(self, obj: str | int, payload: bytes) -> None:
        object_id = obj if isinstance(obj, int) else parse_object_id(obj)
        await self.exchange(messages.write_request(object_id, payload), object_id)

    # -- identity, clock, radio ------------------------------------------------------------

    async def serial_read(self) -> str:
        return (await self.read_object("serial")).strip()

    async def hardware(self) -> str:
        """C1.w, B1.w, EMA1.w, SINGLE_PHASE_UNKNOWN, or P1.ax / P1.cx for three-phase meters (cached)."""
        if self._hardware is None:
            async with self.session():
                try:
                    name = hardware_name(await self.read_object("hardware_version"))
                except Nak as nak:
                    if nak.code != 5:
                        raise
                    name = ""
                if not name:
                    name = (await self.three_phase_hardware_configuration()).hardware
                self._hardware = name
        return self._hardware

    async def is_three_phase(self) -> bool:
        return await self.hardware() in THREE_PHASE_HARDWARE

    async def is_twin_element(self) -> bool:
        return await self.hardware() in TWIN_ELEMENT_HARDWARE

    async def firmware_version(self) -> str:
        return firmware_text(await self.read_object("firmware_version"))

    async def clock_time_read(self) -> datetime:
        return await self.read_object("time")

    async def clock_time_write(self, moment: datetime | None = None) -> datetime:
        """Set the meter clock (to now, UTC, unless given); returns the time written."""
        moment = (moment or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        await self.write_object("time", moment)
        return moment

    async def csq(self) -> int:
        return (await self.read_object("csq_net_op")).csq

    async def signal_quality(self):
        return await self.read_object("csq_net_op")

    # -- instantaneous values and registers ------------------------------------------------

    async def instantaneous_voltage(self) -> Decimal:
        """Volts (the meter sends 0.1 V units; simt-emlite returns them undivided)."""
        return await self.read_object("instantaneous_voltage")

    async def instantaneous_active_power(self, element: str | None = None) -> Decimal:
        """kW: the meter total, or element "A" / "B" import."""
        name = {
            None: "instantaneous_active_power",
            "A": "element_a_instantaneous_active_power_import",
            "B": "element_b_instantaneous_active_power_import",
        }[element]
        return await self.read_object(name)

    async def read_element_a(self) -> RegisterRead:
        return await self.read_object("read_element_a")

    async def read_element_b(self) -> RegisterRead:
        return await self.read_object("read_element_b")

    async def read(self) -> MeterRead:
        """All registers the hardware has: element A (+ B on twin element), or the three-phase totals."""
        async with self.session():
            hardware = await self.hardware()
            if hardware in THREE_PHASE_HARDWARE:
                return MeterRead(hardware, three_phase=await self.three_phase_read())
            element_a = await self.read_element_a()
            element_b = await self.read_element_b() if hardware in TWIN_ELEMENT_HARDWARE else None
            return MeterRead(hardware, element_a, element_b)

    # -- three phase -----------------------------------------------------------------------

    async def three_phase_serial(self) -> str:
        return (await self.read_object("three_phase_serial")).strip()

    async def three_phase_hardware_configuration(self) -> ThreePhaseHardware:
        return await self.read_object("three_phase_hardware_configuration")

    async def _three_phase_divisor(self) -> int:
        return three_phase_divisor(await self.hardware())

    async def three_phase_read(self) -> ThreePhaseTotals:
        """The six totals in k-units (/1000 on P1.ax, /10000 on P1.cx); a NAKed one is None."""
        names = ["active_import", "active_export", "reactive_import", "reactive_export"]
        names += ["apparent_import", "apparent_export"]
        async with self.session():
            divisor = await self._three_phase_divisor()
            values = {}
            for name in names:
                try:
                    values[name] = Decimal(await self.read_object(f"three_phase_total_{name}")) / divisor
                except Nak:
                    values[name] = None
        return ThreePhaseTotals(**values)

    async def three_phase_instantaneous_voltage(self) -> tuple[Decimal, Decimal, Decimal]:
        async with self.session():
            return tuple(
                [await self.read_object(f"three_phase_instantaneous_voltage_l{n}") for n in (1, 2, 3)]
            )

    async def three_phase_intervals(
        self, start: datetime, end: datetime, profile: int = 0
    ) -> list[ThreePhaseIntervalValues]:
        """Interval profile between start and end (at most 24 h), one request per 4 hours."""
        if end <= start or end - start > timedelta(hours=24):
            raise FlowsError("a three-phase interval range is between 0 and 24 hours long")
        out = []
        async with self.session():
            async for intervals, _ in self.three_phase_interval_pages(start, end, profile):
                out += intervals
        return out

    async def three_phase_interval_pages(
        self, start: datetime, end: datetime, profile: int = 0
    ) -> AsyncIterator[tuple[list[ThreePhaseIntervalValues], datetime]]:
        """The interval profile from start to end, one request (a page) per 4 hours: each page's intervals
        with start <= interval start < end, and where the next page starts. Any range length."""
        async with self.session():
            divisor = await self._three_phase_divisor()
            cursor = start
            while cursor < end:
                chunk_end = min(cursor + THREE_PHASE_CHUNK, end)
                frame = await self.exchange(messages.three_phase_intervals_request(cursor, chunk_end, profile))
                block = messages.parse_three_phase_intervals(frame.data)
                channels = [f"{c:06X}" for c in block.channel_ids]
                page = [
                    ThreePhaseIntervalValues(interval.start, interval.status, {
                        ch: Decimal(v) / divisor for ch, v in zip(channels, interval.values, strict=True)})
                    for interval in block.intervals if start <= interval.start < end
                ]
                yield page, chunk_end
                cursor = chunk_end

    # -- flags and settings ----------------------------------------------------------------

    async def backlight(self) -> Backlight | int:
        return await self.read_object("backlight")

    async def backlight_write(self, setting: Backlight | int) -> None:
        await self.write_object("backlight", setting)

    async def load_switch(self) -> LoadSwitch | int:
        return await self.read_object("load_switch")

    async def load_switch_write(self, setting: LoadSwitch | int) -> None:
        await self.write_object("load_switch", setting)

    async def daylight_savings_correction_enabled(self) -> bool:
        return await self.read_object("daylight_savings_correction_flag")

    async def daylight_savings_correction_enabled_write(self, enabled: bool) -> None:
        await self.write_object("daylight_savings_correction_flag", enabled)

    # -- prepayment ------------------------------------------------------------------------

    async def prepay_balance(self) -> Decimal:
        return await self.read_object("prepay_balance")

    async def prepay_enabled(self) -> bool:
        return await self.read_object("prepay_enabled_flag")

    async def prepay_enabled_write(self, enabled: bool, force: bool = False) -> None:
        """Switch prepay mode; turning it on refuses below 10 GBP of balance unless forced."""
        async with self.session():
            if enabled and not force:
                balance = await self.prepay_balance()
                if balance < PREPAY_MINIMUM_BALANCE:
                    raise FlowsError(
                        f"balance {balance} GBP is below {PREPAY_MINIMUM_BALANCE} GBP",
                        hint="top up first, or force it",
                    )
            await self.write_object("prepay_enabled_flag", enabled)

    async def prepay_send_token(self, token: str) -> None:
        """Write a 20-digit top-up token (a rejected token comes back as a NAK)."""
        await self.write_object("prepay_token_send", token)

    async def monetary_info_transaction_count(self) -> int:
        """Counter of credit transactions (zero-based per simt-emlite's help); rises by one per token."""
        return await self.read_object("monetary_info_transaction_count")

    async def monetary_info_transaction_details(self):
        return await self.read_object("monetary_info_transaction_details")

    async def prepay_top_up(self, token: str) -> TopUp:
        """Push a token and confirm it: transaction count and balance read before and after, one session."""
        async with self.session():
            count_before = await self.monetary_info_transaction_count()
            balance_before = await self.prepay_balance()
            await self.prepay_send_token(token)
            balance_after = await self.prepay_balance()
            count_after = await self.monetary_info_transaction_count()
        if count_after == count_before and balance_after <= balance_before:
            raise TokenNotCredited(
                f"meter {self.serial or self.host} took the token but credited nothing "
                f"(balance {balance_before} -> {balance_after} GBP)"
            )
        return TopUp(token, balance_before, balance_after, count_before, count_after)

    # -- tariffs ---------------------------------------------------------------------------

    async def tariffs_active_read(self) -> Tariff:
        async with self.session():
            r = self.read_object
            return Tariff(
                standing_charge=await r("tariff_active_standing_charge"),
                threshold_mask=await r("tariff_active_threshold_mask"),
                threshold_values=await r("tariff_active_threshold_values"),
                unit_rate_element_a=await r("tariff_active_price"),
                block_rate=await r("tariff_active_block_rate"),
                unit_rate_element_b=await r("tariff_active_element_b_price"),
                element_b_tou_rate=await r("tariff_active_element_b_tou_rate"),
                prepayment_emergency_credit=await r("tariff_active_prepayment_emergency_credit"),
                prepayment_ecredit_availability=await r("tariff_active_prepayment_ecredit_availability"),
                prepayment_debt_recovery_rate=await r("tariff_active_prepayment_debt_recovery_rate"),
            )

    async def tariffs_future_read(self, meter_local: bool | None = None) -> Tariff:
        """The pending tariff; the activation time is converted from UK wall clock when the meter uses it."""
        async with self.session():
            if meter_local is None:
                meter_local = await self.daylight_savings_correction_enabled()
            r = self.read_object
            activation = await r("tariff_future_activation_datetime")
            return Tariff(
                standing_charge=await r("tariff_future_standing_charge"),
                activation_datetime=from_meter_local(activation) if meter_local else activation,
                threshold_mask=await r("tariff_future_threshold_mask"),
                threshold_values=await r("tariff_future_threshold_values"),
                unit_rate_element_a=await r("tariff_future_block_8_rate_1"),
                unit_rate_element_b=await r("tariff_future_element_b_tou_rate_1"),
                prepayment_emergency_credit=await r("tariff_future_prepayment_emergency_credit"),
                prepayment_ecredit_availability=await r("tariff_future_prepayment_ecredit_availability"),
                prepayment_debt_recovery_rate=await r("tariff_future_prepayment_debt_recovery_rate"),
            )

    async def tariffs_future_write(self, **tariff) -> None:
        """Write a future tariff: the 11 writes of simt-emlite, in its order, in one session
        (arguments as for ``tariffs_future_writes``)."""
        async with self.session():
            for name, value in await self.tariffs_future_writes(**tariff):
                await self.write_object(name, value)

    async def tariffs_future_writes(
        self,
        *,
        from_ts: datetime,
        standing_charge,
        unit_rate,
        emergency_credit,
        ecredit_availability,
        debt_recovery_rate,
        unit_rate_b=None,
        meter_local: bool | None = None,
    ) -> list[tuple[str, object]]:
        """The 11 writes (object name, value) of a future tariff, in simt-emlite's order, checked; the
        activation time last. The worker makes them one by one, so a step may end between two.

        ``from_ts`` is an aware datetime; on meters that correct for daylight saving
        (read from the meter unless ``meter_local`` says) it is written as UK wall-clock time.
        """
        if from_ts.tzinfo is None:
            raise FlowsError("the activation time must be timezone-aware (e.g. 2025-04-01T00:00:00Z)")
        standing_charge = _check_rate("standing charge", standing_charge, *STANDING_CHARGE_RANGE)
        unit_rate = _check_rate("unit rate", unit_rate, *UNIT_RATE_RANGE)
        unit_rate_b = (
            unit_rate if unit_rate_b is None else _check_rate("unit rate B", unit_rate_b, *UNIT_RATE_RANGE)
        )
        for value in (emergency_credit, ecredit_availability, debt_recovery_rate):
            money_to_raw(value)
        if meter_local is None:
            meter_local = await self.daylight_savings_correction_enabled()
        activation = to_meter_local(from_ts) if meter_local else from_ts.astimezone(UTC)
        return [
            ("tariff_future_threshold_mask", (False,) * 8),
            ("tariff_future_threshold_values", (0,) * 7),
            ("tariff_future_tou_flag", 0),
            ("tariff_future_block_8_rate_1", unit_rate),
            ("tariff_future_element_b_tou_rate_1", unit_rate_b),
            ("tariff_future_prepayment_emergency_credit", Decimal(emergency_credit)),
            ("tariff_future_prepayment_ecredit_availability", Decimal(ecredit_availability)),
            ("tariff_future_prepayment_debt_recovery_rate", Decimal(debt_recovery_rate)),
            ("tariff_future_gas", Decimal(0)),
            ("tariff_future_standing_charge", standing_charge),
            ("tariff_future_activation_datetime", activation),
        ]

    # -- logs ------------------------------------------------------------------------------

    async def event_log(self, index: int = 0) -> list[messages.Event]:
        """Page ``index`` (0 newest .. 9) of ten events, newest first; empty slots (id 0) dropped."""
        frame = await self.exchange(messages.event_log_request(index), messages.EVENT_LOG_OBJECT)
        return [e for e in messages.parse_event_log(frame.data).events if e.event_id]

    async def event_log_since(self, since: datetime | None = None) -> list[messages.Event]:
        """Events newer than ``since`` (all ten pages at most), newest first."""
        found: list[messages.Event] = []
        async with self.session():
            for index in range(messages.EVENT_LOG_PAGES):
                page = await self.event_log(index)
                fresh = [e for e in page if since is None or e.timestamp > since]
                found += fresh
                if len(fresh) < messages.EVENTS_PER_PAGE:
                    break
        return found

    async def profile_log_1(self, timestamp: datetime) -> list[messages.ProfileLog1Record]:
        """Half-hourly import registers from ``timestamp`` on (the meter sends the next it has)."""
        frame = await self.exchange(messages.profile_log_request(1, timestamp))
        return messages.parse_profile_log(frame.data).records

    async def profile_log_2(
        self, timestamp: datetime, twin: bool | None = None
    ) -> list[messages.ProfileLog2Record]:
        """Export, reactive and voltage records; the record shape depends on twin element (from hardware)."""
        async with self.session():
            if twin is None:
                twin = await self.is_twin_element()
            frame = await self.exchange(messages.profile_log_request(2, timestamp))
        return messages.parse_profile_log(frame.data, twin=twin).records

    async def profile_log_1_range(
        self,
        start: datetime,
        end: datetime,
        progress: Callable[[float, float], None] | None = None,
    ) -> list[messages.ProfileLog1Record]:
        """Every profile log 1 record with start <= timestamp < end, in time order, in one session.

        Follows the records the meter returns (it skips ahead over gaps), so a
        range costs about one exchange per 2.5 hours of data. ``progress(done,
        total)`` is called in seconds of the range covered.
        """
        start = _half_hour_floor(start)
        total = (end - start).total_seconds()
        found: dict[datetime, messages.ProfileLog1Record] = {}
        async with self.session():
            async for records, cursor in self.profile_log_1_pages(start, end):
                found.update((r.timestamp, r) for r in records)
                if progress:
                    progress(min((cursor - start).total_seconds(), total), total)
        if progress:
            progress(total, total)
        return [found[t] for t in sorted(found)]

    async def profile_log_1_pages(
        self, start: datetime, end: datetime
    ) -> AsyncIterator[tuple[list[messages.ProfileLog1Record], datetime]]:
        """Profile log 1 from start (down to its half hour) to end, one exchange (a page) at a time: each
        page's records with start <= timestamp < end, and where the next page starts (the end when done)."""
        start = _half_hour_floor(start)
        cursor = start
        async with self.session():
            while cursor < end:
                records = await self.profile_log_1(cursor)
                page = [r for r in records if start <= r.timestamp < end]
                if not records or records[0].timestamp >= end:
                    yield page, end
                    return
                cursor = max(records[-1].timestamp + HALF_HOUR, cursor + HALF_HOUR)
                yield page, min(cursor, end)

    async def profile_log_1_day(self, day: date, progress=None) -> list[messages.ProfileLog1Record]:
        """The 48 half hours (UTC) of ``day``."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return await self.profile_log_1_range(start, start + timedelta(days=1), progress)


def _half_hour_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 30, second=0, microsecond=0)


def _hex(object_id: int | None) -> str | None:
    return None if object_id is None else f"{object_id:06X}"


__all__ = ["DEFAULT_PORT", "EmopClient", "MeterClient", "TokenNotCredited"]

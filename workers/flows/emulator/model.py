"""One emulated Emlite meter: its state, how time changes it, and how it answers EMOP requests.

State advances lazily: every request (and every state access from Python)
first brings the meter to the current simulated time, half hour by half hour:
registers grow with the load profile; in prepay mode the balance is charged as
docs/reconciliation.md ("The charging model") says, the model the shadow
prepay ledger (sql/schema/billing/reconciliation.sql) follows too: energy x the
unit rate of its element as it is used, the standing charge and debt recovery
once a day at UK midnight, emergency credit when the customer takes it (added
to the balance, repaid first from the next credit); the supply goes off when
credit runs out; a half-hourly profile record is kept at every half-hour
boundary and a daily snapshot event at midnight; a future tariff becomes active
at its activation time (meter-local UK time when the daylight-savings flag is set).

Money is kept in integer units of 1e-11 GBP (1e-6 of the wire's 0.00001 GBP), energy
in integer mWh, so nothing drifts and nothing is a float.
"""

import bisect
from dataclasses import dataclass
from decimal import Decimal

from flows.emop import messages
from flows.emop.errors import BadPayload, EmopError
from flows.emop.frame import (
    FORMAT_DEFAULT,
    FORMAT_EVENT_LOG,
    FORMAT_PROFILE_LOG_1,
    FORMAT_PROFILE_LOG_2,
    FORMAT_THREE_PHASE_INTERVALS,
    Frame,
    build_frame,
)
from flows.emop.objects import OBJECTS, by_id
from flows.emop.units import (
    UK,
    datetime_to_epoch2000,
    epoch2000_to_datetime,
    from_meter_local,
    money_from_raw,
    money_to_raw,
)
from flows.emop.values import RegisterRead, SignalQuality, ThreePhaseHardware
from flows.emulator.clock import SimClock
from flows.emulator.config import HARDWARE_TEXT, MeterConfig
from flows.emulator.load import HALF_HOUR, LoadProfile, unit_noise
from flows.vending.emulated import TokenRejected, decode_token

NANO = 1_000_000  # internal money units per wire unit (0.00001 GBP)
DAY = 86_400
LIVE_RECORDS_KEPT = 90 * 48  # profile log memory: 90 days of half hours
ELEMENTS = ("A", "B")

NAK_CRC = 1
NAK_FORMAT = 2
NAK_UNKNOWN_OBJECT = 5
NAK_SECURITY = 6
NAK_ADDRESS = 7

EVENT_POWER_UP, EVENT_POWER_DOWN, EVENT_DAILY_SNAPSHOT, EVENT_COVER = 33, 34, 38, 4
EVENT_CREDIT = 48  # a credit token applied (BILLING.md, "Reconciliation")
THREE_PHASE_CHANNELS = (0x010800, 0x020800, 0x030800, 0x040800)
SINGLE_PHASE_ONLY = {
    "hardware_version",
    "prepay_balance",
    "prepay_token_send",
    "prepay_enabled_flag",
    "prepay_no_debt_recovery_when_emergency_credit_flag",
    "prepay_no_standing_charge_when_power_fail_flag",
    "monetary_info_transaction_count",
    "monetary_info_transaction_details",
    "load_switch",
    "daylight_savings_correction_flag",
    "read_element_a",
    "read_element_b",
    "instantaneous_voltage",
    "element_a_instantaneous_active_power_import",
    "element_b_instantaneous_active_power_import",
}
THREE_PHASE_ONLY = {
    "three_phase_serial",
    "three_phase_hardware_configuration",
    "three_phase_instantaneous_voltage_l1",
    "three_phase_instantaneous_voltage_l2",
    "three_phase_instantaneous_voltage_l3",
    "three_phase_total_active_import",
    "three_phase_total_active_export",
    "three_phase_total_reactive_import",
    "three_phase_total_reactive_export",
    "three_phase_total_apparent_import",
    "three_phase_total_apparent_export",
}
# stored objects the meter lets a client write (besides the clock and the token)
WRITABLE_PREFIXES = ("tariff_future_", "tariff_time_switch_")
WRITABLE = {
    "daylight_savings_correction_flag",
    "prepay_enabled_flag",
    "prepay_no_debt_recovery_when_emergency_credit_flag",
    "prepay_no_standing_charge_when_power_fail_flag",
    "backlight",
    "load_switch",
}


@dataclass
class Reply:
    data: bytes
    nak: int = 0


class MeterModel:
    def __init__(self, config: MeterConfig, clock: SimClock, token_key: bytes):
        self.config = config
        self.serial = config.serial
        self.hardware = config.hardware
        self.kind = config.kind
        self.clock = clock
        self.token_key = token_key
        self.address = (
            int(config.serial[-6:]) % 0xFFFFFF if config.serial[-6:].isdigit() else config.seed % 0xFFFFFF
        )
        self.profile = LoadProfile(config.seed, config.load_scale, config.solar_kw, twin=self.kind == "twin")
        self.store: dict[int, bytes] = {}
        self._money: dict[str, tuple[bytes, int]] = {}  # _raw_money's decoded amounts, by the bytes they came from
        self._checked_activation: bytes | None = None  # a stored activation time with nothing left to do
        self._init_store()
        now = clock.seconds()
        self.created = now
        self.as_of = now
        a_import = int(config.import_kwh * 1_000_000)
        self.energy = {"A": [a_import, a_import // 20, a_import // 10, a_import // 50], "B": [0, 0, 0, 0]}
        if self.kind == "twin":
            self.energy["B"] = [a_import // 3, 0, a_import // 30, a_import // 150]
        self.energy_at_creation = {e: list(v) for e, v in self.energy.items()}
        self.balance_n = money_to_raw(config.balance, signed=True) * NANO
        self.debt_n = money_to_raw(config.debt) * NANO
        self.emergency_active = False
        self.emergency_owed_n = 0  # emergency credit taken and not yet repaid from a credit
        self.supply_on = True
        self.clock_offset = float(config.clock_offset_seconds)
        self.drift_base = now
        self.used_sequences: set[int] = set()
        self.transaction_count = 0
        self.last_payment = (0, 0)  # (epoch-2000 seconds, raw amount)
        self.rejected_tokens = 0
        self.applied_activation = 0
        self.live: list[tuple] = []  # profile records after creation: (hh, *register Wh, voltage, status)
        self._history: list[tuple] | None = None
        self.events: list[tuple[int, int, int]] = []  # newest first: (epoch-2000 seconds, id, set)
        self.event_sets: dict[int, int] = {}
        self._seed_events()

    # -- setup ----------------------------------------------------------------------------

    def _init_store(self) -> None:
        c = self.config
        put = self._put
        put("serial", c.serial.ljust(16))
        put("firmware_version", c.firmware.encode() if self.kind != "three" else b"\x01\x23")
        put("backlight", 0xFF if self.kind == "three" else 0x77)
        put("tariff_time_switch_element_a_or_single", bytes(80))
        put("tariff_time_switch_element_b", bytes(80))
        if self.kind == "three":
            put("three_phase_serial", c.serial.ljust(16))
            put(
                "three_phase_hardware_configuration",
                ThreePhaseHardware(c.hardware == "P1.ax", False, False, True, True, False, True, True),
            )
            return
        put("hardware_version", HARDWARE_TEXT[c.hardware])
        put("daylight_savings_correction_flag", c.daylight_savings_correction)
        put("prepay_enabled_flag", c.prepay_enabled)
        put("prepay_no_debt_recovery_when_emergency_credit_flag", False)
        put("prepay_no_standing_charge_when_power_fail_flag", True)
        put("load_switch", 0x66)
        t = {k: Decimal(v) for k, v in c.tariff.items()}
        for state in ("active", "future"):
            put(f"tariff_{state}_standing_charge", t["standing_charge"])
            put(f"tariff_{state}_threshold_mask", (state == "active",) + (False,) * 7)
            put(f"tariff_{state}_threshold_values", (0,) * 7)
            put(f"tariff_{state}_gas", Decimal(0))
            for name in ("emergency_credit", "ecredit_availability", "debt_recovery_rate"):
                put(f"tariff_{state}_prepayment_{name}", t[f"prepayment_{name}"])
            for block in range(1, 9):
                for rate in range(1, 9):
                    value = t["unit_rate_element_a"] if (block, rate) == (8, 1) else Decimal(0)
                    put(f"tariff_{state}_block_{block}_rate_{rate}", value)
            for n in range(1, 5):
                put(
                    f"tariff_{state}_element_b_tou_rate_{n}",
                    t["unit_rate_element_b"] if n == 1 else Decimal(0),
                )
        put("tariff_active_price", t["unit_rate_element_a"])
        put("tariff_active_element_b_price", t["unit_rate_element_b"])
        put("tariff_active_block_rate", 7)
        put("tariff_active_tou_rate", 0)
        put("tariff_active_price_index_current", 0)
        put("tariff_active_element_b_tou_rate", 0)
        put("tariff_active_element_b_price_index_current", 0)
        put("tariff_active_tou_flag", b"\x00")
        put("tariff_future_tou_flag", 0)
        put("tariff_future_activation_datetime", epoch2000_to_datetime(0))

    def _put(self, name: str, value) -> None:
        obj = OBJECTS[name]
        self.store[obj.id] = obj.codec.encode(value)

    def _get(self, name: str):
        obj = OBJECTS[name]
        return obj.codec.decode(self.store[obj.id])

    def _raw_money(self, name: str) -> int:
        """A stored amount in wire units; the tariff's are asked for on every request (time accrues), so the
        decoded value is kept until the stored bytes change."""
        raw = self.store[OBJECTS[name].id]
        cached = self._money.get(name)
        if cached is None or cached[0] is not raw:
            cached = self._money[name] = (raw, money_to_raw(self._get(name)))
        return cached[1]

    def _seed_events(self) -> None:
        """Event history for the past days: a daily snapshot at midnight, now and then a power cut. Nothing after
        the meter's creation: a power cut later on its first day would be logged before it happened."""
        first_day = int(self.created // DAY) - self.config.history_days
        for day in range(first_day + 1, int(self.created // DAY) + 1):
            self._event(day * DAY, EVENT_DAILY_SNAPSHOT)
            cut = day * DAY + 3600 * (1 + int(20 * unit_noise(self.config.seed, day, "outage-hour")))
            if unit_noise(self.config.seed, day, "outage") < 0.2 and cut + 120 <= self.created:
                self._event(cut, EVENT_POWER_DOWN)
                self._event(cut + 120, EVENT_POWER_UP)
        if unit_noise(self.config.seed, 0, "cover") < 0.1:
            self._event(int(self.created) - 3600, EVENT_COVER)

    def _event(self, seconds: int, event_id: int) -> None:
        self.event_sets[event_id] = self.event_sets.get(event_id, 0) % 255 + 1
        event = (int(seconds), event_id, self.event_sets[event_id])
        position = 0
        while position < len(self.events) and self.events[position][0] > event[0]:
            position += 1
        self.events.insert(position, event)
        del self.events[messages.EVENT_LOG_PAGES * messages.EVENTS_PER_PAGE :]

    # -- time ------------------------------------------------------------------------------

    def meter_seconds(self, sim_seconds: float | None = None) -> float:
        """The meter's own clock: simulated time + set offset + drift since it was last set."""
        s = self.clock.seconds() if sim_seconds is None else sim_seconds
        return s + self.clock_offset + (s - self.drift_base) * self.config.clock_drift_ppm / 1e6

    def advance(self) -> None:
        """Bring the meter up to the current simulated time."""
        now = self.clock.seconds()
        while self.as_of < now:
            hh = int(self.as_of // HALF_HOUR)
            boundary = (hh + 1) * HALF_HOUR
            step_end = min(boundary, now)
            self._accrue(hh, step_end - self.as_of)
            self.as_of = step_end
            if step_end == boundary:
                self._on_half_hour(hh + 1)
            self._maybe_activate_tariff()

    def _accrue(self, hh: int, seconds: float) -> None:
        a, b = self.profile.half_hour(hh)
        fraction = seconds / HALF_HOUR
        used = {"A": [int(v * fraction) for v in a], "B": [int(v * fraction) for v in b]}
        if not self.supply_on:
            used = {"A": [0, 0, 0, 0], "B": [0, 0, 0, 0]}
        for element in ELEMENTS:
            self.energy[element] = [x + y for x, y in zip(self.energy[element], used[element], strict=True)]
        if self.kind == "three" or not self._get("prepay_enabled_flag"):
            return
        cost = used["A"][0] * self._raw_money("tariff_active_price")
        cost += used["B"][0] * self._raw_money("tariff_active_element_b_price")
        self._debit(cost)

    def _daily_charges(self) -> None:
        """At UK midnight: the day's standing charge and debt recovery, at the tariff active then."""
        if self.kind == "three" or not self._get("prepay_enabled_flag"):
            return
        cost = self._raw_money("tariff_active_standing_charge") * NANO
        if self.debt_n > 0 and not (
            self.emergency_active and self._get("prepay_no_debt_recovery_when_emergency_credit_flag")
        ):
            recovered = min(self.debt_n, self._raw_money("tariff_active_prepayment_debt_recovery_rate") * NANO)
            self.debt_n -= recovered
            cost += recovered
        self._debit(cost)

    def _debit(self, cost: int) -> None:
        self.balance_n -= cost
        if self.config.takes_emergency_credit and self._emergency_offered():
            self._take_emergency_credit()
        if self.supply_on and self.balance_n <= 0:
            self.supply_on = False
            self._event(int(self.meter_seconds(self.as_of)), EVENT_POWER_DOWN)

    def _emergency_offered(self) -> bool:
        availability = self._raw_money("tariff_active_prepayment_ecredit_availability") * NANO
        return (not self.emergency_active and self._raw_money("tariff_active_prepayment_emergency_credit") > 0
                and self.balance_n < availability)

    def _take_emergency_credit(self) -> None:
        emergency = self._raw_money("tariff_active_prepayment_emergency_credit") * NANO
        self.balance_n += emergency
        self.emergency_owed_n += emergency
        self.emergency_active = True
        self._supply_back()

    def _supply_back(self) -> None:
        if not self.supply_on and self.balance_n > 0:
            self.supply_on = True
            self._event(int(self.meter_seconds()), EVENT_POWER_UP)

    def _on_half_hour(self, hh: int) -> None:
        if hh % 2 == 0 and _is_uk_midnight(hh * HALF_HOUR):
            self._maybe_activate_tariff()  # a tariff activating at midnight charges that day's standing charge
            self._daily_charges()
        self.live.append(self._record(hh))
        if len(self.live) > LIVE_RECORDS_KEPT:
            del self.live[: len(self.live) - LIVE_RECORDS_KEPT]
        if hh % 48 == 0:
            self._event(int(self.meter_seconds(hh * HALF_HOUR)), EVENT_DAILY_SNAPSHOT)

    _valid_status = int(messages.ProfileStatus.VALID_DATA)

    def _record(self, hh: int) -> tuple:
        wh = [v // 1000 for v in self.energy["A"]] + [v // 1000 for v in self.energy["B"]]
        return (hh, *wh, self.profile.voltage_decivolts(hh), self._valid_status)

    def _maybe_activate_tariff(self) -> None:
        if self.kind == "three":
            return
        stored = self.store[OBJECTS["tariff_future_activation_datetime"].id]
        if stored is self._checked_activation:
            return  # asked on every request; only a new activation time (or time passing it) can change the answer
        activation = datetime_to_epoch2000(self._get("tariff_future_activation_datetime"))
        if not activation or activation == self.applied_activation:
            self._checked_activation = stored  # none, or applied: nothing until another is written
            return
        when = epoch2000_to_datetime(activation)
        if self._get("daylight_savings_correction_flag"):
            when = from_meter_local(when)  # the meter reads the value as UK wall-clock time
        if self.meter_seconds(self.as_of) < datetime_to_epoch2000(when):
            return
        self._checked_activation = stored
        for suffix in (
            "standing_charge",
            "threshold_mask",
            "threshold_values",
            "gas",
            "prepayment_emergency_credit",
            "prepayment_ecredit_availability",
            "prepayment_debt_recovery_rate",
            *(f"block_{b}_rate_{r}" for b in range(1, 9) for r in range(1, 9)),
            *(f"element_b_tou_rate_{n}" for n in range(1, 5)),
        ):
            self.store[OBJECTS[f"tariff_active_{suffix}"].id] = self.store[
                OBJECTS[f"tariff_future_{suffix}"].id
            ]
        self._put("tariff_active_price", self._get("tariff_future_block_8_rate_1"))
        self._put("tariff_active_element_b_price", self._get("tariff_future_element_b_tou_rate_1"))
        self.applied_activation = activation

    # -- what tests and operators look at --------------------------------------------------

    @property
    def balance(self) -> Decimal:
        self.advance()
        return money_from_raw(self._balance_raw())

    def _balance_raw(self) -> int:
        return self.balance_n // NANO

    def set_balance(self, amount) -> None:
        self.advance()
        self.balance_n = money_to_raw(amount, signed=True) * NANO
        self.supply_on = True
        self.emergency_active = False
        self.emergency_owed_n = 0

    # -- what a customer or a fault does to the money (reconciliation tests) ---------------

    def take_emergency_credit(self) -> bool:
        """The customer presses the button: taken (True) when the balance is below the availability threshold."""
        self.advance()
        if self.kind == "three" or not self._get("prepay_enabled_flag") or not self._emergency_offered():
            return False
        self._take_emergency_credit()
        return True

    def type_token(self, amount) -> None:
        """A token typed on the keypad (vended outside Flows): credited like any token, counted, event 48."""
        self.advance()
        self._credit(money_to_raw(Decimal(str(amount))))

    def inject_deduction(self, amount) -> None:
        """A fault: the balance falls by ``amount`` for no reason the tariff explains (no event, no count)."""
        self.advance()
        self._debit(money_to_raw(Decimal(str(amount))) * NANO)

    def registers(self, element: str = "A") -> RegisterRead:
        self.advance()
        return RegisterRead(*(Decimal(v // 1000) / 1000 for v in self.energy[element]))

    def tariff(self, state: str = "active") -> dict:
        """The active or future tariff as tariff JSON values (docs/data-model.md; Decimal GBP)."""
        self.advance()
        names = {
            "standing_charge": f"tariff_{state}_standing_charge",
            "unit_rate_element_a": "tariff_active_price"
            if state == "active"
            else "tariff_future_block_8_rate_1",
            "unit_rate_element_b": "tariff_active_element_b_price"
            if state == "active"
            else "tariff_future_element_b_tou_rate_1",
            "prepayment_emergency_credit": f"tariff_{state}_prepayment_emergency_credit",
            "prepayment_ecredit_availability": f"tariff_{state}_prepayment_ecredit_availability",
            "prepayment_debt_recovery_rate": f"tariff_{state}_prepayment_debt_recovery_rate",
        }
        out = {key: self._get(name) for key, name in names.items()}
        if state == "future":
            out["activation_datetime"] = self._get("tariff_future_activation_datetime")
        return out

    def get_object(self, name: str):
        """The typed value of a stored object (e.g. "load_switch")."""
        self.advance()
        return self._get(name)

    # -- answering requests ----------------------------------------------------------------

    def respond(self, request: Frame) -> bytes:
        """The reply frame (wire bytes) to a well-formed request frame."""
        reply = self.answer(request)
        return build_frame(
            reply.data,
            destination_type=request.source_type,
            destination_address=request.source_address,
            source_type=0,
            source_address=self.address,
            control=request.sequence | reply.nak << 3,
        )

    def nak_reply(self, request: Frame, code: int) -> bytes:
        return build_frame(
            _nak_data(request.data),
            destination_type=request.source_type,
            destination_address=request.source_address,
            source_address=self.address,
            control=request.sequence | code << 3,
        )

    def answer(self, request: Frame) -> Reply:
        if request.destination_address not in (0, self.address):
            return Reply(_nak_data(request.data), NAK_ADDRESS)
        self.advance()
        try:
            fmt = request.format
            if fmt == FORMAT_DEFAULT:
                return self._default(request.data)
            if fmt == FORMAT_EVENT_LOG and self.kind != "three":
                return self._event_log(request.data)
            if fmt in (FORMAT_PROFILE_LOG_1, FORMAT_PROFILE_LOG_2) and self.kind != "three":
                return self._profile_log(request.data)
            if fmt == FORMAT_THREE_PHASE_INTERVALS and self.kind == "three":
                return self._three_phase_intervals(request.data)
            return Reply(
                _nak_data(request.data), NAK_UNKNOWN_OBJECT if fmt in (3, 4, 5, 0x14) else NAK_FORMAT
            )
        except EmopError:
            return Reply(_nak_data(request.data), NAK_FORMAT)

    def _default(self, data: bytes) -> Reply:
        message = messages.parse_default(data)
        echo = data[:5]
        try:
            name = by_id(message.object_id).name
        except EmopError:
            return Reply(echo, NAK_UNKNOWN_OBJECT)
        if self.kind == "three":
            tariff = name.startswith("tariff_") and not name.startswith("tariff_time_switch")
            if name in SINGLE_PHASE_ONLY or tariff:
                return Reply(echo, NAK_UNKNOWN_OBJECT)
        elif name in THREE_PHASE_ONLY:
            return Reply(echo, NAK_UNKNOWN_OBJECT)
        if message.read_write == messages.READ:
            payload = self._read(name)
            return Reply(echo, NAK_UNKNOWN_OBJECT) if payload is None else Reply(echo + payload)
        if message.read_write == messages.WRITE:
            return Reply(echo, self._write(name, message.payload))
        return Reply(echo, NAK_FORMAT)

    def _read(self, name: str) -> bytes | None:
        obj = OBJECTS[name]
        dynamic = getattr(self, f"_read_{name}", None)
        if dynamic is not None:
            value = dynamic()
            return value if isinstance(value, bytes) else obj.codec.encode(value)
        if name.startswith("three_phase_total_"):
            return self._three_phase_total(name.removeprefix("three_phase_total_"))
        return self.store.get(obj.id)

    def _write(self, name: str, payload: bytes) -> int:
        obj = OBJECTS[name]
        if name == "prepay_token_send":
            return self._token(payload)
        if name == "time":
            try:
                moment = obj.codec.decode(payload)
            except BadPayload:
                return NAK_FORMAT
            self.clock_offset = datetime_to_epoch2000(moment) - self.clock.seconds()
            self.drift_base = self.clock.seconds()
            return 0
        if obj.id not in self.store or not (name in WRITABLE or name.startswith(WRITABLE_PREFIXES)):
            return NAK_SECURITY
        size = obj.codec.size if obj.codec.size is not None else len(self.store[obj.id])
        if len(payload) != size:
            return NAK_FORMAT
        try:
            obj.codec.decode(payload)
        except BadPayload:
            return NAK_FORMAT
        self.store[obj.id] = bytes(payload)
        if name == "tariff_future_activation_datetime":
            self._maybe_activate_tariff()
        return 0

    def _token(self, payload: bytes) -> int:
        try:
            token = decode_token(self.token_key, self.serial, payload.decode("latin-1"))
        except TokenRejected:
            self.rejected_tokens += 1
            return NAK_SECURITY
        if token.sequence in self.used_sequences:
            self.rejected_tokens += 1
            return NAK_SECURITY
        self.used_sequences.add(token.sequence)
        self._credit(money_to_raw(token.amount))
        return 0

    def _credit(self, credit: int) -> None:
        """A credit token applied: emergency credit owed is repaid first; counted; event 48."""
        repaid = min(self.emergency_owed_n, credit * NANO)
        self.emergency_owed_n -= repaid
        self.balance_n += credit * NANO - repaid
        self.transaction_count += 1
        self.last_payment = (int(self.meter_seconds()), credit)
        self._event(int(self.meter_seconds()), EVENT_CREDIT)
        if self.emergency_active and self.emergency_owed_n == 0:
            self.emergency_active = False
        self._supply_back()

    # dynamic objects: _read_<object name>
    def _read_time(self):
        return epoch2000_to_datetime(int(self.meter_seconds()))

    def _read_csq_net_op(self):
        jitter = int(5 * unit_noise(self.config.seed, int(self.as_of // 600), "csq")) - 2
        return SignalQuality(max(0, min(31, self.config.csq + jitter)), 1 + self.config.seed % 2)

    def _read_instantaneous_voltage(self):
        return Decimal(self.profile.voltage_decivolts(int(self.as_of // 60))) / 10

    def _power(self, element: str) -> Decimal:
        if not self.supply_on:
            return Decimal(0)
        return Decimal(self.profile.power_w(int(self.as_of // HALF_HOUR), element)) / 1000

    def _read_instantaneous_active_power(self):
        return self._power("A") + self._power("B")

    def _read_element_a_instantaneous_active_power_import(self):
        return self._power("A")

    def _read_element_b_instantaneous_active_power_import(self):
        return self._power("B")

    def _read_read_element_a(self):
        return self.registers_now("A")

    def _read_read_element_b(self):
        return self.registers_now("B")

    def registers_now(self, element: str) -> RegisterRead:
        return RegisterRead(*(Decimal(v // 1000) / 1000 for v in self.energy[element]))

    def _read_prepay_balance(self):
        return money_from_raw(max(-(2**31), min(2**31 - 1, self._balance_raw())))

    def _read_monetary_info_transaction_count(self):
        return self.transaction_count

    def _read_monetary_info_transaction_details(self):
        seconds, raw = self.last_payment
        return bytes(8) + seconds.to_bytes(4, "little") + raw.to_bytes(4, "little", signed=True)

    def _read_three_phase_instantaneous_voltage_l1(self):
        return Decimal(self.profile.voltage_decivolts(int(self.as_of // 60))) / 10

    def _read_three_phase_instantaneous_voltage_l2(self):
        return Decimal(self.profile.voltage_decivolts(int(self.as_of // 60) + 7)) / 10

    def _read_three_phase_instantaneous_voltage_l3(self):
        return Decimal(self.profile.voltage_decivolts(int(self.as_of // 60) + 13)) / 10

    def _three_phase_units(self, mwh: int) -> int:
        """Three-phase registers count Wh on P1.ax, 0.1 Wh on P1.cx (read back /1000 and /10000)."""
        value = mwh * 3 // (1000 if self.hardware == "P1.ax" else 100)
        return value & 0xFFFF_FFFF

    def _three_phase_total(self, which: str) -> bytes:
        a = self.energy["A"]
        apparent = a[0] + a[2] // 2
        raw = {
            "active_import": a[0],
            "active_export": a[1],
            "reactive_import": a[2],
            "reactive_export": a[3],
            "apparent_import": apparent,
            "apparent_export": a[1],
        }[which]
        return self._three_phase_units(raw).to_bytes(4, "little")

    # -- logs ------------------------------------------------------------------------------

    def _event_log(self, data: bytes) -> Reply:
        index = messages.parse_event_log_request(data)
        if index >= messages.EVENT_LOG_PAGES:
            return Reply(data[:5], NAK_FORMAT)
        page = self.events[index * 10 : index * 10 + 10]
        events = [
            messages.Event(epoch2000_to_datetime(ts), event_id, event_set) for ts, event_id, event_set in page
        ]
        return Reply(messages.event_log_response(index, events))

    def history(self) -> list[tuple]:
        """Profile records before creation, recomputed backwards from the registers at creation."""
        if self._history is None:
            created_hh = int(self.created // HALF_HOUR)
            a_now, b_now = self.energy_at_creation["A"], self.energy_at_creation["B"]
            # back to the start of the half hour of creation
            a, b = self.profile.half_hour(created_hh)
            fraction = (self.created - created_hh * HALF_HOUR) / HALF_HOUR
            a_now = [x - int(y * fraction) for x, y in zip(a_now, a, strict=True)]
            b_now = [x - int(y * fraction) for x, y in zip(b_now, b, strict=True)]
            a0, a1, a2, a3 = a_now
            b0, b1, b2, b3 = b_now
            half_hour, valid = self.profile.half_hour, self._valid_status
            # the voltage of a past record is told when profile log 2 is read (a year of it costs half a second)
            records = [(created_hh, a0 // 1000, a1 // 1000, a2 // 1000, a3 // 1000, b0 // 1000, b1 // 1000,
                        b2 // 1000, b3 // 1000, None, valid)]
            append = records.append
            for hh in range(created_hh - 1, created_hh - self.config.history_days * 48 - 1, -1):
                (u0, u1, u2, u3), (v0, v1, v2, v3) = half_hour(hh)
                a0, a1, a2, a3 = max(0, a0 - u0), max(0, a1 - u1), max(0, a2 - u2), max(0, a3 - u3)
                b0, b1, b2, b3 = max(0, b0 - v0), max(0, b1 - v1), max(0, b2 - v2), max(0, b3 - v3)
                append((hh, a0 // 1000, a1 // 1000, a2 // 1000, a3 // 1000, b0 // 1000, b1 // 1000, b2 // 1000,
                        b3 // 1000, None, valid))
            records.reverse()
            self._history = records
        return self._history

    def profile_records(self, start_hh: int, count: int) -> list[tuple]:
        """``count`` records from the first at or after half hour ``start_hh`` (the meter skips gaps)."""
        history = self.history()
        position = bisect.bisect_left(history, (start_hh,))
        found = history[position : position + count]
        if len(found) < count:
            position = bisect.bisect_left(self.live, (start_hh,))
            found += self.live[position : position + count - len(found)]
        return found

    def profile_log_1(self, start_hh: int, count: int) -> list[messages.ProfileLog1Record]:
        """Profile log 1 as the meter keeps it: ``count`` records from the first at or after half hour
        ``start_hh`` (epoch 2000): cumulative import of elements A and B at the start of each half hour."""
        statuses: dict[int, messages.ProfileStatus] = {}
        return [messages.ProfileLog1Record(epoch2000_to_datetime(hh * HALF_HOUR),
                                           statuses.get(status) or statuses.setdefault(
                                               status, messages.ProfileStatus(status)),
                                           Decimal(ai) / 1000, Decimal(bi) / 1000)
                for hh, ai, _, _, _, bi, _, _, _, _, status in self.profile_records(start_hh, count)]

    def interval_profile(self, start_hh: int, count: int) -> list[messages.ThreePhaseInterval]:
        """The three-phase interval profile: the energy of ``count`` half hours from half hour ``start_hh`` on
        (active and reactive import and export, in the meter's units), each between two of its records."""
        records = self.profile_records(start_hh, count + 1)
        intervals = []
        for before, after in zip(records, records[1:], strict=False):
            used = [after[i] - before[i] for i in (1, 2, 3, 4)]  # A: import, export, reactive import/export (Wh)
            values = tuple(self._three_phase_units(v * 1000) for v in used)
            intervals.append(
                messages.ThreePhaseInterval(epoch2000_to_datetime(before[0] * HALF_HOUR), 0x0080, values)
            )
        return intervals

    def _profile_log(self, data: bytes) -> Reply:
        log, moment = messages.parse_profile_log_request(data)
        start_hh = -(-datetime_to_epoch2000(moment) // HALF_HOUR)
        twin = self.kind == "twin"
        count = messages.records_per_page(log, twin)
        if log == 1:
            return Reply(messages.profile_log_response(log, data[1:5], self.profile_log_1(start_hh, count)))
        records = []
        for hh, _, ae, ari, are, _, be, bri, bre, volts, status in self.profile_records(start_hh, count):
            kwh = [Decimal(v) / 1000 for v in (ae, ari, are, be, bri, bre)]
            b = tuple(kwh[3:]) if twin else (None, None, None)
            records.append(messages.ProfileLog2Record(epoch2000_to_datetime(hh * HALF_HOUR),
                                                      messages.ProfileStatus(status), *kwh[:3],
                                                      self.profile.voltage_decivolts(hh) if volts is None else volts,
                                                      *b))
        return Reply(messages.profile_log_response(log, data[1:5], records, twin=twin))

    def _three_phase_intervals(self, data: bytes) -> Reply:
        request = messages.parse_three_phase_intervals_request(data)
        start_hh = -(-datetime_to_epoch2000(request.start) // HALF_HOUR)
        end_hh = -(-datetime_to_epoch2000(request.end) // HALF_HOUR)
        intervals = self.interval_profile(start_hh, max(0, min(end_hh - start_hh, 8)))
        first = intervals[0].start if intervals else request.start
        block = messages.ThreePhaseBlock(1, True, 1, True, first, 30, THREE_PHASE_CHANNELS, intervals)
        return Reply(messages.three_phase_intervals_response(block))

    # -- persistence -----------------------------------------------------------------------

    def to_state(self) -> dict:
        self.advance()
        return {
            "hardware": self.hardware,
            "created": self.created,
            "as_of": self.as_of,
            "energy": self.energy,
            "energy_at_creation": self.energy_at_creation,
            "balance_n": self.balance_n,
            "debt_n": self.debt_n,
            "emergency_active": self.emergency_active,
            "emergency_owed_n": self.emergency_owed_n,
            "supply_on": self.supply_on,
            "clock_offset": self.clock_offset,
            "drift_base": self.drift_base,
            "used_sequences": sorted(self.used_sequences),
            "transaction_count": self.transaction_count,
            "last_payment": list(self.last_payment),
            "rejected_tokens": self.rejected_tokens,
            "applied_activation": self.applied_activation,
            "store": {f"{k:06X}": v.hex() for k, v in self.store.items()},
            "live": self.live,
            "events": self.events,
            "event_sets": {str(k): v for k, v in self.event_sets.items()},
        }

    def load_state(self, state: dict) -> None:
        if state.get("hardware") != self.hardware:
            return  # the config changed this meter's hardware: start it afresh
        self.created = state["created"]
        self.as_of = min(state["as_of"], self.clock.seconds())
        self.energy = {k: list(v) for k, v in state["energy"].items()}
        self.energy_at_creation = {k: list(v) for k, v in state["energy_at_creation"].items()}
        self.balance_n = state["balance_n"]
        self.debt_n = state["debt_n"]
        self.emergency_active = state["emergency_active"]
        self.emergency_owed_n = state.get("emergency_owed_n", 0)
        self.supply_on = state["supply_on"]
        self.clock_offset = state["clock_offset"]
        self.drift_base = state["drift_base"]
        self.used_sequences = set(state["used_sequences"])
        self.transaction_count = state["transaction_count"]
        self.last_payment = tuple(state["last_payment"])
        self.rejected_tokens = state.get("rejected_tokens", 0)
        self.applied_activation = state["applied_activation"]
        self.store.update({int(k, 16): bytes.fromhex(v) for k, v in state["store"].items()})
        self.live = [tuple(r) for r in state["live"]]
        self._history = None
        self.events = [tuple(e) for e in state["events"]]
        self.event_sets = {int(k): v for k, v in state["event_sets"].items()}


_midnights: dict[int, bool] = {}


def _is_uk_midnight(seconds: int) -> bool:
    """Whether an epoch-2000 moment (on a whole hour) is 00:00 in Europe/London."""
    known = _midnights.get(seconds)
    if known is None:
        local = epoch2000_to_datetime(seconds).astimezone(UK)
        known = _midnights[seconds] = local.hour == 0 and local.minute == 0
    return known


def _nak_data(data: bytes) -> bytes:
    """A NAK echoes the request's format and its next four bytes (object id and r/w flag)."""
    return bytes(data[:5]) if data else b"\x01"

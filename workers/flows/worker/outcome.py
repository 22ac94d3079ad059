"""What a command's workflow hands to ``flows.finish_meter_command_v1``, typed.

These mirror the SQL contract (the comment above finish_meter_command_v1 in
sql/schema/commands.sql, and the ``flows.meter_state`` type for states), so a
misspelt field fails in the workflow, not in the database;
tests/worker/test_contract.py holds the field names equal to the database's.
"""

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from flows.emop.results import to_jsonable


@dataclass(frozen=True)
class MeterState:
    """One observation of a meter (``flows.meter_state``); None: not observed."""

    meter_id: UUID
    observed_at: datetime
    balance: Decimal | None = None
    emergency_credit: Decimal | None = None
    csq: int | None = None
    voltage: Decimal | None = None
    voltage_l1: Decimal | None = None
    voltage_l2: Decimal | None = None
    voltage_l3: Decimal | None = None
    import_a: Decimal | None = None
    export_a: Decimal | None = None
    import_b: Decimal | None = None
    export_b: Decimal | None = None
    health: str | None = None
    health_details: str | None = None
    tariffs_active: dict | None = None
    tariffs_future: dict | None = None
    clock_time_diff_seconds: int | None = None
    backlight: str | None = None
    load_switch: str | None = None
    prepay_enabled: bool | None = None

    def to_json(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)} | {"meter_id": str(self.meter_id)}
        return {name: to_jsonable(value) for name, value in values.items() if value is not None}

    def updated(self, later: "MeterState") -> "MeterState":
        """This state with what a later observation of the same meter saw (its fields win), as of then."""
        seen = {f.name: getattr(later, f.name) for f in fields(later) if getattr(later, f.name) is not None}
        return replace(self, **seen)


@dataclass(frozen=True)
class HalfHours:
    """Energy per half hour for ``flows.record_interval_hh``: parallel lists, one entry a half hour and register."""

    register_ids: list[str]
    timestamps: list[str]  # ISO 8601 with offset
    import_kwh: list[str | None]  # decimal text; None: not measured
    export_kwh: list[str | None]
    source: str = "profile_log"

    def __add__(self, other: "HalfHours") -> "HalfHours":
        if other.source != self.source:
            raise ValueError(f"half hours from {self.source} and {other.source} are recorded apart")
        return HalfHours(self.register_ids + other.register_ids, self.timestamps + other.timestamps,
                         self.import_kwh + other.import_kwh, self.export_kwh + other.export_kwh, self.source)


@dataclass(frozen=True)
class Events:
    """Event-log entries for ``flows.record_meter_events``: parallel lists."""

    timestamps: list[str]
    event_types: list[int]
    event_sets: list[int]

    def __add__(self, other: "Events") -> "Events":
        return Events(self.timestamps + other.timestamps, self.event_types + other.event_types,
                      self.event_sets + other.event_sets)


@dataclass(frozen=True)
class MeterIdentity:
    """What the meter says it is; None: not read this time (the registry keeps its value)."""

    hardware: str | None = None
    firmware_version: str | None = None


@dataclass
class Outcome:
    """Everything a command records when it finishes, in one transaction."""

    states: list[MeterState] = field(default_factory=list)
    intervals: HalfHours | None = None
    events: Events | None = None
    meter: MeterIdentity | None = None
    result: dict = field(default_factory=dict)  # what /meter_commands shows as the command's result

    def extended(self, later: "Outcome") -> "Outcome":
        """This outcome and a later one of the same command: one state per meter (the later fields win), the
        half hours and events of both, the later identity and result."""
        states: dict = {}
        for observed in self.states + later.states:
            held = states.get(observed.meter_id)
            states[observed.meter_id] = observed if held is None else held.updated(observed)
        return Outcome(
            states=list(states.values()),
            intervals=_joined(self.intervals, later.intervals),
            events=_joined(self.events, later.events),
            meter=_identity(self.meter, later.meter),
            result=later.result or self.result,
        )

    @property
    def empty(self) -> bool:
        return not (self.states or self.intervals or self.events or self.meter or self.result)

    def to_json(self) -> dict:
        """The p_outcome object, with only the keys that hold something."""
        outcome: dict = {}
        if self.states:
            outcome["states"] = [s.to_json() for s in self.states]
        for name in ("intervals", "events", "meter"):
            part = getattr(self, name)
            if part is not None:
                outcome[name] = {k: v for k, v in asdict(part).items() if v is not None}
        outcome["result"] = to_jsonable(self.result)
        return outcome


def _joined(first, second):
    if first is None or second is None:
        return first if second is None else second
    return first + second


def _identity(first: MeterIdentity | None, second: MeterIdentity | None) -> MeterIdentity | None:
    if first is None or second is None:
        return first if second is None else second
    return MeterIdentity(second.hardware or first.hardware, second.firmware_version or first.firmware_version)

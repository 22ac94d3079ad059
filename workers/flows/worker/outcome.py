"""What a command's workflow hands to ``flows.finish_meter_command_v1``, typed.

These mirror the SQL contract (the comment above finish_meter_command_v1 in
sql/schema/commands.sql, and the ``flows.meter_state`` type for states), so a
misspelt field fails in the workflow, not in the database;
tests/worker/test_contract.py holds the field names equal to the database's.
"""

from dataclasses import asdict, dataclass, field, fields
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


@dataclass(frozen=True)
class HalfHours:
    """Energy per half hour for ``flows.record_interval_hh``: parallel lists, one entry a half hour and register."""

    register_ids: list[str]
    timestamps: list[str]  # ISO 8601 with offset
    import_kwh: list[str | None]  # decimal text; None: not measured
    export_kwh: list[str | None]
    source: str = "profile_log"


@dataclass(frozen=True)
class Events:
    """Event-log entries for ``flows.record_meter_events``: parallel lists."""

    timestamps: list[str]
    event_types: list[int]
    event_sets: list[int]


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

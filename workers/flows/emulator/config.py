"""What a fleet of emulated meters is made of, and the config file that describes it.

The config file is JSON (or TOML when its name ends in .toml); see
docs/emulator.md. Unknown keys are errors, so typos do not pass silently.
"""

import json
import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flows.emop.values import HARDWARE_KINDS, UNKNOWN_SINGLE_PHASE
from flows.emulator.faults import FaultPlan
from flows.emulator.load import unit_noise
from flows.errors import ConfigError

# What an emulated meter of each model behaves as (models: flows.emop.values.HARDWARE_KINDS).
HARDWARE = {
    kind.model: "three" if kind.phases == 3 else "twin" if kind.elements == 2 else "single"
    for kind in HARDWARE_KINDS.values() if kind.model != UNKNOWN_SINGLE_PHASE
}
HARDWARE_TEXT = {"C1.w": "6Cw ", "B1.w": "6Bw ", "EMA1.w": "3Aw "}

DEFAULT_TARIFF = {
    "standing_charge": "0.6975",
    "unit_rate_element_a": "0.23812",
    "unit_rate_element_b": "0.23812",
    "prepayment_emergency_credit": "15",
    "prepayment_ecredit_availability": "10",
    "prepayment_debt_recovery_rate": "0.25",
}


def _money(value, what: str) -> Decimal:
    if isinstance(value, float):
        raise ConfigError(f'{what}: write money as a string ("12.50"), not a float')
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{what}: {value!r} is not an amount") from None


@dataclass
class MeterConfig:
    serial: str
    hardware: str = "C1.w"
    port: int = 0
    balance: Decimal = Decimal("20")
    debt: Decimal = Decimal("0")
    prepay_enabled: bool = True
    daylight_savings_correction: bool = False
    tariff: dict = field(default_factory=lambda: dict(DEFAULT_TARIFF))
    solar_kw: float = 0.0
    load_scale: float | None = None  # None: 0.6-1.5 from the serial
    csq: int | None = None  # None: 8-28 from the serial
    clock_drift_ppm: float | None = None  # None: +-30 ppm from the serial
    clock_offset_seconds: float = 0.0
    history_days: int = 7
    latency: float | None = None  # seconds; None: the fleet's
    faults: FaultPlan = field(default_factory=FaultPlan)
    firmware: str = "3020"
    import_kwh: Decimal | None = None  # element A import register at start; None: from the serial
    # the customer presses the button as soon as emergency credit is offered (False: only take_emergency_credit())
    takes_emergency_credit: bool = False

    def __post_init__(self) -> None:
        if self.hardware not in HARDWARE:
            raise ConfigError(
                f"meter {self.serial}: unknown hardware {self.hardware!r}", hint=", ".join(HARDWARE)
            )
        if not (self.serial.isascii() and 1 <= len(self.serial) <= 16):
            raise ConfigError(f"serial {self.serial!r} must be 1-16 ASCII characters")
        tariff = dict(DEFAULT_TARIFF)
        for key, value in self.tariff.items():
            if key not in DEFAULT_TARIFF:
                raise ConfigError(
                    f"meter {self.serial}: unknown tariff key {key!r}", hint=", ".join(DEFAULT_TARIFF)
                )
            tariff[key] = str(_money(value, f"meter {self.serial} tariff {key}"))
        self.tariff = tariff
        self.balance = _money(self.balance, f"meter {self.serial} balance")
        self.debt = _money(self.debt, f"meter {self.serial} debt")
        seed = self.seed
        if self.load_scale is None:
            self.load_scale = round(0.6 + 0.9 * unit_noise(seed, 0, "scale"), 3)
        if self.csq is None:
            self.csq = 8 + int(20 * unit_noise(seed, 0, "csq"))
        if self.clock_drift_ppm is None:
            self.clock_drift_ppm = round(60 * unit_noise(seed, 0, "drift") - 30, 1)
        if self.import_kwh is None:
            self.import_kwh = Decimal(1000 + int(8000 * unit_noise(seed, 0, "reg")))

    @property
    def kind(self) -> str:
        return HARDWARE[self.hardware]

    @property
    def seed(self) -> int:
        return int.from_bytes(self.serial.encode()[-8:].rjust(8, b"\0"), "big")


@dataclass
class FleetConfig:
    meters: list[MeterConfig] = field(default_factory=list)
    host: str = "127.0.0.1"
    latency: float = 0.0
    time_factor: float = 1.0
    start: datetime | None = None
    state_file: Path | None = None
    vendor_secret: bytes | None = None  # the test vendor's master secret; `flows emulator` fills in the machine's

    @classmethod
    def generate(cls, count: int, base_port: int | None = None, hardware: str | None = None, **options):
        """``count`` meters EML2400000001.. on base_port, base_port+1, .. (or ephemeral ports)."""
        return cls(meters=generate_meters(count, base_port, hardware), **options)


def default_hardware(index: int) -> str:
    """The mix of a generated fleet: mostly twin element, some single element, a few three phase."""
    slot = index % 20
    if slot == 19:
        return "P1.ax"
    if slot in (4, 11, 16):
        return "B1.w"
    return "C1.w"


def generate_meters(count: int, base_port: int | None = None, hardware: str | None = None, first: int = 1):
    meters = []
    for i in range(count):
        serial = f"EML{2400000000 + first + i}"
        meters.append(
            MeterConfig(
                serial=serial,
                hardware=hardware or default_hardware(i),
                port=base_port + i if base_port else 0,
                solar_kw=3.0 if i % 3 == 2 else 0.0,
            )
        )
    return meters


_FLEET_KEYS = {
    "host",
    "latency_ms",
    "time_factor",
    "start",
    "state_file",
    "vendor_secret",
    "generate",
    "meters",
}
_METER_KEYS = {f.name for f in fields(MeterConfig)} - {"latency", "faults"} | {"latency_ms", "faults"}
_FAULT_KEYS = {"rates", "script", "nak_code", "seed"}


def load_config(path: Path) -> FleetConfig:
    """Read a fleet config file (JSON, or TOML by extension)."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"no emulator config at {path}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    return config_from_dict(raw, base=path.parent)


def config_from_dict(raw: dict, base: Path = Path(".")) -> FleetConfig:
    _only(raw, _FLEET_KEYS, "the emulator config")
    config = FleetConfig(
        host=raw.get("host", "127.0.0.1"),
        latency=float(raw.get("latency_ms", 0)) / 1000,
        time_factor=float(raw.get("time_factor", 1)),
    )
    if "start" in raw:
        config.start = datetime.fromisoformat(str(raw["start"]).replace("Z", "+00:00"))
        if config.start.tzinfo is None:
            raise ConfigError("start must carry a timezone, e.g. 2025-01-01T00:00:00Z")
    if raw.get("state_file"):
        config.state_file = (base / raw["state_file"]).resolve()
    if raw.get("vendor_secret"):
        config.vendor_secret = str(raw["vendor_secret"]).encode()
    if "generate" in raw:
        gen = dict(raw["generate"])
        _only(gen, {"count", "base_port", "hardware"}, "generate")
        config.meters += generate_meters(int(gen["count"]), gen.get("base_port"), gen.get("hardware"))
    for i, entry in enumerate(raw.get("meters", [])):
        if "serial" not in entry:
            raise ConfigError(f"meter #{i + 1} in the config has no serial")
        _only(entry, _METER_KEYS, f"meter {entry['serial']}")
        entry = dict(entry)
        if "latency_ms" in entry:
            entry["latency"] = float(entry.pop("latency_ms")) / 1000
        if "faults" in entry:
            faults = dict(entry["faults"])
            _only(faults, _FAULT_KEYS, f"meter {entry['serial']} faults")
            try:
                entry["faults"] = FaultPlan(**faults)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"meter {entry['serial']} faults: {error}") from None
        for key in ("import_kwh",):
            if key in entry:
                entry[key] = _money(entry[key], f"meter {entry['serial']} {key}")
        config.meters.append(MeterConfig(**entry))
    serials = [m.serial for m in config.meters]
    if len(set(serials)) != len(serials):
        raise ConfigError("the emulator config lists a serial twice")
    ports = [m.port for m in config.meters if m.port]
    if len(set(ports)) != len(ports):
        raise ConfigError("the emulator config uses a port twice")
    return config


def _only(raw: dict, allowed: set, where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
            hint=f"known: {', '.join(sorted(allowed))}",
        )

"""`emop`: talk to one meter (or many) over EMOP, by the production command names.

    emop csq EML2137580826 --host 10.0.0.7        # serial positional ...
    emop -s EML2137580826 --host 10.0.0.7 csq     # ... or -s before the command
    emop prepay_balance EML2400000001 --host 127.0.0.1 --port 9001 --json

With a database configured (FLOWS_DATABASE_URL, or the embedded stack), an
operation on a registered meter runs under the platform's per-meter lease
(flows.db.emop_sessions): it waits, showing what holds the meter, until no
worker is talking to it, so the meter never sees two sessions. ``--direct``
talks to the meter without the platform.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 meter
unreachable (after retries), 4 meter refused (NAK).
"""

import contextlib
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flows import event_loop
from flows.cli.common import FlowsGroup, emit, json_option, settings
from flows.db.emop_sessions import EmopSessions, Waiting
from flows.db.meters import address_from_database
from flows.emop.client import EmopClient, MeterClient
from flows.emop.directory import MeterAddress, register_resolver, resolve
from flows.emop.results import to_jsonable
from flows.emop.values import Backlight, LoadSwitch
from flows.errors import ConfigError, FlowsError
from flows.log import configure as configure_logging

stderr = Console(stderr=True)


@dataclass
class EmopOptions:
    serial: str | None
    host: str | None
    port: int | None
    as_json: bool
    timeout: float
    attempts: int
    pacing: float
    proxy: str | None
    direct: bool

    def client(self) -> EmopClient:
        return EmopClient(
            timeout=self.timeout, attempts=self.attempts, pacing=self.pacing, proxy=self.proxy, backoff=1.0
        )

    def sessions(self, direct: bool = False) -> EmopSessions | None:
        """The platform's leases, unless --direct or no database is configured."""
        if direct or self.direct:
            return None
        configured = settings()
        return EmopSessions(configured.database_url) if configured.has_database else None


class EmopGroup(FlowsGroup):
    """Accepts command names with dashes as well as the production underscores."""

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or super().get_command(ctx, name.replace("-", "_"))


@click.group(cls=EmopGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--serial", default=None, help="Meter serial (or give it after the command).")
@click.option("--host", envvar="EMOP_HOST", default=None, help="Meter address (direct access).")
@click.option("--port", envvar="EMOP_PORT", type=int, default=None, help="Meter TCP port (default 8080).")
@json_option
@click.option(
    "--timeout",
    envvar="EMOP_TIMEOUT",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds per attempt.",
)
@click.option("--attempts", envvar="EMOP_ATTEMPTS", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--pacing",
    envvar="EMOP_PACING",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between exchanges with one meter (real meters need ~2).",
)
@click.option("--proxy", envvar="FLOWS_SOCKS_PROXY", default=None, help="socks5://user:pass@host:port")
@click.option("--direct", is_flag=True,
              help="Talk to the meter without the platform's lease (a meter no Flows worker serves).")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default) or ERROR.")
@click.pass_context
def cli(ctx, serial, host, port, as_json, timeout, attempts, pacing, proxy, direct, log_level):
    """EMOP commands for Emlite meters (and the Flows meter emulator)."""
    configure_logging(log_level or "WARNING")
    ctx.obj = EmopOptions(serial, host, port, as_json, timeout, attempts, pacing, proxy, direct)


def _address_in_database(serial: str) -> MeterAddress | None:
    """Without --host: the meter's address in the configured database, if there is one."""
    configured = settings()
    return address_from_database(configured.database_url, serial) if configured.has_database else None


register_resolver(_address_in_database)


def _target(emop: EmopOptions, serial, serial_opt, host, port) -> MeterAddress:
    return resolve(serial or serial_opt or emop.serial, host or emop.host, port or emop.port)


def meter_command(name: str, label: str | None = None, human=None):
    """A command on one meter: [SERIAL] -s/--host/--port/--json/--direct, then ``fn(meter, **options)``, under
    the platform's lease when a database is configured (``--direct``: without)."""

    def decorate(fn):
        @cli.command(name, help=fn.__doc__)
        @click.argument("serial", required=False)
        @click.option("-s", "--serial", "serial_opt", default=None, help="Meter serial.")
        @click.option("--host", default=None, help="Meter address.")
        @click.option("--port", type=int, default=None, help="Meter TCP port.")
        @click.option("--direct", is_flag=True, help="Without the platform's lease.")
        @json_option
        @click.pass_obj
        @functools.wraps(fn)
        def command(emop: EmopOptions, serial, serial_opt, host, port, direct, as_json, **options):
            target = _target(emop, serial, serial_opt, host, port)
            meter = emop.client().meter(target.serial, host=target.host, port=target.port)
            result = event_loop.run(_leased(emop.sessions(direct), target.serial, name, fn(meter, **options)))
            key = label or name
            document = {"serial": target.serial, key: to_jsonable(result)}
            emit(document, as_json or emop.as_json, lambda doc: (human or _show)(doc[key]))

        return command

    return decorate


async def _leased(sessions: EmopSessions | None, serial: str | None, operation: str, work):
    """``work`` under the meter's lease (waiting, with its progress on stderr, while a worker holds the meter)."""
    if sessions is None or serial is None:
        return await work
    with _Waiting() as waiting:
        async with sessions, sessions.hold(serial, operation, on_wait=waiting.show):
            waiting.done()
            return await work


class _Waiting:
    """What the operator sees while the meter is busy: a spinner on a terminal, else one line per change."""

    def __init__(self):
        self.status = None
        self.last = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()

    def show(self, waiting: Waiting) -> None:
        text = waiting.describe()
        if stderr.is_terminal:
            if self.status is None:
                self.status = stderr.status(text)
                self.status.start()
            else:
                self.status.update(text)
        elif waiting.kind != self.last:
            click.echo(text, err=True)
        self.last = waiting.kind

    def done(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _show(value) -> None:
    if isinstance(value, dict):
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            click.echo(f"{key:<{width}}  {_flat(item)}")
    elif isinstance(value, list):
        for item in value:
            _show(item) if not isinstance(item, dict) else click.echo(_flat(item))
    else:
        click.echo(_flat(value))


def _flat(value) -> str:
    if isinstance(value, dict):
        return "  ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_flat(v) for v in value)
    return "" if value is None else str(value)


def _units(unit: str):
    return lambda value: click.echo(f"{value} {unit}")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(text: str | None, name: str) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except ArithmeticError:
        raise click.BadParameter(f"{text!r} is not an amount", param_hint=name) from None


class _Bar:
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, description: str, total: float):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        )
        self.task = self.progress.add_task(description, total=total)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, done: float, total: float | None = None) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def advance(self) -> None:
        self.progress.advance(self.task)


# -- identity, clock, radio ------------------------------------------------------------------


@meter_command("csq")
async def csq(meter: MeterClient):
    """Cellular signal quality (0-31)."""
    return await meter.csq()


@meter_command("serial_read")
async def serial_read(meter: MeterClient):
    """The serial number the meter reports."""
    return await meter.serial_read()


@meter_command("hardware")
async def hardware(meter: MeterClient):
    """Hardware model: C1.w (twin element), B1.w, EMA1.w, P1.ax / P1.cx (three phase)."""
    return await meter.hardware()


@meter_command("firmware_version")
async def firmware_version(meter: MeterClient):
    """Firmware version, as 3_02_0 (hex for three-phase meters)."""
    return await meter.firmware_version()


@meter_command("clock_time_read")
async def clock_time_read(meter: MeterClient):
    """The meter clock (UTC)."""
    return await meter.clock_time_read()


@meter_command("clock_time_write")
@click.option(
    "--time",
    "moment",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Time to set (UTC unless an offset is given); default now.",
)
async def clock_time_write(meter: MeterClient, moment):
    """Set the meter clock (to now unless --time); prints the time written."""
    return await meter.clock_time_write(_aware(moment) if moment else None)


@meter_command("instantaneous_voltage", human=_units("V"))
async def instantaneous_voltage(meter: MeterClient):
    """Supply voltage in volts."""
    return await meter.instantaneous_voltage()


@meter_command("instantaneous_active_power", human=_units("kW"))
@click.option("--element", type=click.Choice(["A", "B"]), default=None)
async def instantaneous_active_power(meter: MeterClient, element):
    """Active power in kW (the meter, or element A / B)."""
    return await meter.instantaneous_active_power(element)


# -- registers -------------------------------------------------------------------------------


@meter_command("read")
async def read(meter: MeterClient):
    """All registers (kWh): element A, element B on twin-element meters, or the three-phase totals."""
    return await meter.read()


@meter_command("read_element_a")
async def read_element_a(meter: MeterClient):
    """Element A totals: import/export active (kWh), import/export reactive (kvarh)."""
    return await meter.read_element_a()


@meter_command("read_element_b")
async def read_element_b(meter: MeterClient):
    """Element B totals (twin-element meters)."""
    return await meter.read_element_b()


@meter_command("three_phase_read")
async def three_phase_read(meter: MeterClient):
    """Three-phase totals (kWh, kvarh, kVAh)."""
    return await meter.three_phase_read()


@meter_command("three_phase_instantaneous_voltage")
async def three_phase_instantaneous_voltage(meter: MeterClient):
    """Voltages of L1, L2, L3 in volts."""
    return list(await meter.three_phase_instantaneous_voltage())


@meter_command("three_phase_hardware_configuration")
async def three_phase_hardware_configuration(meter: MeterClient):
    """Three-phase hardware configuration (meter type and fitted options)."""
    return await meter.three_phase_hardware_configuration()


@meter_command("three_phase_serial")
async def three_phase_serial(meter: MeterClient):
    """Serial of a three-phase meter."""
    return await meter.three_phase_serial()


@meter_command("three_phase_intervals")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="A UTC day (00:00-24:00).")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M"]), default=None)
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M"]), default=None)
async def three_phase_intervals(meter: MeterClient, day, start, end):
    """Three-phase interval profile for a day or a range of at most 24 hours."""
    start, end = _range(day, start, end)
    return await meter.three_phase_intervals(start, end)


# -- prepayment ------------------------------------------------------------------------------


@meter_command("prepay_balance", human=_units("GBP"))
async def prepay_balance(meter: MeterClient):
    """Prepay balance in GBP (negative while on emergency credit)."""
    return await meter.prepay_balance()


@meter_command("prepay_send_token")
@click.argument("token")
async def prepay_send_token(meter: MeterClient, token: str):
    """Push a 20-digit top-up TOKEN and confirm it (balance and transaction count before/after)."""
    return await meter.prepay_top_up(token.replace("-", "").replace(" ", ""))


@meter_command("prepay_enabled")
async def prepay_enabled(meter: MeterClient):
    """Whether the meter is in prepay mode."""
    return await meter.prepay_enabled()


@meter_command("prepay_enabled_write")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--force", is_flag=True, help="Enable even below 10 GBP of balance.")
async def prepay_enabled_write(meter: MeterClient, state: str, force: bool):
    """Switch prepay mode on or off."""
    await meter.prepay_enabled_write(state == "on", force=force)
    return state == "on"


@meter_command("monetary_info_transaction_count")
async def monetary_info_transaction_count(meter: MeterClient):
    """Credit transaction counter (rises by one per accepted token)."""
    return await meter.monetary_info_transaction_count()


# -- tariffs ---------------------------------------------------------------------------------


def _tariff_human(value: dict) -> None:
    _show({k: v for k, v in value.items() if v is not None})


@meter_command("tariffs_active_read", label="tariffs_active", human=_tariff_human)
async def tariffs_active_read(meter: MeterClient):
    """The tariff in force (GBP; unit rates per kWh, standing charge per day)."""
    return await meter.tariffs_active_read()


@meter_command("tariffs_future_read", label="tariffs_future", human=_tariff_human)
async def tariffs_future_read(meter: MeterClient):
    """The pending tariff and when it activates (UTC)."""
    return await meter.tariffs_future_read()


@meter_command("tariffs_future_write", label="tariffs_future", human=_tariff_human)
@click.option(
    "--from-ts", required=True, help="Activation time, ISO 8601 with offset (e.g. 2025-04-01T00:00:00Z)."
)
@click.option("--unit-rate", required=True, help="GBP per kWh, element A (and B unless --unit-rate-b).")
@click.option("--unit-rate-b", default=None, help="GBP per kWh, element B.")
@click.option("--standing-charge", required=True, help="GBP per day.")
@click.option(
    "--ecredit-availability", required=True, help="Balance (GBP) below which emergency credit is offered."
)
@click.option("--debt-recovery-rate", required=True, help="GBP per day.")
@click.option("--emergency-credit", required=True, help="Emergency credit amount (GBP).")
async def tariffs_future_write(
    meter: MeterClient,
    from_ts,
    unit_rate,
    unit_rate_b,
    standing_charge,
    ecredit_availability,
    debt_recovery_rate,
    emergency_credit,
):
    """Write a future tariff, then read it back."""
    try:
        activation = datetime.fromisoformat(from_ts.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{from_ts!r} is not an ISO 8601 time", param_hint="--from-ts") from None
    if activation.tzinfo is None:
        raise click.BadParameter("give a timezone, e.g. 2025-04-01T00:00:00Z", param_hint="--from-ts")
    async with meter.session():
        await meter.tariffs_future_write(
            from_ts=activation,
            unit_rate=_money(unit_rate, "--unit-rate"),
            unit_rate_b=_money(unit_rate_b, "--unit-rate-b"),
            standing_charge=_money(standing_charge, "--standing-charge"),
            ecredit_availability=_money(ecredit_availability, "--ecredit-availability"),
            debt_recovery_rate=_money(debt_recovery_rate, "--debt-recovery-rate"),
            emergency_credit=_money(emergency_credit, "--emergency-credit"),
        )
        return await meter.tariffs_future_read()


# -- settings --------------------------------------------------------------------------------


@meter_command("backlight")
@click.option("--set", "setting", type=click.Choice([m.name for m in Backlight]), default=None)
async def backlight(meter: MeterClient, setting):
    """Backlight setting (read, or --set NAME)."""
    if setting:
        await meter.backlight_write(Backlight[setting])
    return await meter.backlight()


@meter_command("load_switch")
@click.option("--set", "setting", type=click.Choice([m.name for m in LoadSwitch]), default=None)
async def load_switch(meter: MeterClient, setting):
    """Load switch setting (read, or --set NAME)."""
    if setting:
        await meter.load_switch_write(LoadSwitch[setting])
    return await meter.load_switch()


@meter_command("daylight_savings_correction_enabled")
async def daylight_savings_correction_enabled(meter: MeterClient):
    """Whether tariff activation times are UK local time on this meter."""
    return await meter.daylight_savings_correction_enabled()


@meter_command("obis_read")
@click.argument("object_id")
async def obis_read(meter: MeterClient, object_id: str):
    """Raw payload (hex) of any OBJECT_ID: name, hex (FFC802) or triplet (255.200.2)."""
    return await meter.obis_read(object_id)


@meter_command("obis_write")
@click.argument("object_id")
@click.argument("payload_hex")
async def obis_write(meter: MeterClient, object_id: str, payload_hex: str):
    """Write PAYLOAD_HEX to OBJECT_ID as is."""
    try:
        payload = bytes.fromhex(payload_hex)
    except ValueError:
        raise click.BadParameter(f"{payload_hex!r} is not hex", param_hint="PAYLOAD_HEX") from None
    await meter.obis_write(object_id, payload)
    return payload


# -- logs ------------------------------------------------------------------------------------


def _range(day, start, end) -> tuple[datetime, datetime]:
    if day is not None:
        start = day.replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    if start is None or end is None:
        raise click.UsageError("give --day or both --from and --to")
    return _aware(start), _aware(end)


@meter_command("event_log")
@click.option(
    "--index", type=click.IntRange(0, 9), default=0, show_default=True, help="Page, 0 = newest ten."
)
@click.option("--all", "every", is_flag=True, help="Every page until events repeat or run out.")
async def event_log(meter: MeterClient, index: int, every: bool):
    """Events (newest first): time, id, name, set."""
    return await (meter.event_log_since() if every else meter.event_log(index))


@meter_command("profile_log_1")
@click.option("--timestamp", default=None, help="Records from this time on (ISO 8601, UTC if no offset).")
@click.option(
    "--day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="The 48 half hours of a UTC day."
)
@click.option("--from", "start", default=None, help="Range start (ISO 8601).")
@click.option("--to", "end", default=None, help="Range end, exclusive (ISO 8601).")
async def profile_log_1(meter: MeterClient, timestamp, day, start, end):
    """Half-hourly cumulative import registers (kWh): one page (--timestamp) or a whole range."""
    if timestamp:
        return await meter.profile_log_1(_iso(timestamp, "--timestamp"))
    start, end = _range(day, start and _iso(start, "--from"), end and _iso(end, "--to"))
    with _Bar("profile log 1", (end - start).total_seconds()) as bar:
        return await meter.profile_log_1_range(start, end, progress=bar.update)


@meter_command("profile_log_2")
@click.option("--timestamp", required=True, help="Records from this time on (ISO 8601, UTC if no offset).")
async def profile_log_2(meter: MeterClient, timestamp):
    """Half-hourly export, reactive registers and voltage."""
    return await meter.profile_log_2(_iso(timestamp, "--timestamp"))


def _iso(text: str, name: str) -> datetime:
    try:
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=name) from None


# -- many meters -----------------------------------------------------------------------------

MANY_OPERATIONS = (
    "serial_read",
    "hardware",
    "csq",
    "prepay_balance",
    "read",
    "read_element_a",
    "read_element_b",
    "clock_time_read",
    "instantaneous_voltage",
    "monetary_info_transaction_count",
    "firmware_version",
)


def load_targets(path: Path) -> list[MeterAddress]:
    """`flows emulator --json` output, a JSON list of {serial, host, port}, or CSV lines serial,host,port."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
        rows = data["meters"] if isinstance(data, dict) else data
        return [MeterAddress(r.get("serial"), r["host"], int(r.get("port", 8080))) for r in rows]
    except json.JSONDecodeError:
        pass
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: not a list of meters ({error})") from None
    targets = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2:
                raise ConfigError(f"{path}:{number}: expected serial,host[,port]")
            targets.append(
                MeterAddress(parts[0] or None, parts[1], int(parts[2]) if len(parts) > 2 else 8080)
            )
    return targets


@cli.command("read_many")
@click.argument("meters_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--op",
    "operations",
    multiple=True,
    type=click.Choice(MANY_OPERATIONS),
    default=("serial_read", "prepay_balance", "read_element_a"),
    show_default=True,
)
@click.option("--concurrency", type=click.IntRange(1), default=200, show_default=True, help="Meters at once.")
@json_option
@click.pass_obj
def read_many(emop: EmopOptions, meters_file: Path, operations, concurrency: int, as_json: bool):
    """Run read operations on every meter in METERS_FILE at once (one session per meter)."""
    targets = load_targets(meters_file)
    client = emop.client()
    sessions = emop.sessions()

    async def run():
        meters = [client.meter(t.serial, host=t.host, port=t.port) for t in targets]

        async def operate(meter: MeterClient):
            leased = sessions.hold(meter.serial, "read_many") if sessions and meter.serial else None
            async with leased or contextlib.nullcontext(), meter.session():
                return {op: to_jsonable(await getattr(meter, op)()) for op in operations}

        async with sessions or contextlib.nullcontext():
            with _Bar("meters", len(meters)) as bar:
                return await client.for_each(meters, operate, concurrency, bar.advance)

    results = event_loop.run(run())
    rows = []
    for target, result in zip(targets, results, strict=True):
        row = {"serial": target.serial, "host": target.host, "port": target.port}
        if isinstance(result, FlowsError):
            row["error"] = str(result)
            row["exit_code"] = result.exit_code
        else:
            row.update(result)
        rows.append(row)

    def human(rows):
        table = Table(*["serial", *operations, "error"])
        for row in rows:
            table.add_row(
                str(row["serial"]), *[_flat(row.get(op, "")) for op in operations], row.get("error", "")
            )
        Console().print(table)

    emit(rows, as_json or emop.as_json, human)
    failed = [r for r in rows if "error" in r]
    if failed:
        raise FlowsError(f"{len(failed)} of {len(rows)} meters failed")

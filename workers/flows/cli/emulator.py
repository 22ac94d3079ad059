"""`flows emulator`: serve a fleet of emulated Emlite meters until interrupted."""

import asyncio
import json
import signal
import sys
from pathlib import Path

import click

from flows import event_loop
from flows.cli.common import json_option, settings
from flows.emulator.config import HARDWARE, FleetConfig, generate_meters, load_config
from flows.emulator.faults import KINDS, FaultPlan
from flows.emulator.fleet import Fleet
from flows.errors import ConfigError
from flows.vending import default_master_secret


def _fault_rates(specs: tuple[str, ...]) -> dict[str, float]:
    rates = {}
    for spec in specs:
        kind, sep, rate = spec.partition("=")
        if not sep or kind not in KINDS:
            raise click.BadParameter(
                f"{spec!r}: use KIND=RATE with KIND one of {', '.join(KINDS)}", param_hint="--fault"
            )
        try:
            rates[kind] = float(rate)
        except ValueError:
            raise click.BadParameter(f"{spec!r}: the rate is a number 0-1", param_hint="--fault") from None
    return rates


@click.command()
@click.option("--meters", "count", type=click.IntRange(1), default=None, help="How many meters to generate.")
@click.option(
    "--base-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="First port (then +1 each); default ephemeral.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fleet config file (JSON, or TOML by extension).",
)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--hardware",
    type=click.Choice(sorted(HARDWARE)),
    default=None,
    help="One model for every generated meter.",
)
@click.option("--latency-ms", type=float, default=None, help="Delay before each answer.")
@click.option(
    "--time-factor", type=float, default=None, help="Simulated seconds per real second (default 1)."
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep meter state here across restarts.",
)
@click.option(
    "--fault", "faults", multiple=True, metavar="KIND=RATE", help="Inject a fault on every meter at a rate."
)
@json_option
def emulator(
    count, base_port, config_file, host, hardware, latency_ms, time_factor, state_file, faults, as_json
):
    """Serve emulated Emlite meters on 127.0.0.1, one port each, until Ctrl-C / SIGTERM.

    Prints serial, host and port per meter once all listen (--json: one line of
    JSON, {"host", "pid", "state_file", "meters": [{"serial", "host", "port", "hardware"}]}).
    """
    if config_file and count:
        raise click.UsageError("give --meters N or --config FILE, not both")
    if not config_file and not count:
        raise click.UsageError("give --meters N or --config FILE")
    config = (
        load_config(config_file)
        if config_file
        else FleetConfig(meters=generate_meters(count, base_port, hardware))
    )
    if host:
        config.host = host
    if latency_ms is not None:
        config.latency = latency_ms / 1000
    if time_factor is not None:
        config.time_factor = time_factor
    if state_file:
        config.state_file = state_file.resolve()
    if config.vendor_secret is None:
        config.vendor_secret = default_master_secret(settings().home)
    rates = _fault_rates(faults)
    if rates:
        for i, meter in enumerate(config.meters):
            meter.faults = FaultPlan(
                rates={**meter.faults.rates, **rates}, nak_code=meter.faults.nak_code, seed=i
            )

    def ready(fleet: Fleet) -> None:
        description = fleet.describe()
        if as_json:
            click.echo(json.dumps(description))
        else:
            click.echo(f"{len(fleet)} emulated meters (pid {description['pid']}); Ctrl-C to stop")
            for m in description["meters"]:
                click.echo(f"{m['serial']}  {m['host']}:{m['port']}  {m['hardware']}")
        sys.stdout.flush()

    try:
        event_loop.run(_serve(Fleet(config), ready))
    except OSError as error:
        raise ConfigError(f"cannot start the emulator: {error}") from None


async def _serve(fleet: Fleet, ready) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        ready(fleet)
        await stop.wait()

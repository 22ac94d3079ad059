"""A fleet of emulated meters in one asyncio process, with its state file.

    async with Fleet(FleetConfig.generate(3, latency=0.0, vendor_secret=secret)) as fleet:
        meter = fleet.meters[0]                  # .serial .host .port .model .faults .stats
        client.meter(meter.serial, host=meter.host, port=meter.port)

The state file (JSON) holds every meter's dynamic state and the simulated time;
it is written atomically after state-changing writes (at most every second),
and on ``stop``. A fleet started with an existing state file resumes from it.
"""

import asyncio
import contextlib
import json
import os
import resource
from datetime import datetime
from pathlib import Path

from flows.emulator.clock import SimClock, utc
from flows.emulator.config import FleetConfig, MeterConfig
from flows.emulator.model import MeterModel
from flows.emulator.server import EmulatedMeter
from flows.errors import ConfigError
from flows.vending.emulated import meter_key

STATE_VERSION = 1
SAVE_INTERVAL = 1.0


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); the resulting soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Fleet:
    def __init__(self, config: FleetConfig):
        if not config.meters:
            raise ConfigError("an emulated fleet needs at least one meter")
        self.config = config
        self.state_file = Path(config.state_file) if config.state_file else None
        saved = self._read_state()
        start = config.start
        if start is None and saved and saved["sim_seconds"] > SimClock().seconds():
            start = utc(saved["sim_seconds"])  # accelerated time does not run backwards after a restart
        self.clock = SimClock(config.time_factor, start)
        if config.vendor_secret is None:
            raise ConfigError("an emulated fleet needs the test vendor's master secret (vendor_secret)")
        secret = config.vendor_secret
        self.meters: list[EmulatedMeter] = []
        self._by_serial: dict[str, EmulatedMeter] = {}
        for meter_config in config.meters:
            model = MeterModel(meter_config, self.clock, meter_key(secret, meter_config.serial))
            if saved and meter_config.serial in saved["meters"]:
                model.load_state(saved["meters"][meter_config.serial])
            self._add(meter_config, model)
        self._dirty = False
        self._saver: asyncio.Task | None = None

    def _add(self, meter_config: MeterConfig, model: MeterModel) -> None:
        latency = self.config.latency if meter_config.latency is None else meter_config.latency
        meter = EmulatedMeter(
            model, self.config.host, meter_config.port, latency, meter_config.faults, self.changed
        )
        self.meters.append(meter)
        self._by_serial[meter.serial] = meter

    def __getitem__(self, serial: str) -> EmulatedMeter:
        return self._by_serial[serial]

    def __iter__(self):
        return iter(self.meters)

    def __len__(self) -> int:
        return len(self.meters)

    async def start(self) -> "Fleet":
        raise_open_file_limit(3 * len(self.meters) + 256)
        try:
            for meter in self.meters:
                await meter.start()
        except OSError as error:
            await self.stop(save=False)
            raise ConfigError(
                f"cannot listen for meter {meter.serial} on {meter.host}:{meter.port}: {error.strerror}"
            ) from None
        if self.state_file:
            self.save_state()
            self._saver = asyncio.create_task(self._autosave())
        return self

    async def stop(self, save: bool = True) -> None:
        if self._saver:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        for meter in self.meters:
            await meter.stop()
        if save and self.state_file:
            self.save_state()

    async def __aenter__(self) -> "Fleet":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def describe(self) -> dict:
        """What ``flows emulator --json`` prints: where each meter listens."""
        return {
            "host": self.config.host,
            "pid": os.getpid(),
            "state_file": str(self.state_file) if self.state_file else None,
            "meters": [m.describe() for m in self.meters],
        }

    # -- state file ------------------------------------------------------------------------

    def changed(self) -> None:
        self._dirty = True

    async def _autosave(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if self._dirty:
                self.save_state()

    def save_state(self) -> None:
        self._dirty = False
        state = {
            "version": STATE_VERSION,
            "saved_at": datetime.now().astimezone().isoformat(),
            "sim_seconds": self.clock.seconds(),
            "meters": {m.serial: m.model.to_state() for m in self.meters},
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as out:
            json.dump(state, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.state_file)

    def _read_state(self) -> dict | None:
        if not self.state_file or not self.state_file.exists():
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"the emulator state file {self.state_file} is damaged: {error}") from None
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"the emulator state file {self.state_file} has version {state.get('version')}")
        return state

"""The Emlite meter emulator: a fleet of meters speaking EMOP on 127.0.0.1, one port each."""

from flows.emulator.clock import SimClock
from flows.emulator.config import FleetConfig, MeterConfig, load_config
from flows.emulator.faults import KINDS as FAULT_KINDS
from flows.emulator.faults import FaultPlan
from flows.emulator.fleet import Fleet
from flows.emulator.model import MeterModel
from flows.emulator.server import EmulatedMeter, MeterStats

__all__ = [
    "FAULT_KINDS",
    "EmulatedMeter",
    "FaultPlan",
    "Fleet",
    "FleetConfig",
    "MeterConfig",
    "MeterModel",
    "MeterStats",
    "SimClock",
    "load_config",
]

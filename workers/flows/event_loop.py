"""How every Flows process runs its asyncio code: on uvloop when it is installed.

uvloop (libuv under the asyncio API) makes each connection and timer cheaper;
the worker and the emulator open one TCP connection per EMOP exchange, and on
a fleet read it halves their CPU per exchange (bench/bench_fleet.py). Without
it (a platform with no wheel), the standard loop runs the same code.

The cyclic garbage collector is told to leave what exists at start alone
(``gc.freeze``) and to look less often: an exchange makes a few dozen short-lived
objects, freed by reference counting, and the default threshold ran a
collection every couple of exchanges (about a tenth of the CPU of a fleet read).
"""

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - the package depends on it; kept for platforms without a wheel
    uvloop = None

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on a uvloop event loop when available."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        return runner.run(main)

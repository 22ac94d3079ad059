"""What the benchmarks share: a migrated database to measure in, and reporting.

The database is ``FLOWS_BENCH_DATABASE_URL`` (a disposable one: the benchmarks
fill it), else a throwaway PostgreSQL 15 cluster with default durability
settings, started as the postgres OS user when run as root.
"""

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers (throw-away cluster, crash run)
from tests.support.server import throwaway_cluster  # noqa: E402

from flows.db import migrations  # noqa: E402


@contextmanager
def database() -> Iterator[str]:
    if url := os.environ.get("FLOWS_BENCH_DATABASE_URL"):
        migrations.migrate(url)
        yield url
        return
    with throwaway_cluster("bench", {"shared_buffers": "'512MB'", "max_wal_size": "'4GB'"}) as cluster:
        url = cluster.tcp_url("postgres", "postgres")
        migrations.migrate(url)
        yield url


def timed(action: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of ``action`` in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(name: str, ratio: float, target: float, lines: list[str]) -> None:
    print(f"# {name}")
    for line in lines:
        print(f"  {line}")
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"  ratio {ratio:.1f}x (target >= {target:g}x): {verdict} the target")
    if ratio < target:
        sys.exit(1)

"""What the benchmarks share: a migrated database to measure in, and reporting.

The database is ``FLOWS_BENCH_DATABASE_URL`` (a disposable one: the benchmarks
fill it), else a throwaway PostgreSQL 15 cluster with default durability
settings, started as the postgres OS user when run as root.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.db import migrations
from flows.stack.postgres import Cluster, free_port


@contextmanager
def database() -> Iterator[str]:
    if url := os.environ.get("FLOWS_BENCH_DATABASE_URL"):
        migrations.migrate(url)
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="flows-bench-", dir="/tmp"))
    base.chmod(0o755)
    cluster = Cluster(base / "pgdata", base / "socket", base / "log" / "postgresql.log", free_port(),
                      trust_tcp=True, settings={"shared_buffers": "'512MB'", "max_wal_size": "'4GB'"})
    try:
        cluster.init()
        cluster.start()
        url = cluster.tcp_url("postgres", "postgres")
        migrations.migrate(url)
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


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

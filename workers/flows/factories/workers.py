"""Worker processes as they register themselves (flows.register_worker_v1), for the tests and
benchmarks that need workers listed without running one."""

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import timedelta

import psycopg

from flows import __version__


def add_worker(conn: psycopg.Connection, name: str | None = None, *, escos: Sequence[str] | None = None,
               concurrency: int = 200, heartbeat: timedelta = timedelta(seconds=5)) -> str:
    """A registered worker (a new name by default) serving the ESCOs with these codes (None: every ESCO);
    registering the same name again restarts it. Returns its id."""
    name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return str(conn.execute("SELECT flows.register_worker_v1(%s, %s, %s, %s, %s, %s, %s)",
                            (name, socket.gethostname(), os.getpid(), __version__, concurrency,
                             None if escos is None else list(escos), heartbeat)).fetchone()[0])

"""Throw-away PostgreSQL servers, and the connection details of the one the tests use.

``throwaway_cluster`` is the one way tests and benchmarks start a server of
their own: a new cluster in a folder under /tmp (as the ``postgres`` OS user
when run as root), trusting TCP on 127.0.0.1, stopped and removed on exit.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_postgresql.janitor import DatabaseJanitor

from flows.stack.postgres import Cluster, free_port

# Durability off: tests throw the data away, and a crash loses nothing worth keeping.
NOT_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@contextmanager
def throwaway_cluster(purpose: str, settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A started cluster for ``purpose`` (names its folder); ``settings`` go to postgresql.conf."""
    base = Path(tempfile.mkdtemp(prefix=f"flows-{purpose}-", dir="/tmp"))
    base.chmod(0o755)  # the postgres user must reach it
    cluster = Cluster(base / "pgdata", base / "socket", base / "log" / "postgresql.log", free_port(),
                      trust_tcp=True, settings=settings or {})
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str | None = None
    cluster: Cluster | None = None  # set when the tests started the server themselves

    @classmethod
    def of(cls, cluster: Cluster) -> "PgServer":
        return cls(host="127.0.0.1", port=cluster.port, user="postgres", password=None, cluster=cluster)

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.user
        password = password if user != self.user else (password or self.password)
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def janitor(self, dbname: str, **kwargs) -> DatabaseJanitor:
        """Creates ``dbname`` on entry (from ``template_dbname=`` if given), drops it on exit."""
        return DatabaseJanitor(
            user=self.user, host=self.host, port=self.port, password=self.password, dbname=dbname, **kwargs
        )

    def libpq_args(self) -> list[str]:
        """Connection options for psql, pg_dump and pg_prove."""
        return ["--host", self.host, "--port", str(self.port), "--username", self.user]

    def libpq_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password} if self.password else {}

"""``flows up`` / ``flows status`` / ``flows down``: the embedded stack.

Up: create (first time) and start the PostgreSQL cluster, create the database,
apply migrations, load the demo data, start PostgREST; each step is skipped
when already done, so ``flows up`` on a running stack changes nothing.
"""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from flows import auth
from flows.db import admin, migrations
from flows.errors import FlowsError
from flows.paths import DEMO_SQL, POSTGREST_BIN, POSTGREST_CONF, ROOT
from flows.stack.config import StackConfig, stack_home
from flows.stack.postgres import port_is_free
from flows.stack.processes import Background

DEMO_ESCO = "DEMO"

Say = Callable[[str], None]


@dataclass
class Stack:
    config: StackConfig

    @classmethod
    def current(cls) -> "Stack | None":
        config = StackConfig.load()
        return cls(config) if config else None

    @property
    def admin_url(self) -> str:
        return self.config.cluster().socket_url(self.config.database)

    def postgrest(self) -> Background:
        return Background("postgrest", self.config.run_dir, self.config.log_dir)

    def background(self) -> list[Background]:
        """Every background process of the stack, in start order."""
        return [self.postgrest()]

    # -- up ----------------------------------------------------------------
    def up(self, demo: bool = True, say: Say = print) -> None:
        config = self.config
        cluster = config.cluster()
        if not cluster.initialised:
            say(f"creating PostgreSQL cluster in {cluster.datadir}")
            cluster.init()
        if not cluster.running():
            if not port_is_free(config.pg_port):
                config.pg_port = _another_port(config.pg_port, say, "PostgreSQL")
                config.save()
                cluster = config.cluster()
            say(f"starting PostgreSQL on port {config.pg_port}")
            cluster.start()
        if admin.ensure_database(cluster.socket_url("postgres"), config.database):
            say(f"created database {config.database}")
        applied = migrations.migrate(self.admin_url)
        for migration_id in applied:
            say(f"applied migration {migration_id}")
        admin.set_role_password(self.admin_url, "flows_authenticator", config.authenticator_password)
        if demo:
            admin.run_sql_file(self.admin_url, DEMO_SQL)
        admin.reload_api_schema(self.admin_url)
        self._start_postgrest(say)

    def _start_postgrest(self, say: Say) -> None:
        config = self.config
        process = self.postgrest()
        if process.pid() is not None:
            return
        if not POSTGREST_BIN.exists():
            raise FlowsError(f"PostgREST is not installed at {POSTGREST_BIN}", hint="run `make setup`")
        for attr, what in (("api_port", "the API"), ("admin_port", "the PostgREST admin server")):
            port = getattr(config, attr)
            if not port_is_free(port):
                setattr(config, attr, _another_port(port, say, what))
        config.save()
        say(f"starting PostgREST on port {config.api_port}")
        process.start(
            [str(POSTGREST_BIN), str(POSTGREST_CONF)],
            env={
                "PGRST_DB_URI": config.authenticator_url(),
                "PGRST_JWT_SECRET": config.jwt_secret,
                "PGRST_SERVER_PORT": str(config.api_port),
                "PGRST_ADMIN_SERVER_PORT": str(config.admin_port),
                "PGRST_OPENAPI_SERVER_PROXY_URI": config.api_url,
            },
            cwd=ROOT,
        )
        if not wait_ready(f"http://127.0.0.1:{config.admin_port}/ready", timeout=30, alive=process.pid):
            detail = process.tail(5)
            process.stop()
            raise FlowsError(f"PostgREST did not become ready; see {process.logfile}\n{detail}")

    # -- down / status -----------------------------------------------------
    def down(self, say: Say = print) -> None:
        for process in reversed(self.background()):
            if process.stop():
                say(f"stopped {process.name}")
        cluster = self.config.cluster()
        if cluster.running():
            cluster.stop()
            say("stopped PostgreSQL")

    def status(self) -> dict:
        config = self.config
        cluster = config.cluster()
        report = {
            "home": config.home,
            "postgresql": {
                "running": cluster.running(),
                "pid": cluster.pid() if cluster.running() else None,
                "port": config.pg_port,
                "database": config.database,
                "data": str(cluster.datadir),
                "url": self.admin_url,
                "log": str(cluster.logfile),
            },
        }
        for process in self.background():
            pid = process.pid()
            entry = {"running": pid is not None, "pid": pid, "log": str(process.logfile)}
            if process.name == "postgrest":
                entry["url"] = config.api_url
                entry["ready"] = pid is not None and _http_ok(f"http://127.0.0.1:{config.admin_port}/ready")
            report[process.name] = entry
        return report

    def demo_token(self, expires_in: str = "7d") -> str:
        return auth.mint_token(
            self.config.jwt_secret, "operator", esco=DEMO_ESCO, expires=auth.parse_expiry(expires_in)
        )


def open_stack() -> Stack:
    """The stack, creating its configuration on first use."""
    config = StackConfig.load() or StackConfig.create(stack_home())
    config.home_dir.chmod(0o755)
    return Stack(config)


def _another_port(port: int, say: Say, what: str) -> int:
    from flows.stack.postgres import free_port

    new = free_port()
    say(f"port {port} is taken; {what} uses port {new} instead")
    return new


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(url: str, timeout: float, alive: Callable[[], object] = lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _http_ok(url):
            return True
        if not alive():
            return False
        time.sleep(0.1)
    return False


def status_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str)

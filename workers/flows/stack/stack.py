"""``flows up`` / ``flows status`` / ``flows down``: the embedded stack.

Up: create (first time) and start the PostgreSQL cluster, create the database,
apply migrations, set the login passwords, create the demo community and start
its emulated meters (unless --no-demo), start PostgREST and the workers; each
step is skipped when already done, so ``flows up`` on a running stack changes
nothing.
"""

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flows import auth
from flows.db import admin, migrations
from flows.errors import FlowsError
from flows.paths import POSTGREST_BIN, POSTGREST_CONF, ROOT
from flows.settings import check_jwt_secret
from flows.stack import demo, mail, monitoring, topology
from flows.stack.config import StackConfig, stack_home
from flows.stack.postgres import free_port, port_is_free
from flows.stack.processes import Background

DEMO_ESCO = demo.ESCO[0]
DEMO_METERS = len(demo.fleet_plan())
FLOWS = str(Path(sys.executable).parent / "flows")
# On `flows down` the worker hands back what it holds within its grace (work in steps at once, the rest
# finished or released); it is killed only if still there WORKER_STOP_MARGIN seconds after that.
WORKER_SHUTDOWN_GRACE = 5.0
WORKER_STOP_MARGIN = 5.0

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

    def process(self, name: str) -> Background:
        return Background(name, self.config.run_dir, self.config.log_dir)

    def postgrest(self) -> Background:
        return self.process("postgrest")

    def background(self) -> list[Background]:
        """Every background process of the stack, in start order."""
        names = ["postgrest", "emulator", "mail", "worker", "gateway", "processor"]
        if self.config.topology == "scaled":
            names = [*topology.DATABASE_SIDE, *names, *topology.API_SIDE]
        if self.config.monitoring:
            names += monitoring.PROCESSES
        return [self.process(name) for name in names]

    # -- up ----------------------------------------------------------------
    def up(self, with_demo: bool = True, say: Say = print, with_monitoring: bool | None = None,
           topology_name: str | None = None) -> None:
        """Start what is missing; ``with_monitoring`` and ``topology_name`` (None: as last time) add the
        monitoring (stack/monitoring.py) and choose the topology (stack/topology.py)."""
        config = self.config
        check_jwt_secret(config.jwt_secret)
        topology.choose(self, topology_name or config.topology, say)
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
        admin.set_role_password(self.admin_url, "flows_worker", config.worker_password)
        if with_demo:
            self._start_demo_fleet(say)
        admin.reload_api_schema(self.admin_url)
        topology.start_database_side(self, say)
        self._start_postgrest(say)
        self.config.claim_port("processor_port", 8091, in_use_by_us=self.process("processor").pid() is not None)
        mail.start(self, say)
        self._start_worker(say)
        self._start_gateway(say)
        self._start_processor(say)
        topology.start_api_side(self, say)
        topology.reload_schema_caches(self)
        if with_monitoring or (with_monitoring is None and config.monitoring):
            monitoring.start(self, say)

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
                **topology.postgrest_env(config),
            },
            cwd=ROOT,
        )
        if not wait_ready(f"http://127.0.0.1:{config.admin_port}/ready", timeout=30, alive=process.pid):
            detail = process.tail(5)
            process.stop()
            raise FlowsError(f"PostgREST did not become ready; see {process.logfile}\n{detail}")

    def _start_demo_fleet(self, say: Say) -> None:
        config = self.config
        process = self.process("emulator")
        if not config.emulator_base_port or (process.pid() is None and not _ports_free(config.emulator_base_port)):
            config.emulator_base_port = _free_port_run(DEMO_METERS)
            config.save()
        if recorded := demo.create(self.admin_url, config.emulator_base_port):
            say(f"recorded the demo community's year of history ({recorded:,} half hours)")
        if process.pid() is not None:
            return
        fleet_config = demo.write_fleet_config(config.home_dir / "demo-fleet.json", config.emulator_base_port,
                                               config.home_dir / "emulator-state.json")
        say(f"starting {DEMO_METERS} emulated meters on ports {config.emulator_base_port}-"
            f"{config.emulator_base_port + DEMO_METERS - 1}")
        process.start([FLOWS, "emulator", "--config", str(fleet_config), "--json"], env=self._env(), cwd=ROOT)
        if process.exited_early(1.0):
            raise FlowsError(f"the emulator did not start; see {process.logfile}\n{process.tail(5)}")

    def _start_worker(self, say: Say) -> None:
        config = self.config
        process = self.process("worker")
        if process.pid() is not None:
            return
        if not config.metrics_port or not port_is_free(config.metrics_port):
            config.metrics_port = free_port(9464)
            config.save()
        say(f"starting the worker (metrics on http://127.0.0.1:{config.metrics_port}/metrics)")
        process.start([FLOWS, "worker", "--pacing", "0.2", "--metrics-port", str(config.metrics_port),
                       "--shutdown-grace", str(WORKER_SHUTDOWN_GRACE)],
                      env={**self._env(), "FLOWS_DATABASE_URL": config.worker_url(), "FLOWS_LOG_FORMAT": "json"},
                      cwd=ROOT)
        if process.exited_early(0.5):
            raise FlowsError(f"the worker did not start; see {process.logfile}\n{process.tail(5)}")

    def _start_gateway(self, say: Say) -> None:
        """flows gateway, logged in as flows_authenticator with PostgREST's JWT secret."""
        config = self.config
        process = self.process("gateway")
        if process.pid() is not None:
            return
        if not config.gateway_port or not port_is_free(config.gateway_port):
            config.gateway_port = free_port(8090)
            config.save()
        say(f"starting the gateway on port {config.gateway_port} (live page {config.gateway_url}/live)")
        process.start([FLOWS, "gateway", "--port", str(config.gateway_port)],
                      env={**self._env(), "FLOWS_DATABASE_URL": config.authenticator_url(),
                           "FLOWS_JWT_SECRET": config.jwt_secret, "FLOWS_LOG_FORMAT": "json"},
                      cwd=ROOT)
        if not wait_ready(f"{config.gateway_url}/health", timeout=20, alive=process.pid):
            detail = process.tail(5)
            process.stop()
            raise FlowsError(f"the gateway did not become ready; see {process.logfile}\n{detail}")

    def _start_processor(self, say: Say) -> None:
        """The test processor (NOT Stripe: docs/payments.md), delivering its events to the gateway's webhook."""
        config = self.config
        process = self.process("processor")
        if process.pid() is not None:
            return
        say(f"starting the test payment processor on port {config.processor_port} (NOT Stripe: moves no money)")
        process.start([FLOWS, "test-processor", "--port", str(config.processor_port),
                       "--webhook-url", f"{config.gateway_url}/webhooks/stripe",
                       "--state", str(config.home_dir / "test-processor.json")],
                      env={**self._env(), "FLOWS_LOG_FORMAT": "json"}, cwd=ROOT)
        if not wait_port(config.processor_port, timeout=20, alive=process.pid):
            detail = process.tail(5)
            process.stop()
            raise FlowsError(f"the test processor did not start; see {process.logfile}\n{detail}")

    def _env(self) -> dict[str, str]:
        """The home folder (for the test vendor's secret and sequences, shared by the emulator and workers)."""
        return {"FLOWS_HOME": self.config.home}

    # -- down / status -----------------------------------------------------
    def down(self, say: Say = print) -> None:
        for process in reversed(self.background()):
            grace = WORKER_SHUTDOWN_GRACE + WORKER_STOP_MARGIN if process.name == "worker" else 10.0
            since = datetime.now(UTC)
            if process.stop(grace):
                say(f"stopped {process.name}" + (_worker_summary(process, since) if process.name == "worker" else ""))
        topology.stop_replica(self.config, say)
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
            elif process.name == "emulator" and config.emulator_base_port:
                entry["meters"] = f"127.0.0.1:{config.emulator_base_port}-{config.emulator_base_port + DEMO_METERS - 1}"
            elif process.name == "mail" and config.mail_port:
                entry |= mail.status(config)
            elif process.name == "worker" and config.metrics_port:
                entry["url"] = f"http://127.0.0.1:{config.metrics_port}/metrics"
            elif process.name in monitoring.PROCESSES:
                entry["url"] = monitoring.urls(config)[process.name]
            elif process.name == "gateway" and config.gateway_port:
                entry["url"] = config.gateway_url
                entry["live_page"] = f"{config.gateway_url}/live"
                entry["metrics"] = f"{config.gateway_url}/metrics"
                entry["stripe_webhook"] = f"{config.gateway_url}/webhooks/stripe"
            elif process.name == "processor" and config.processor_port:
                entry["url"] = config.processor_url
                entry["note"] = "the test processor, a stand-in for Stripe's API: moves no money"
            report[process.name] = entry
        for name, entry in topology.status(self).items():
            report[name] = entry
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


def _worker_summary(process: Background, since: datetime) -> str:
    """What the worker said it finished and released as it stopped (its "worker stopped" log line, written
    after ``since``; none: it had to be killed, and its leases run out)."""
    for line in reversed(process.tail(200).splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "worker stopped" and datetime.fromisoformat(event["timestamp"]) >= since:
            released = event.get("released_commands") or []
            said = f": finished {event.get('finished', 0)}, released {len(released)}"
            if released:
                said += f" ({', '.join(released)}; pending again, the next worker resumes them at once)"
            return said
    return ": it did not stop in time and was killed (its commands' leases run out)"


def _ports_free(first: int, count: int = DEMO_METERS) -> bool:
    return all(port_is_free(p) for p in range(first, first + count))


def _free_port_run(count: int, start: int = 21000) -> int:
    """The first of ``count`` consecutive free ports from ``start`` on (below the ephemeral range, 32768 and up
    on Linux, where a port free now may be any outgoing connection's a moment later)."""
    first = start
    while first < 65000:
        if _ports_free(first, count):
            return first
        first += count
    raise FlowsError(f"no run of {count} free ports for the demo meters")


def _another_port(port: int, say: Say, what: str) -> int:
    new = free_port()
    say(f"port {port} is taken; {what} uses port {new} instead")
    return new


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_port(port: int, timeout: float, alive: Callable[[], object] = lambda: True) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        if not alive():
            return False
        time.sleep(0.1)
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

"""Where the embedded stack lives and what it was set up with.

The stack's home folder holds the PostgreSQL data, sockets, logs, pid files and
``stack.json`` (ports and generated secrets, readable only by its owner). It is
``.flows/`` in the repository when the server user can reach it, otherwise a
folder under /var/tmp; ``FLOWS_HOME`` chooses another. ``flows status`` says
which.
"""

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.paths import ROOT
from flows.stack.osuser import server_user_can_reach
from flows.stack.postgres import Cluster, free_port, port_is_free

DATABASE = "flows"


def new_webhook_secret() -> str:
    """A webhook signing secret shaped like Stripe's."""
    return "whsec_" + secrets.token_urlsafe(32)


def stack_home() -> Path:
    if os.environ.get("FLOWS_HOME"):
        return Path(os.environ["FLOWS_HOME"]).resolve()
    preferred = ROOT / ".flows"
    if server_user_can_reach(ROOT):
        return preferred
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    return Path("/var/tmp") / f"flows-{digest}"


@dataclass
class StackConfig:
    home: str
    pg_port: int
    api_port: int
    admin_port: int
    jwt_secret: str
    authenticator_password: str
    worker_password: str = ""
    emulator_base_port: int = 0  # first port of the demo fleet (0: not chosen yet)
    metrics_port: int = 0  # the worker's Prometheus endpoint (0: not chosen yet)
    gateway_port: int = 0  # flows gateway: WebSocket, SSE, live page (0: not chosen yet)
    mail_port: int = 0  # the mail catcher's SMTP port (0: none; FLOWS_SMTP_URL sends elsewhere)
    sms_port: int = 0  # the SMS test gateway's HTTP port (0: none)
    database: str = DATABASE
    # Monitoring (flows up --monitoring; stack/monitoring.py); 0: not chosen yet.
    monitoring: bool = False
    exporter_port: int = 0
    blackbox_port: int = 0
    prometheus_port: int = 0
    monitor_password: str = ""
    # Topology (flows up --topology scaled; stack/topology.py): PgBouncer, a replica, nginx.
    topology: str = "single"
    pgbouncer_port: int = 0
    replica_port: int = 0
    api2_port: int = 0
    api2_admin_port: int = 0
    readonly_api_port: int = 0
    readonly_admin_port: int = 0
    proxy_port: int = 0
    readonly_proxy_port: int = 0
    # Payments: the secret processor webhooks are signed with, and the local test processor (0: not chosen yet).
    stripe_webhook_secret: str = ""
    processor_port: int = 0

    # -- folders and files -------------------------------------------------
    @property
    def home_dir(self) -> Path:
        return Path(self.home)

    @property
    def log_dir(self) -> Path:
        return self.home_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.home_dir / "run"

    def cluster(self) -> Cluster:
        return Cluster(
            datadir=self.home_dir / "pgdata",
            socket_dir=self.home_dir / "socket",
            logfile=self.log_dir / "postgresql.log",
            port=self.pg_port,
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def processor_url(self) -> str:
        """The test processor (flows test-processor), a stand-in for Stripe's API."""
        return f"http://127.0.0.1:{self.processor_port}"

    # The test processor takes any key of the right shape; this one says where it comes from.
    processor_api_key = "sk_test_flows_embedded_stack"

    def authenticator_url(self) -> str:
        return self.cluster().tcp_url(self.database, "flows_authenticator", self.authenticator_password)

    def worker_url(self) -> str:
        return self.cluster().tcp_url(self.database, "flows_worker", self.worker_password)

    def claim_port(self, attr: str, preferred: int, in_use_by_us: bool = False) -> int:
        """The port remembered in ``attr``, or (not chosen yet, or taken by something else) a free one,
        remembered."""
        port = getattr(self, attr)
        if not port or (not in_use_by_us and not port_is_free(port)):
            port = free_port(preferred)
            setattr(self, attr, port)
            self.save()
        return port

    # -- persistence -------------------------------------------------------
    @staticmethod
    def path(home: Path | None = None) -> Path:
        return (home or stack_home()) / "stack.json"

    @classmethod
    def load(cls, home: Path | None = None) -> "StackConfig | None":
        path = cls.path(home)
        if not path.exists():
            return None
        config = cls(**json.loads(path.read_text()))
        if not config.worker_password:  # a stack created before the workers existed
            config.worker_password = secrets.token_urlsafe(24)
            config.save()
        if not config.stripe_webhook_secret:  # a stack created before payments
            config.stripe_webhook_secret = new_webhook_secret()
            config.save()
        return config

    @classmethod
    def create(cls, home: Path | None = None) -> "StackConfig":
        """Choose ports and generate secrets for a new stack, and save them."""
        home = home or stack_home()
        pg_port = free_port(int(os.environ.get("FLOWS_PG_PORT", "54329")))
        api_port = free_port(int(os.environ.get("FLOWS_API_PORT", "3000")))
        config = cls(
            home=str(home),
            pg_port=pg_port,
            api_port=api_port,
            admin_port=free_port(api_port + 1),
            jwt_secret=secrets.token_urlsafe(48),
            authenticator_password=secrets.token_urlsafe(24),
            worker_password=secrets.token_urlsafe(24),
            stripe_webhook_secret=new_webhook_secret(),
        )
        config.save()
        return config

    def save(self) -> None:
        self.home_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(self.home_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

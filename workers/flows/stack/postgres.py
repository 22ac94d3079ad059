"""A local PostgreSQL cluster in a folder: create, start, stop, inspect.

Used by ``flows up`` for the embedded stack and by the tests for a throwaway
server. Connections: the superuser ``postgres`` over the Unix socket in
``socket_dir`` (trust; the folder is private to the server user), and TCP on
127.0.0.1 (password, or trust for throwaway test clusters).
"""

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flows.errors import FlowsError
from flows.paths import pg_bindir
from flows.stack.osuser import as_server_user, give_to_server_user, server_user, server_user_can_reach

SUPERUSER = "postgres"


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else a free port."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Cluster:
    datadir: Path
    socket_dir: Path
    logfile: Path
    port: int
    trust_tcp: bool = False
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        cmd = as_server_user([str(pg_bindir() / argv[0]), *argv[1:]])
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise FlowsError(f"{argv[0]} failed: {detail[-1] if detail else result.returncode}")
        return result

    def init(self) -> None:
        """Create the cluster (once). Folders are owned by the server user."""
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if not server_user_can_reach(self.datadir.parent):
            raise FlowsError(
                f"the {server_user()} user cannot reach {self.datadir.parent}",
                hint="choose a data folder outside root-only directories, e.g. FLOWS_HOME=/var/tmp/flows",
            )
        give_to_server_user(self.datadir, 0o700)
        give_to_server_user(self.socket_dir, 0o700)
        give_to_server_user(self.logfile.parent, 0o755)
        self._run(
            [
                "initdb",
                "--pgdata", str(self.datadir),
                "--username", SUPERUSER,
                "--encoding", "UTF8",
                "--locale", "C.UTF-8",
                "--auth-local", "trust",
                "--auth-host", "trust" if self.trust_tcp else "scram-sha-256",
            ]
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "max_connections": "200",
            **self.settings,
        }
        lines = "".join(f"{key} = {value}\n" for key, value in conf.items())
        # Appended by the server user (the file is theirs); later lines win.
        subprocess.run(
            as_server_user(["tee", "-a", str(self.datadir / "postgresql.conf")]),
            input="\n# Flows embedded cluster\n" + lines,
            capture_output=True,
            text=True,
            check=True,
        )

    def running(self) -> bool:
        if not self.initialised:
            return False
        return self._run(["pg_ctl", "status", "--pgdata", str(self.datadir)], check=False).returncode == 0

    def start(self) -> None:
        if self.running():
            return
        give_to_server_user(self.socket_dir, 0o700)
        self._run(
            [
                "pg_ctl", "start",
                "--pgdata", str(self.datadir),
                "--log", str(self.logfile),
                "--options", f"-p {self.port}",
                "--wait", "--timeout", "60",
            ]
        )

    def stop(self) -> None:
        if self.running():
            self._run(["pg_ctl", "stop", "--pgdata", str(self.datadir), "--mode", "fast", "--wait"])

    def pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError, PermissionError):
            return None

    def socket_url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """URL for local superuser access over the Unix socket."""
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, dbname: str, user: str, password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

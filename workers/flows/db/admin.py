"""Administrative actions on a Flows database server (superuser connection)."""

import json

import psycopg
from psycopg import sql

from flows.db.connect import connect
from flows.errors import ConfigError


def ensure_database(server_url: str, name: str) -> bool:
    """Create database ``name`` if missing; True if it was created."""
    with connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def set_role_password(url: str, role: str, password: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


def reload_api_schema(url: str) -> None:
    """Tell PostgREST to reload its schema cache (after migrations)."""
    with connect(url, autocommit=True) as conn:
        conn.execute("NOTIFY pgrst, 'reload schema'")


def set_sql_login_claims(url: str, login: str, claims: dict) -> None:
    """Fixed claims for a SQL login that is not PostgREST (rls/claims.sql)."""
    with connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s AND rolcanlogin", (login,)).fetchone():
            raise ConfigError(f"no login role named {login}")
        if "esco" in claims and not conn.execute(
            "SELECT 1 FROM flows.escos WHERE code = %s", (claims["esco"],)
        ).fetchone():
            raise ConfigError(f"no ESCO with code {claims['esco']}")
        try:
            conn.execute(
                "INSERT INTO flows.sql_login_claims (login, claims) VALUES (%s, %s)"
                " ON CONFLICT (login) DO UPDATE SET claims = excluded.claims",
                (login, json.dumps(claims)),
            )
        except psycopg.errors.CheckViolation as error:
            raise ConfigError(f"{login} cannot have SQL login claims: {error.diag.constraint_name}") from None

"""API keys of integrations: recorded in flows.api_keys (flows.create_api_key), listed from api.api_keys,
revoked with api.revoke_api_key. The token is a JWT whose "api_key" claim names the row; the database never
holds it, and the request check refuses it once the row is revoked or expired."""

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row

from flows import auth
from flows.db.connect import connect
from flows.errors import ConfigError

KEY_ROLES = ("operator", "analyst")  # ESCO-scoped roles; admin and service see every ESCO


@dataclass
class IssuedKey:
    id: str
    esco: str
    name: str
    role: str
    expires_at: datetime
    token: str


def create(database_url: str, secret: str, esco: str, name: str, role: str, expires: datetime,
           audience: str | None = None) -> IssuedKey:
    if role not in KEY_ROLES:
        raise ConfigError(f"an API key is for role {' or '.join(KEY_ROLES)}, not {role}")
    db_role = auth.database_role(role)
    with connect(database_url) as conn:
        row = conn.execute("SELECT id, expires_at FROM flows.create_api_key(%s, %s, %s, %s)",
                           (esco, name, db_role, expires)).fetchone()
    key_id, expires_at = str(row[0]), row[1]
    token = auth.mint_token(secret, role, esco, expires_at, {"api_key": key_id, "sub": f"api-key:{name}"},
                            audience=audience)
    return IssuedKey(key_id, esco, name, db_role, expires_at, token)


def listing(database_url: str, esco: str | None = None) -> list[dict]:
    with connect(database_url) as conn:
        conn.row_factory = dict_row
        return conn.execute(
            "SELECT k.id::text, e.code AS esco, k.name, k.role, k.status, k.created_by, k.created_at, k.expires_at,"
            " k.revoked_at, k.revoked_by FROM api.api_keys AS k JOIN flows.escos AS e ON e.id = k.esco"
            " WHERE %(esco)s::text IS NULL OR e.code = %(esco)s ORDER BY e.code, k.created_at",
            {"esco": esco}).fetchall()


def revoke(database_url: str, key_id: str) -> dict:
    with connect(database_url) as conn:
        conn.row_factory = dict_row
        return conn.execute("SELECT id::text, name, status, revoked_at FROM api.revoke_api_key(%s)",
                            (key_id,)).fetchone()

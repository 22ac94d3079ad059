"""Administrative actions on a Flows database server (superuser connection)."""

from psycopg import sql

from flows.db.connect import connect


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


def run_sql_file(url: str, path) -> None:
    """Run a SQL file in one transaction (files without psql meta-commands)."""
    with connect(url) as conn:
        conn.execute(path.read_text())

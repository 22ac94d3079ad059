"""Who may call the API besides people: integrations' API keys."""

import psycopg


def add_api_key(conn: psycopg.Connection, esco_code: str, name: str = "portal", role: str = "flows_operator",
                valid_for: str = "30 days") -> str:
    """An API key of ESCO ``esco_code`` (flows.create_api_key, as `flows api-key create` makes it); its id."""
    row = conn.execute("SELECT id FROM flows.create_api_key(%s, %s, %s, now() + %s::interval)",
                       (esco_code, name, role, valid_for)).fetchone()
    return str(row[0])

"""Runs every pgTAP file in tests/pgtap with pg_prove, each in a fresh database."""

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

PGTAP_DIR = Path(__file__).parent / "pgtap"


@pytest.mark.parametrize("script", sorted(PGTAP_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_pgtap(script, pg_server, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    result = subprocess.run(
        ["pg_prove", "--verbose", "--failures", *pg_server.libpq_args(), "--dbname", db_url.rsplit("/", 1)[1],
         str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **pg_server.libpq_env()},
    )
    if result.returncode != 0:
        pytest.fail(f"pg_prove {script.name} failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}")

"""`flows db` commands against a real database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from flows import factories

FLOWS = str(Path(sys.executable).parent / "flows")


def flows(*args, env=None):
    return subprocess.run([FLOWS, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def test_sql_login_is_limited_to_an_esco(db, db_url):
    factories.add_esco(db, "GRAF", "Grafana")
    done = flows("db", "sql-login", "grafanareader", "--esco", "GRAF", "--database-url", db_url)
    assert done.returncode == 0, done.stderr
    assert db.execute("SELECT claims FROM flows.sql_login_claims WHERE login = 'grafanareader'").fetchone()[0] == \
        {"esco": "GRAF"}
    unknown = flows("db", "sql-login", "grafanareader", "--esco", "NOPE", "--database-url", db_url)
    assert unknown.returncode == 2 and "no ESCO with code NOPE" in unknown.stderr
    not_a_login = flows("db", "sql-login", "flows_operator", "--esco", "GRAF", "--database-url", db_url)
    assert not_a_login.returncode == 2 and "no login role" in not_a_login.stderr


def test_set_password_from_environment(db_url, pg_server):
    done = flows("db", "set-password", "grafanareader", "--from-env", "GRAFANA_PW", "--database-url", db_url,
                 env={"GRAFANA_PW": "s3cret-for-grafana"})
    assert done.returncode == 0, done.stderr
    missing = flows("db", "set-password", "grafanareader", "--from-env", "UNSET_VARIABLE", "--database-url", db_url)
    assert missing.returncode == 2 and "UNSET_VARIABLE" in missing.stderr


def test_status_and_rollback(db_url):
    status = json.loads(flows("db", "status", "--json", "--database-url", db_url).stdout)
    assert [s["id"] for s in status][:1] == ["0001_foundation"] and all(s["applied_at"] for s in status)
    last = status[-1]["id"]
    rolled = flows("db", "rollback", "--database-url", db_url)
    assert rolled.returncode == 0 and rolled.stdout == f"rolled back {last}\n"
    assert json.loads(flows("db", "status", "--json", "--database-url", db_url).stdout)[-1]["applied_at"] is None
    again = flows("db", "migrate", "--database-url", db_url)
    assert again.stdout.startswith(f"applied {last}")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('api.meter_registry')").fetchone()[0] is not None

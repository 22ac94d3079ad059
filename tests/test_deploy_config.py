"""docker-compose.yml cannot run here (no Docker engine), so it is held to what
is tested: the same PostgREST version and config, and the tested PostgREST
binary started with exactly the compose file's PostgREST settings; CLI commands
that exist; login roles the migrations create; and every secret it needs
listed in deploy/env.example."""

import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from flows import auth
from flows.db.admin import set_role_password
from flows.paths import ROOT
from flows.stack.postgres import free_port
from tests.support.api import run_postgrest

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
FLOWS = str(Path(sys.executable).parent / "flows")


def test_postgrest_matches_the_tested_one():
    postgrest = SERVICES["postgrest"]
    assert postgrest["image"] == "postgrest/postgrest:v12.0.2"
    assert "./postgrest.conf:/etc/postgrest.conf:ro" in postgrest["volumes"]
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'POSTGREST_VERSION="12.0.2"' in setup


def test_postgrest_runs_with_the_compose_settings(pg_server, db_url, tmp_path):
    """The compose file's PostgREST environment, given to the tested binary with this test's values for the
    secrets, the database address and the ports: a misspelt or unread setting fails here."""
    password, jwt_secret, public = secrets.token_urlsafe(16), secrets.token_urlsafe(40), "https://api.flows.test:8443"
    set_role_password(db_url, "flows_authenticator", password)
    variables = {"FLOWS_AUTHENTICATOR_PASSWORD": password, "FLOWS_JWT_SECRET": jwt_secret,
                 "FLOWS_PUBLIC_API_URL": public}
    dbname = urlsplit(db_url).path.lstrip("/")
    api_port, admin_port = free_port(), free_port()
    ports = {"3000": str(api_port), "3001": str(admin_port)}
    settings = {}
    for name, value in SERVICES["postgrest"]["environment"].items():
        value = re.sub(r"\$\{(\w+)(?::-([^}]*))?[^}]*\}",  # ${VAR}, ${VAR:?message}, ${VAR:-default}
                       lambda m: variables[m.group(1)] if m.group(2) is None else variables.get(m.group(1), m.group(2)),
                       str(value))
        value = re.sub(r"@(db|pgbouncer):\d+/flows", f"@{pg_server.host}:{pg_server.port}/{dbname}", value)
        settings[name] = ports.get(value, value)
    assert settings["PGRST_DB_URI"] != SERVICES["postgrest"]["environment"]["PGRST_DB_URI"]
    with run_postgrest(settings, admin_port, tmp_path):  # ready on the compose file's admin port setting
        token = auth.mint_token(jwt_secret, "admin", None, auth.parse_expiry("5m"))
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
            # the database URI and the JWT secret are read: a token signed with it reads the database
            response = http.get("/escos", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            # the public URL is the one OpenAPI clients are sent to
            spec = http.get("/").json()
    assert f"{spec['schemes'][0]}://{spec['host']}" == public, spec


def test_flows_commands_exist():
    commands = [SERVICES["workers"]["command"]]
    migrate = SERVICES["migrate"]["command"][0]
    commands += [shlex.split(part.strip())[1:] for part in migrate.split("&&")]
    for argv in commands:
        words = [w for w in argv if not w.startswith("-")][:2]
        result = subprocess.run([FLOWS, *words[: 2 if words[0] == "db" else 1], "--help"], capture_output=True,
                                text=True)
        assert result.returncode == 0, f"flows {' '.join(argv)}: {result.stderr}"
        for option in [w for w in argv if w.startswith("--")]:
            assert option in result.stdout, f"flows {' '.join(words)} has no {option}"


def test_roles_and_secrets(db):
    """Every role the compose file logs in as is a login role of a migrated database."""
    text = (ROOT / "docker-compose.yml").read_text()
    logins = {r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE rolcanlogin")}
    used = set(re.findall(r"postgres(?:ql)?://(\w+):", text))
    assert used - {"postgres"} and used - {"postgres"} <= logins, f"not login roles of the migrations: {used - logins}"
    listed = set(re.findall(r"^(\w+)=", (ROOT / "deploy" / "env.example").read_text(), re.M))
    required = set(re.findall(r"\$\{(\w+)(?::\?[^}]*)?\}", text))
    assert required <= listed, f"missing from deploy/env.example: {required - listed}"

"""docker-compose.yml cannot run here (no Docker engine), so it is held to what
is tested: the same PostgREST version and config, CLI commands that exist, roles
the migrations create, and every secret it needs listed in deploy/env.example."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from flows.paths import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
FLOWS = str(Path(sys.executable).parent / "flows")


def test_postgrest_matches_the_tested_one():
    postgrest = SERVICES["postgrest"]
    assert postgrest["image"] == "postgrest/postgrest:v12.0.2"
    assert "./postgrest.conf:/etc/postgrest.conf:ro" in postgrest["volumes"]
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'POSTGREST_VERSION="12.0.2"' in setup
    stack = (ROOT / "workers" / "flows" / "stack" / "stack.py").read_text()
    for variable in ("PGRST_DB_URI", "PGRST_JWT_SECRET", "PGRST_SERVER_PORT", "PGRST_ADMIN_SERVER_PORT",
                     "PGRST_OPENAPI_SERVER_PROXY_URI"):
        assert variable in postgrest["environment"] and variable in stack


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


def test_roles_and_secrets():
    text = (ROOT / "docker-compose.yml").read_text()
    roles = (ROOT / "sql" / "rls" / "roles.sql").read_text()
    for role in set(re.findall(r"postgres(?:ql)?://(flows_\w+):", text)):
        assert f"'{role}'" in roles, f"{role} is not created by the migrations"
    listed = set(re.findall(r"^(\w+)=", (ROOT / "deploy" / "env.example").read_text(), re.M))
    required = set(re.findall(r"\$\{(\w+)(?::\?[^}]*)?\}", text))
    assert required <= listed, f"missing from deploy/env.example: {required - listed}"

"""`flows up` / `status` / `down` and `flows token`, run as a user would run them."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from flows.stack.postgres import free_port

FLOWS = str(Path(sys.executable).parent / "flows")


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [FLOWS, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        pytest.fail(f"flows {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def stack_env():
    home = Path(tempfile.mkdtemp(prefix="flows-stack-", dir="/tmp"))
    home.chmod(0o755)
    env = {
        "FLOWS_HOME": str(home / "home"),
        "FLOWS_PG_PORT": str(free_port()),
        "FLOWS_API_PORT": str(free_port()),
        "FLOWS_TEST_VENDOR_SECRET": "",
        "FLOWS_DATABASE_URL": "",
        "FLOWS_JWT_SECRET": "",
    }
    yield env
    run("down", env=env, check=False)
    shutil.rmtree(home, ignore_errors=True)


def test_up_serves_the_documented_json_and_down_stops(stack_env):
    out = run("up", env=stack_env).stdout
    token = re.search(r"export TOKEN=(\S+)", out).group(1)
    api = re.search(r"API\s+(http://\S+)", out).group(1)
    headers = {"Authorization": f"Bearer {token}"}

    meters = httpx.get(f"{api}/meter_registry?select=id,serial,name", headers=headers).json()
    assert len(meters) == 20 and {"EML2400000001", "EMP1AX2400000020"} <= {m["serial"] for m in meters}
    assert all(set(m) == {"id", "serial", "name"} for m in meters)
    rpc = httpx.post(f"{api}/rpc/get_meters_for_cli", json={"esco_filter": None, "feeder_filter": None},
                     headers=headers)
    assert rpc.status_code == 200 and rpc.json()[0]["esco"] == "DEMO"

    # the demo's money side at once: last month's statements, issued and rendered
    issued = httpx.get(f"{api}/invoices?select=number&status=eq.final", headers=headers).json()
    assert len(issued) >= 20
    assert len(httpx.get(f"{api}/invoice_documents?select=invoice_id", headers=headers).json()) == len(issued)
    pdf = httpx.get(f"{api}/rpc/statement_pdf?number=1", headers={**headers, "Accept": "application/pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    # the workers sync the emulated meters: live balances within a minute
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = httpx.get(f"{api}/meter_shadows?select=balance,health&health=eq.healthy&balance=not.is.null",
                         headers=headers).json()
        if len(live) >= 3:
            break
        time.sleep(1)
    assert len(live) >= 3, "no live meter data after a minute"

    status = json.loads(run("status", "--json", env=stack_env).stdout)
    assert status["postgresql"]["running"] and status["postgrest"]["ready"]
    assert status["emulator"]["running"] and status["worker"]["running"]
    metrics = httpx.get(status["worker"]["url"]).text
    assert 'flows_worker_commands_total{kind="sync",outcome="done"}' in metrics
    assert status["home"] == stack_env["FLOWS_HOME"]
    assert Path(status["postgresql"]["log"]).exists() and Path(status["postgrest"]["log"]).exists()

    # the demo's notifications, caught by the mail catcher: each statement with its PDF, then low balances
    assert status["mail"]["running"] and status["mail"]["url"].startswith("smtp://127.0.0.1:")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        caught = json.loads(run("mail", "list", "--json", env=stack_env).stdout)
        if any(m["subject"].startswith("Your electricity credit is low") for m in caught):
            break
        time.sleep(2)
    statements = [m for m in caught if m["subject"].startswith("Your statement for")]
    assert len(statements) == len(issued) and all(m["attachments"] for m in statements)
    low = [m for m in caught if m["subject"].startswith("Your electricity credit is low")]
    assert low, "no low-balance email a minute after the first syncs"
    shown = run("mail", "show", low[0]["id"], env=stack_env).stdout
    assert "has fallen below £15.00" in shown and "Demo Community Energy" in shown

    # a second `up` finds everything running and changes nothing
    again = run("up", env=stack_env).stdout
    assert "starting" not in again and "applied migration" not in again
    assert run("db", "status", env=stack_env).stdout.split()[1] == "applied"

    # tokens minted by `flows token` work against the stack
    admin = run("token", "--role", "admin", env=stack_env).stdout.strip()
    escos = httpx.get(f"{api}/escos?code=eq.DEMO", headers={"Authorization": f"Bearer {admin}"}).json()
    assert [e["code"] for e in escos] == ["DEMO"]

    run("down", env=stack_env)
    stopped = json.loads(run("status", "--json", env=stack_env).stdout)
    assert not any(entry["running"] for name, entry in stopped.items() if name != "home")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/rpc/health")


def test_token_claims_and_validation():
    env = {"FLOWS_JWT_SECRET": "s" * 40}
    token = run("token", "--role", "operator", "--esco", "WLCE", "--expires", "2h", env=env).stdout.strip()
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"])
    assert claims["role"] == "flows_operator" and claims["esco"] == "WLCE"
    assert 7100 < claims["exp"] - claims["iat"] <= 7200

    customer_id = "2f2eeba2-bfb4-4388-bfad-8e0ab57f3036"
    customer = run("token", "--role", "customer", "--esco", "WLCE", "--customer", customer_id, "--claim", "x=a,b",
                   env=env)
    customer_claims = jwt.decode(customer.stdout.strip(), "s" * 40, algorithms=["HS256"])
    assert customer_claims["customer"] == customer_id and customer_claims["x"] == ["a", "b"]
    no_customer = run("token", "--role", "customer", "--esco", "WLCE", env=env, check=False)
    assert no_customer.returncode == 2 and "--customer" in no_customer.stderr

    missing_esco = run("token", "--role", "operator", env=env, check=False)
    assert missing_esco.returncode == 2 and "needs an ESCO" in missing_esco.stderr
    bad_expiry = run("token", "--role", "admin", "--expires", "soon", env=env, check=False)
    assert bad_expiry.returncode == 2 and "cannot read expiry" in bad_expiry.stderr
    no_secret = run("token", "--role", "admin", env={"FLOWS_JWT_SECRET": "", "FLOWS_HOME": "/nonexistent"},
                    check=False)
    assert no_secret.returncode == 2 and "no JWT secret" in no_secret.stderr


def test_up_without_demo_runs_workers_but_no_meters(stack_env):
    run("up", "--no-demo", env=stack_env)
    status = json.loads(run("status", "--json", env=stack_env).stdout)
    assert status["worker"]["running"] and not status["emulator"]["running"]
    admin = run("token", "--role", "admin", env=stack_env).stdout.strip()
    meters = httpx.get(f"{status['postgrest']['url']}/meter_registry", headers={"Authorization": f"Bearer {admin}"})
    assert meters.json() == []


def test_a_new_stack_credits_at_once_shows_a_year_and_restarts_cleanly(stack_env):
    """As a new user tries it: a top-up right after `make run` is credited within seconds (the demo's
    history is there, nothing backfills it), the 12-month figures are there, and `flows down` in the middle
    of a backfill hands it back, says so, and the next `flows up` resumes it at once."""
    out = run("up", env=stack_env).stdout
    token = re.search(r"export TOKEN=(\S+)", out).group(1)
    api = re.search(r"API\s+(http://\S+)", out).group(1)
    headers = {"Authorization": f"Bearer {token}"}
    months = httpx.get(f"{api}/site_interval_monthly?select=month,import_kwh", headers=headers).json()
    assert len(months) >= 12 and all(float(m["import_kwh"]) > 0 for m in months), months

    meter = httpx.get(f"{api}/meter_registry?serial=eq.EML2400000002&select=id", headers=headers).json()[0]["id"]
    topup = httpx.post(f"{api}/rpc/send_token", json={"meter_id": meter, "amount": 10},
                       headers=headers).json()[0]["id"]
    deadline = time.monotonic() + 30
    while (row := httpx.get(f"{api}/meter_commands?id=eq.{topup}", headers=headers).json()[0])["status"] not in (
            "done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row["status"] == "done", row
    waited = (datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["created_at"])).total_seconds()
    assert waited < 10, f"a top-up on a new stack took {waited:.1f} s"

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=30)
    backfill = httpx.post(f"{api}/rpc/read_profile_log", headers=headers, json={
        "meter_id": meter, "start_time": start.isoformat(), "end_time": (start + timedelta(days=30)).isoformat(),
    }).json()[0]["id"]
    deadline = time.monotonic() + 30
    while "cursor" not in httpx.get(f"{api}/meter_commands?id=eq.{backfill}", headers=headers).json()[0]["progress"]:
        assert time.monotonic() < deadline, "the backfill made no progress"
        time.sleep(0.2)

    down = run("down", env=stack_env).stdout
    said = re.search(r"stopped worker: finished \d+, released (\d+) \((.*); pending again", down)
    assert said and "read_profile_log EML2400000002" in said.group(2).split(", "), down
    run("up", env=stack_env)
    deadline = time.monotonic() + 10
    while (row := httpx.get(f"{api}/meter_commands?id=eq.{backfill}", headers=headers).json()[0])["status"] != (
            "running"):
        assert time.monotonic() < deadline, f"the next worker did not resume the backfill at once: {row}"
        time.sleep(0.2)
    assert row["attempts"] == 1 and row["progress"]["cursor"] > start.isoformat(), row

"""`flows up --topology scaled --monitoring`, run as a user would, then held to
what it promises: monitoring that scrapes real processes (every dashboard and
alert metric present, every SQL panel returning rows as grafanareader on the
replica), reads through the replica, writes there refused with a clear error,
lag as a metric, PgBouncer carrying more clients than PostgreSQL allows, and a
PostgREST instance killed without a failed request."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest

from flows.stack.postgres import free_port
from tests.support.dashboards import metric_names, promql_exprs, sql_panels

FLOWS = str(Path(sys.executable).parent / "flows")
pytestmark = pytest.mark.slow


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([FLOWS, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, **env})
    if check and result.returncode != 0:
        pytest.fail(f"flows {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class Scaled:
    def __init__(self, env: dict, up_output: str):
        self.env = env
        self.up_output = up_output
        self.refresh()

    def refresh(self) -> None:
        self.status = json.loads(run(self.env, "status", "--json").stdout)
        self.config = json.loads((Path(self.status["home"]) / "stack.json").read_text())

    def token(self, role: str = "operator", esco: str | None = "DEMO") -> dict:
        args = ["token", "--role", role, *(["--esco", esco] if esco else [])]
        return {"Authorization": f"Bearer {run(self.env, *args).stdout.strip()}"}

    @property
    def api(self) -> str:
        return self.status["nginx"]["url"]

    @property
    def readonly(self) -> str:
        return self.status["nginx"]["readonly_url"]

    def primary_sql(self):
        return psycopg.connect(self.status["postgresql"]["url"], autocommit=True)

    def replica_sql(self):
        return psycopg.connect(self.status["replica"]["url"], autocommit=True)

    def prometheus(self, query: str) -> list:
        answer = httpx.get(f"{self.status['prometheus']['url']}/api/v1/query", params={"query": query}).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]


@pytest.fixture(scope="module")
def scaled():
    home = Path(tempfile.mkdtemp(prefix="flows-scaled-", dir="/tmp"))
    home.chmod(0o755)
    env = {"FLOWS_HOME": str(home / "home"), "FLOWS_PG_PORT": str(free_port()), "FLOWS_API_PORT": str(free_port()),
           "FLOWS_TEST_VENDOR_SECRET": "", "FLOWS_DATABASE_URL": "", "FLOWS_JWT_SECRET": ""}
    try:
        up = run(env, "up", "--topology", "scaled", "--monitoring")
        yield Scaled(env, up.stdout)
    finally:
        run(env, "down", check=False)
        shutil.rmtree(home, ignore_errors=True)


def eventually(check, timeout: float = 90, every: float = 1.0):
    """The value of ``check()`` once truthy; the last value (falsy) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_up_prints_and_status_names_where_everything_is(scaled):
    status = scaled.status
    assert f"API      {scaled.api}" in scaled.up_output and f"Reads    {scaled.readonly}" in scaled.up_output
    for name in ("postgresql", "replica", "pgbouncer", "postgrest", "postgrest-2", "postgrest-readonly", "nginx",
                 "worker", "emulator", "gateway", "exporter", "blackbox", "prometheus"):
        assert status[name]["running"], f"{name} is not running: {status[name]}"
    assert status["postgrest"]["ready"] and status["postgrest-2"]["ready"] and status["postgrest-readonly"]["ready"]
    assert httpx.get(status["exporter"]["url"]).status_code == 200
    assert httpx.get(f"{status['prometheus']['url']}/-/ready").status_code == 200
    for port in (scaled.config["admin_port"], scaled.config["api2_admin_port"], scaled.config["readonly_admin_port"]):
        assert httpx.get(f"http://127.0.0.1:{port}/live").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
    # Prometheus scrapes the exporter, the worker, the gateway, the blackbox probes of the three PostgREST and itself
    def jobs():
        targets = httpx.get(f"{status['prometheus']['url']}/api/v1/targets").json()["data"]["activeTargets"]
        return {(t["labels"]["job"], t["health"]) for t in targets}

    expected = {("postgres", "up"), ("worker", "up"), ("gateway", "up"), ("postgrest", "up"), ("blackbox", "up"),
                ("prometheus", "up")}
    assert eventually(lambda: jobs() == expected), jobs()


def test_every_dashboard_and_alert_metric_is_in_a_real_scrape(scaled):
    names = set().union(*(metric_names(expr) for _, expr in promql_exprs()))
    assert len(names) > 20

    def missing():
        return sorted(n for n in names if not scaled.prometheus(f'count({{__name__="{n}"}})'))

    assert eventually(lambda: not missing(), timeout=120), f"never scraped: {missing()}"


def test_every_dashboard_panel_query_returns_data(scaled):
    panels = [(where, expr) for where, expr in promql_exprs() if not where.startswith("alert")]

    def empty():
        return [where for where, expr in panels if not scaled.prometheus(expr)]

    assert eventually(lambda: not empty(), timeout=120), f"no data for: {empty()}"


def test_sql_panels_run_as_grafanareader_on_the_replica_and_return_rows(scaled):
    run({**scaled.env, "GRAFANA_PASSWORD": "grafana-test-password"}, "db", "set-password", "grafanareader",
        "--from-env", "GRAFANA_PASSWORD")
    run(scaled.env, "db", "sql-login", "grafanareader", "--esco", "DEMO")
    url = f"postgresql://grafanareader:grafana-test-password@127.0.0.1:{scaled.config['replica_port']}/flows"

    def without_rows():
        thin = []
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            for where, query in sql_panels():
                if not conn.execute(query).fetchall():
                    thin.append(where)
        return thin

    assert eventually(lambda: not without_rows(), timeout=120), f"no rows: {without_rows()}"


def test_reads_go_through_the_replica_and_its_lag_is_a_metric(scaled):
    headers = scaled.token()
    meter = httpx.get(f"{scaled.api}/meter_registry?select=id,name&limit=1", headers=headers).json()[0]
    with scaled.replica_sql() as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            renamed = httpx.patch(f"{scaled.api}/meter_registry?id=eq.{meter['id']}",
                                  json={"name": "Renamed on primary"},
                                  headers={**headers, "Prefer": "return=representation"})
            assert renamed.status_code == 200 and renamed.json()[0]["name"] == "Renamed on primary"
            with scaled.primary_sql() as primary:  # enough WAL to see in the lag
                primary.execute("SELECT flows.run_scheduler_v1()")
            # the read-only API has not seen it: it reads the paused replica
            seen = httpx.get(f"{scaled.readonly}/meter_registry?id=eq.{meter['id']}&select=name", headers=headers)
            assert seen.json() == [{"name": meter["name"]}]

            def lag():
                text = httpx.get(scaled.status["exporter"]["url"]).text
                for line in text.splitlines():
                    if (line.startswith("flows_replication_replay_lag_bytes{")
                            and 'application_name="flows_replica"' in line):
                        return float(line.rsplit(" ", 1)[1]) > 0
                return False

            assert eventually(lag, timeout=30), "no replication lag in the exporter's scrape"
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    assert eventually(lambda: httpx.get(f"{scaled.readonly}/meter_registry?id=eq.{meter['id']}&select=name",
                                        headers=headers).json() == [{"name": "Renamed on primary"}], timeout=30)


def test_writes_through_the_replica_are_refused_clearly(scaled):
    headers = {**scaled.token(), "Content-Type": "application/json"}
    table = httpx.post(f"{scaled.readonly}/sites", json={"code": "RO", "name": "Nope"}, headers=headers)
    assert table.status_code == 405
    assert table.json()["message"] == "this is the read-only API (it reads a replica): writes go to the primary API"
    rpc = httpx.post(f"{scaled.readonly}/rpc/request_sync", json={}, headers=headers)
    assert rpc.status_code == 400 and "during recovery" in rpc.json()["message"]
    direct = httpx.post(f"{scaled.status['postgrest-readonly']['url']}/sites", json={"code": "RO", "name": "Nope"},
                        headers=headers)
    assert direct.status_code == 400 and "during recovery" in direct.json()["message"]
    # reads, and read-only functions, work there
    read = httpx.post(f"{scaled.readonly}/rpc/get_meters_for_cli", json={"esco_filter": None, "feeder_filter": None},
                      headers=headers)
    assert read.status_code == 200 and len(read.json()) == 20


def test_pgbouncer_serves_more_clients_than_postgresql_allows(scaled):
    """400 clients at once: directly, PostgreSQL (max_connections 200) turns some away; through PgBouncer
    every one is served over at most its pool of server connections."""
    password = scaled.config["authenticator_password"]
    direct = f"postgresql://flows_authenticator:{password}@127.0.0.1:{scaled.config['pg_port']}/flows"
    pooled = f"postgresql://flows_authenticator:{password}@127.0.0.1:{scaled.config['pgbouncer_port']}/flows"

    async def clients(url: str, count: int = 400) -> tuple[int, list[str]]:
        async def one():
            conn = await asyncpg.connect(url, statement_cache_size=0, timeout=30)
            try:
                await conn.execute("SELECT pg_sleep(0.5)")
            finally:
                await conn.close()
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        errors = [str(r) for r in results if isinstance(r, Exception)]
        return count - len(errors), errors

    served, errors = asyncio.run(clients(direct))
    assert errors and any("too many clients" in e or "remaining connection slots" in e for e in errors), errors[:3]
    served, errors = asyncio.run(clients(pooled))
    assert served == 400, errors[:3]


def test_an_instance_killed_under_load_fails_no_request(scaled):
    headers = scaled.token()

    async def load(seconds: float) -> tuple[int, list[str]]:
        failures, done = [], 0
        async with httpx.AsyncClient(base_url=scaled.api, headers=headers, timeout=10) as http:
            deadline = time.monotonic() + seconds

            async def client():
                nonlocal done
                while time.monotonic() < deadline:
                    response = await http.get("/meter_registry?select=id,serial&limit=5")
                    done += 1
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")

            await asyncio.gather(*(client() for _ in range(20)))
        return done, failures

    async def kill_mid_way():
        task = asyncio.create_task(load(6))
        await asyncio.sleep(2)
        os.kill(scaled.status["postgrest-2"]["pid"], signal.SIGKILL)
        return await task

    done, failures = asyncio.run(kill_mid_way())
    assert done > 100 and not failures, f"{len(failures)} of {done} failed: {failures[:3]}"
    # `flows up` brings it back
    run(scaled.env, "up")
    scaled.refresh()
    assert scaled.status["postgrest-2"]["ready"]

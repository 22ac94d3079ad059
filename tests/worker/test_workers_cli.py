"""`flows workers list | drain` and the same for administrators over HTTP (/workers, /rpc/drain_worker)."""

import asyncio
import json

from click.testing import CliRunner

from flows import __version__
from flows.cli.main import cli
from tests.worker.conftest import new_esco, wait_for


def flows(stack, tmp_path, *args: str):
    env = {"FLOWS_DATABASE_URL": stack.api.db_url, "FLOWS_HOME": str(tmp_path), "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


async def test_list_and_drain_workers(stack, running_worker, tmp_path):
    _, code = new_esco(stack)
    serving = await running_worker(stack.worker_url, escos=[code], concurrency=7, heartbeat=0.3)
    other = await running_worker(stack.worker_url, heartbeat=0.3)
    await wait_for(lambda: serving.claims and other.claims)

    listed = flows(stack, tmp_path, "workers", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {w["name"]: w for w in json.loads(listed.output)}
    mine = rows[serving.config.name]
    assert mine["state"] == "running" and mine["concurrency"] == 7 and mine["esco_codes"] == [code]
    assert mine["version"] == __version__ and mine["pid"] > 0 and mine["host"] and mine["heartbeat_at"]
    assert {"in_flight", "commands_per_minute"} <= set(mine) and rows[other.config.name]["esco_codes"] is None
    table = flows(stack, tmp_path, "workers", "list")
    assert serving.config.name in table.output and code in table.output and "commands/min" in table.output

    drained = flows(stack, tmp_path, "workers", "drain", mine["id"][:8], "--json")
    assert drained.exit_code == 0, drained.output
    assert json.loads(drained.output)[0]["state"] == "draining"
    await asyncio.wait_for(serving.task, 10)
    after = {w["name"]: w for w in json.loads(flows(stack, tmp_path, "workers", "list", "--json").output)}
    assert after[serving.config.name]["state"] == "stopped" and after[other.config.name]["state"] == "running"
    again = flows(stack, tmp_path, "workers", "drain", serving.config.name)
    assert again.exit_code == 1 and "no running worker" in again.output
    unknown = flows(stack, tmp_path, "workers", "drain", "nosuchworker")
    assert unknown.exit_code == 2 and "no worker nosuchworker" in unknown.output


async def test_workers_over_http_are_for_administrators(stack, running_worker):
    worker = await running_worker(stack.worker_url)
    await wait_for(lambda: worker.claims)
    async with stack.api.async_client("admin") as admin, stack.api.async_client("operator", "DEMO") as operator:
        response = await admin.get("/workers", params={"name": f"eq.{worker.config.name}"})
        assert response.status_code == 200 and response.json()[0]["state"] == "running", response.text
        assert (await operator.get("/workers")).status_code in (401, 403)
        refused = await operator.post("/rpc/drain_worker", json={"id": response.json()[0]["id"]})
        assert refused.status_code in (401, 403) and refused.json()["code"] == "42501"

"""`flows up` runs the gateway: its URL in the output and under gateway.url in `flows status --json`,
and it streams what the API serves, with the stack's tokens."""

import json
import re

import httpx

from tests.test_cli_stack import run, stack_env  # noqa: F401  (the stack fixture, shared)


def test_up_runs_the_gateway(stack_env):  # noqa: F811
    out = run("up", "--no-demo", env=stack_env).stdout
    printed = re.search(r"Gateway\s+(http://\S+)", out).group(1)
    status = json.loads(run("status", "--json", env=stack_env).stdout)
    gateway = status["gateway"]
    assert gateway["running"] and gateway["url"] == printed
    assert httpx.get(f"{gateway['url']}/health").json()["feed"] == "connected"
    assert httpx.get(gateway["live_page"]).status_code == 200
    assert "flows_gateway_subscribers" in httpx.get(gateway["metrics"]).text or \
        "flows_gateway_commits_total" in httpx.get(gateway["metrics"]).text

    admin = run("token", "--role", "admin", env=stack_env).stdout.strip()
    with httpx.stream("GET", f"{gateway['url']}/events/stream", params={"relation": "escos_nope"},
                      headers={"Authorization": f"Bearer {admin}"}) as refused:
        assert refused.status_code == 400
    with httpx.Client(timeout=10) as http, http.stream(
            "GET", f"{gateway['url']}/events/stream", params={"relation": "meter_registry"},
            headers={"Authorization": f"Bearer {admin}"}) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines) == ": subscribed to meter_registry"
        esco = httpx.post(f"{status['postgrest']['url']}/escos", json={"code": "GWUP", "name": "Gateway"},
                          headers={"Authorization": f"Bearer {admin}", "Prefer": "return=representation"})
        assert esco.status_code == 201, esco.text
        register = httpx.post(f"{status['postgrest']['url']}/rpc/register_meter",
                              json={"serial": "EML3555000001", "esco": esco.json()[0]["id"]},
                              headers={"Authorization": f"Bearer {admin}"})
        assert register.status_code == 200, register.text
        for line in lines:
            if line.startswith("data: "):
                change = json.loads(line[6:])["changes"][0]
                assert change["op"] == "upsert" and change["row"]["serial"] == "EML3555000001"
                break
    run("down", env=stack_env)
    assert not json.loads(run("status", "--json", env=stack_env).stdout)["gateway"]["running"]

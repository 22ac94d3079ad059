"""Hardening, against a real PostgREST: tokens without exp or the configured
audience, revocable API keys, error details that name no other tenant's data,
a finite db-max-rows, per-role statement timeouts, the JWT secret's length, and
the audit trail as the API shows it (who, what, request id; never the token)."""

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest

from flows.paths import POSTGREST_CONF
from tests.support.api import start_postgrest
from tests.support.factory import sample_esco

FLOWS = str(Path(sys.executable).parent / "flows")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def raw_token(secret: str, **claims) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def later(hours: int = 1) -> int:
    return int((datetime.now(UTC) + timedelta(hours=hours)).timestamp())


def test_a_token_without_exp_is_refused(api):
    _, code = api.new_esco()
    no_exp = raw_token(api.jwt_secret, role="flows_operator", esco=code)
    response = httpx.get(f"{api.base_url}/meter_registry", headers=bearer(no_exp))
    assert response.status_code == 401
    assert response.json()["message"] == "the token has no expiry (exp claim) and is refused"
    assert "flows api-key create" in response.json()["hint"]
    with_exp = raw_token(api.jwt_secret, role="flows_operator", esco=code, exp=later())
    assert httpx.get(f"{api.base_url}/meter_registry", headers=bearer(with_exp)).status_code == 200
    # no token at all is still the anonymous role (the health check)
    assert httpx.get(f"{api.base_url}/rpc/health").status_code == 200


@pytest.fixture(scope="module")
def audience_api(pg_server, template_db, tmp_path_factory):
    name = f"flows_aud_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        env = {"PGRST_JWT_AUD": "flows-api", "PGRST_APP_SETTINGS_JWT_AUD": "flows-api"}
        with start_postgrest(pg_server, name, tmp_path_factory.mktemp("aud"), env) as running:
            yield running


def test_with_an_audience_configured_tokens_must_carry_it(audience_api):
    secret, url = audience_api.jwt_secret, f"{audience_api.base_url}/escos"
    claims = {"role": "flows_admin", "exp": later()}
    missing = httpx.get(url, headers=bearer(raw_token(secret, **claims)))
    assert missing.status_code == 401 and "aud claim must be flows-api" in missing.json()["message"]
    wrong = httpx.get(url, headers=bearer(raw_token(secret, aud="someone-else", **claims)))
    assert wrong.status_code == 401
    assert httpx.get(url, headers=bearer(raw_token(secret, aud="flows-api", **claims))).status_code == 200
    listed = httpx.get(url, headers=bearer(raw_token(secret, aud=["other", "flows-api"], **claims)))
    assert listed.status_code == 200


def flows_cli(api, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWS_DATABASE_URL": api.db_url, "FLOWS_JWT_SECRET": api.jwt_secret}
    result = subprocess.run([FLOWS, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_api_keys_are_listed_scoped_and_revoked_at_once(api):
    with api.sql() as conn:
        a, b = sample_esco(conn), sample_esco(conn)
    issued = json.loads(flows_cli(api, "api-key", "create", "--esco", a.code, "--name", "billing-system",
                                  "--expires", "90d", "--json").stdout)
    key = {"Authorization": f"Bearer {issued['token']}"}
    claims = jwt.decode(issued["token"], api.jwt_secret, algorithms=["HS256"])
    assert claims["api_key"] == issued["id"] and claims["esco"] == a.code and claims["role"] == "flows_operator"
    assert 89 * 86400 < claims["exp"] - time.time() <= 90 * 86400

    meters = httpx.get(f"{api.base_url}/meter_registry?select=id", headers=key)
    assert meters.status_code == 200 and {m["id"] for m in meters.json()} == set(a.meters)  # scoped to its ESCO

    with api.client("operator", a.code, sub="ops@a") as operator:
        listed = operator.get("/api_keys?name=eq.billing-system").json()
        assert [(k["id"], k["status"]) for k in listed] == [(issued["id"], "live")]
        with api.client("operator", b.code) as other:
            assert other.get(f"/api_keys?id=eq.{issued['id']}").json() == []
            refused = other.post("/rpc/revoke_api_key", json={"id": issued["id"]})
            assert refused.status_code == 404, refused.text
        revoked = operator.post("/rpc/revoke_api_key", json={"id": issued["id"]})
        assert revoked.status_code == 200 and revoked.json()[0]["revoked_by"] == "ops@a"

    after = httpx.get(f"{api.base_url}/meter_registry?select=id", headers=key)
    assert after.status_code == 401 and after.json()["message"] == "this API key is revoked, expired or unknown"
    rows = json.loads(flows_cli(api, "api-key", "list", "--esco", a.code, "--json").stdout)
    assert {(r["name"], r["status"]) for r in rows} >= {("billing-system", "revoked"), ("portal", "live")}

    again = flows_cli(api, "api-key", "revoke", issued["id"], check=False)
    assert again.returncode == 2 and "no live API key" in again.stderr
    admin = flows_cli(api, "api-key", "create", "--esco", a.code, "--name", "x", "--role", "admin", check=False)
    assert admin.returncode == 2 and "'admin' is not one of" in admin.stderr


def test_error_details_name_no_other_tenant(api):
    """Writes that collide with or point at another ESCO's rows fail without showing that ESCO's data."""
    with api.sql() as conn:
        a, b = sample_esco(conn), sample_esco(conn)
        b_meter = conn.execute("SELECT serial, ip_address, name FROM flows.meter_registry WHERE id = %s",
                               (b.meters[0],)).fetchone()
        conn.execute("UPDATE flows.meter_registry SET ip_address = '10.9.8.7', iccid = '8944000000000000001'"
                     " WHERE id = %s", (b.meters[0],))
    secrets_of_b = [b.code, f"ESCO {b.code}", b_meter[0], "10.9.8.7", "8944000000000000001", b.esco, b.meters[0],
                    *b.registers[b.meters[0]]]
    with api.client("operator", a.code) as http:
        attempts = [
            http.post("/meter_registry", json={"serial": b_meter[0]}),  # duplicate serial
            http.post("/meter_registry", json={"serial": "EML1999999991", "ip_address": "10.9.8.7"}),
            http.post("/meter_registry", json={"serial": "EML1999999992", "iccid": "8944000000000000001"}),
            http.post("/meter_registry", json={"serial": "EML1999999993", "site": b.site}),  # B's site
            http.post("/meter_registers", json={"meter_id": b.meters[0], "element": "SINGLE"}),
            http.post("/service_head_meter", json={"service_head": a.heads[0], "meter": b.meters[0]}),
            http.post("/rpc/send_token", json={"meter_id": b.meters[0], "amount": 5}),
            http.post("/rpc/request_sync", json={"meter_ids": [b.meters[0]]}),
            http.post("/rpc/cancel_meter_command", json={"id": b.meters[0]}),
            http.post("/rpc/revoke_api_key", json={"id": b.api_key}),
            http.patch(f"/meter_registry?id=eq.{b.meters[0]}", json={"name": "mine"},
                       headers={"Prefer": "return=representation"}),
            http.get(f"/audit_log?row_key->>id=eq.{b.meters[0]}"),
        ]
    for response in attempts:
        text = response.text
        leaked = [s for s in secrets_of_b if s in text and s not in response.request.content.decode()
                  and s not in str(response.request.url)]
        assert not leaked, f"{response.request.method} {response.request.url}: {response.status_code} {text}"
        assert response.status_code in (200, 400, 401, 403, 404, 409), text
    assert attempts[0].status_code == 409 and attempts[0].json()["details"] is None
    assert attempts[-2].json() == [] and attempts[-1].json() == []


def test_responses_are_capped_by_db_max_rows(api):
    text = POSTGREST_CONF.read_text()
    assert "db-max-rows = 1000" in text
    with api.sql() as conn:
        data = sample_esco(conn)
        register = data.registers[data.meters[1]][0]
        start = datetime(2024, 1, 1, tzinfo=UTC)
        times = [start + timedelta(minutes=30 * k) for k in range(1500)]
        conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], %s::numeric[])",
                     ([register] * 1500, times, [0.1] * 1500, [0] * 1500))
    with api.client("operator", data.code) as http:
        rows = http.get(f"/register_interval_hh?register_id=eq.{register}&limit=5000")
    assert rows.status_code == 200 and len(rows.json()) == 1000


def test_every_api_role_has_a_statement_timeout(db):
    timeouts = dict(db.execute(
        "SELECT r.rolname, (SELECT c FROM unnest(s.setconfig) AS c WHERE c LIKE 'statement_timeout=%')"
        " FROM pg_roles r LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0"
        " WHERE r.rolname IN ('flows_anon', 'flows_customer', 'flows_operator', 'flows_analyst', 'flows_admin',"
        " 'flows_service', 'flows_worker', 'grafanareader', 'flows_monitor')").fetchall())
    assert len(timeouts) == 9 and all(timeouts.values()), timeouts
    assert timeouts["flows_anon"] == "statement_timeout=3s" and timeouts["flows_monitor"] == "statement_timeout=10s"


def test_postgrest_applies_the_role_timeout(pg_server, template_db, tmp_path):
    """PostgREST sets the JWT role's statement_timeout for each request (impersonated role settings, read from
    the role's own settings when PostgREST starts): with the customer's cut to 1 ms, a customer's request is
    cancelled, an operator's is not. The role setting is put back at once."""
    name = f"flows_timeout_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            data = sample_esco(conn)
            register = data.registers[data.meters[0]][0]
            times = [datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=30 * k) for k in range(20000)]
            conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[],"
                         " %s::numeric[])", ([register] * len(times), times, [0.1] * len(times), [0] * len(times)))
            conn.execute("ALTER ROLE flows_customer SET statement_timeout = '1ms'")
            try:
                with start_postgrest(pg_server, name, tmp_path) as api:
                    with api.client("customer", data.code, customer=data.billing.customer) as http:
                        cut = http.get("/register_interval_hh?order=import_kwh.desc&limit=1")
                    with api.client("operator", data.code) as http:
                        fine = http.get("/register_interval_hh?order=import_kwh.desc&limit=1")
            finally:
                conn.execute("ALTER ROLE flows_customer SET statement_timeout = '5s'")
    assert cut.status_code == 500 and cut.json()["code"] == "57014", cut.text
    assert "statement timeout" in cut.json()["message"]
    assert fine.status_code == 200


def test_a_short_jwt_secret_is_refused_at_start_up(tmp_path):
    env = {**os.environ, "FLOWS_JWT_SECRET": "too-short-secret", "FLOWS_HOME": str(tmp_path)}
    result = subprocess.run([FLOWS, "token", "--role", "admin"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "at least 32 are needed" in result.stderr
    never = subprocess.run([FLOWS, "token", "--role", "admin", "--expires", "never"], capture_output=True, text=True,
                           env={**env, "FLOWS_JWT_SECRET": "s" * 40})
    assert never.returncode == 2 and "tokens always expire" in never.stderr
    stack = {"home": str(tmp_path), "pg_port": 1, "api_port": 2, "admin_port": 3, "jwt_secret": "short",
             "authenticator_password": "x", "worker_password": "y"}
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    up = subprocess.run([FLOWS, "up", "--no-demo"], capture_output=True, text=True,
                        env={**os.environ, "FLOWS_HOME": str(tmp_path)}, stdin=subprocess.DEVNULL)
    assert up.returncode == 2 and "the JWT secret has 5 characters" in up.stderr


def test_the_audit_trail_says_who_changed_what_and_never_holds_the_token(api):
    with api.sql() as conn:
        data = sample_esco(conn)
    token = api.token("operator", data.code, sub="alice@esco.example")
    headers = {**bearer(token), "X-Request-Id": "req-7f3a", "Prefer": "return=representation"}
    meter = data.meters[0]
    changed = httpx.patch(f"{api.base_url}/meter_registry?id=eq.{meter}", json={"name": "Plot 7 supply"},
                          headers=headers)
    assert changed.status_code == 200
    topup = httpx.post(f"{api.base_url}/rpc/send_token", json={"meter_id": meter, "amount": 12.5}, headers=headers)
    assert topup.status_code == 200

    with api.client("operator", data.code) as http:
        rows = http.get("/audit_log", params={"row_key->>id": f"eq.{meter}", "relation": "eq.flows.meter_registry",
                                              "operation": "eq.UPDATE", "order": "id.desc"}).json()
        assert rows, "no audit row for the rename"
        row = rows[0]
        assert (row["actor_sub"], row["actor_role"], row["actor_esco"], row["request_id"]) == (
            "alice@esco.example", "flows_operator", data.code, "req-7f3a")
        assert row["before"]["name"] != "Plot 7 supply" and row["after"]["name"] == "Plot 7 supply"
        assert row["esco"] == data.esco
        command = topup.json()[0]["id"]
        money = http.get("/audit_log", params={"row_key->>id": f"eq.{command}"}).json()
        assert money[0]["after"]["parameters"]["amount"] == "12.5" and money[0]["actor_sub"] == "alice@esco.example"
        with api.client("analyst", data.code) as analyst:
            assert analyst.get("/audit_log").status_code in (401, 403)
    with psycopg.connect(api.db_url) as conn:
        everything = conn.execute("SELECT string_agg(to_jsonb(a)::text, '') FROM flows.audit_log a").fetchone()[0]
    assert token not in everything and token.split(".")[2] not in everything

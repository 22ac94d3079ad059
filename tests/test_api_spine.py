"""The thin slice through every layer: SQL -> api views/RPC -> PostgREST -> HTTP."""

import time

import jwt
import pytest

from flows import factories
from flows.factories import new_serial


@pytest.fixture
def esco_with_meters(api):
    esco_id, code = api.new_esco()
    serials = sorted(new_serial() for _ in range(3))
    with api.sql() as conn:
        for i, s in enumerate(serials):
            factories.add_meter(conn, esco_id, s, hardware="C1.w", name=f"Water pump {i}" if i == 0 else f"Plot {i}",
                                mode="passive" if i == 2 else "active")
    return esco_id, code, serials


def test_list_meters_with_filter(api, esco_with_meters):
    _, code, serials = esco_with_meters
    with api.client("operator", code) as http:
        response = http.get("/meter_registry", params={"select": "id,serial,name", "serial": f"eq.{serials[0]}"})
    assert response.status_code == 200
    rows = response.json()
    assert [(r["serial"], r["name"]) for r in rows] == [(serials[0], "Water pump 0")]
    assert set(rows[0]) == {"id", "serial", "name"}


def test_get_meters_for_cli(api, esco_with_meters):
    _, code, serials = esco_with_meters
    with api.client("operator", code) as http:
        response = http.post("/rpc/get_meters_for_cli", json={"esco_filter": None, "feeder_filter": None})
    assert response.status_code == 200
    rows = response.json()
    # the passive meter is never contacted, so it is not listed
    assert [r["serial"] for r in rows] == serials[:2]
    assert set(rows[0]) == {
        "id", "ip_address", "serial", "name", "single_meter_app", "esco", "csq", "health", "hardware", "feeder",
    }
    assert rows[0]["esco"] == code and rows[0]["hardware"] == "C1.w"


def test_operator_sees_only_own_esco(api, esco_with_meters):
    _, other_code = api.new_esco()
    with api.client("operator", other_code) as http:
        assert http.get("/meter_registry", params={"serial": f"in.({','.join(esco_with_meters[2])})"}).json() == []
        rpc = http.post("/rpc/get_meters_for_cli", json={"esco_filter": esco_with_meters[1]}).json()
    assert rpc == []


def test_no_token_is_401(api):
    with api.client() as http:
        response = http.get("/meter_registry")
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message", "details", "hint"}


def test_anonymous_health(api):
    with api.client() as http:
        response = http.get("/rpc/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    "bad_token",
    [
        "not-a-jwt",
        "abc.def.ghi",
        jwt.encode({"role": "flows_admin"}, "a-different-secret-that-is-long-enough!", algorithm="HS256"),
    ],
)
def test_malformed_or_forged_jwt_is_401(api, bad_token):
    with api.client() as http:
        response = http.get("/meter_registry", headers={"Authorization": f"Bearer {bad_token}"})
    assert response.status_code == 401
    assert response.json()["code"].startswith("PGRST")


def test_expired_jwt_is_401(api):
    token = jwt.encode({"role": "flows_admin", "exp": int(time.time()) - 60}, api.jwt_secret, algorithm="HS256")
    with api.client() as http:
        response = http.get("/meter_registry", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["message"].lower()


def test_duplicate_serial_is_409_and_nothing_written(api, esco_with_meters):
    _, code, serials = esco_with_meters
    with api.client("operator", code) as http:
        response = http.post("/meter_registry", json={"serial": serials[0], "name": "duplicate"})
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "23505"
        assert "meter_registry_serial_key" in body["message"]
        assert set(body) == {"code", "message", "details", "hint"}
        names = http.get("/meter_registry", params={"serial": f"eq.{serials[0]}", "select": "name"}).json()
    assert names == [{"name": "Water pump 0"}]


def test_operator_registers_meter_in_own_esco(api, esco_with_meters):
    esco_id, code, _ = esco_with_meters
    new = new_serial()
    with api.client("operator", code) as http:
        response = http.post(
            "/meter_registry", json={"serial": new, "name": "New"}, headers={"Prefer": "return=representation"}
        )
    assert response.status_code == 201, response.text
    assert response.json()[0]["esco"] == esco_id


def test_openapi_describes_the_api(api):
    with api.client("operator", "DEMO") as http:
        spec = http.get("/").json()
    assert "/meter_registry" in spec["paths"]
    assert "/rpc/get_meters_for_cli" in spec["paths"]
    assert "Meters and their configuration" in spec["definitions"]["meter_registry"]["description"]

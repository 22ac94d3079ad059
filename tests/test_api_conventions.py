"""The query patterns existing clients use (docs/data-model.md, "Query
conventions"), through a real PostgREST, and the JSON error bodies for
400/401/403/404/409."""

import pytest

from tests.support.factory import sample_esco


@pytest.fixture(scope="module")
def esco(api):
    with api.sql() as conn:
        data = sample_esco(conn)
        conn.execute("UPDATE flows.meter_registry SET name = 'Water pump house' WHERE id = %s", (data.meters[1],))
    return data


@pytest.fixture(scope="module")
def operator(api, esco):
    with api.client("operator", esco.code) as http:
        yield http


def test_eq_filter(operator, esco):
    serial = operator.get("/meter_registry", params={"id": f"eq.{esco.meters[0]}", "select": "serial"}).json()[0]
    rows = operator.get("/meter_registry", params={"serial": f"eq.{serial['serial']}"}).json()
    assert [r["id"] for r in rows] == [esco.meters[0]]


def test_like_filter(operator, esco):
    rows = operator.get("/meter_registry", params={"name": "like.*Water*", "select": "id,name"}).json()
    assert rows == [{"id": esco.meters[1], "name": "Water pump house"}]


def test_multiple_conditions(operator, esco):
    rows = operator.get("/meter_registry", params={"mode": "eq.active", "esco": f"eq.{esco.esco}", "select": "id"})
    assert {r["id"] for r in rows.json()} == set(esco.meters)


def test_select_with_embedding(operator, esco):
    rows = operator.get("/meter_shadows", params={
        "select": "id,balance,meter_registry(serial,name)", "id": f"eq.{esco.meters[0]}"}).json()
    assert rows[0]["balance"] == 4.25  # the sample's last reading (the low-balance one, tests/support/factory.py)
    assert rows[0]["meter_registry"]["name"] == "C1.w meter"
    assert set(rows[0]["meter_registry"]) == {"serial", "name"}


def test_multi_column_order(api, esco):
    """Over two ESCOs (an admin's view), so that the first key has ties for the second to order."""
    with api.sql() as conn:
        other = sample_esco(conn)
    within = {"esco": f"in.({esco.esco},{other.esco})", "select": "esco,name"}
    with api.client("admin") as admin:
        rows = admin.get("/meter_registry", params={**within, "order": "esco.asc,name.asc"}).json()
        backwards = admin.get("/meter_registry", params={**within, "order": "esco.desc,name.desc"}).json()
        mixed = admin.get("/meter_registry", params={**within, "order": "esco.asc,name.desc"}).json()
    assert len({r["esco"] for r in rows}) == 2 and len(rows) == 6
    assert rows == sorted(rows, key=lambda r: (r["esco"], r["name"]))
    assert rows != sorted(rows, key=lambda r: r["name"]), "the ESCOs' names interleave: esco is the first key"
    assert backwards == rows[::-1]
    assert mixed == [r for e in sorted({r["esco"] for r in rows}) for r in rows[::-1] if r["esco"] == e]


def test_limit_offset(operator):
    everything = operator.get("/register_interval_hh", params={"order": "register_id,timestamp"}).json()
    page = operator.get("/register_interval_hh", params={"order": "register_id,timestamp", "limit": 10, "offset": 20})
    assert page.json() == everything[20:30]


def test_range_headers(operator):
    response = operator.get("/register_interval_hh", params={"order": "register_id,timestamp"},
                            headers={"Range-Unit": "items", "Range": "0-9", "Prefer": "count=exact"})
    assert response.status_code == 206
    assert len(response.json()) == 10
    first, total = response.headers["Content-Range"].split("/")
    assert first == "0-9" and int(total) > 10


def test_rpc(operator, esco):
    rows = operator.post("/rpc/get_meters_for_cli", json={"esco_filter": esco.code, "feeder_filter": None}).json()
    assert {r["id"] for r in rows} == set(esco.meters)
    on_f1 = operator.post("/rpc/get_meters_for_cli", json={"esco_filter": esco.code, "feeder_filter": "F1"}).json()
    no_feeder = operator.post("/rpc/get_meters_for_cli", json={"esco_filter": esco.code, "feeder_filter": "null"})
    # head H1 (feeder F1) serves the twin and the three-phase meter; H2 has no feeder
    assert {r["id"] for r in on_f1} == {esco.meters[0], esco.meters[2]}
    assert [r["id"] for r in no_feeder.json()] == [esco.meters[1]]
    assert on_f1[0]["csq"] is not None and on_f1[0]["health"] in ("healthy", "unhealthy")


def test_sites_new_alias(operator, esco):
    assert operator.get("/sites_new", params={"select": "id"}).json() == [{"id": esco.site}]


def test_aggregates_and_monitoring_are_served(operator, esco):
    assert operator.get("/site_interval_daily", params={"site_id": f"eq.{esco.site}"}).json()
    low = operator.get("/meters_low_balance", params={"select": "id,balance,threshold"}).json()
    assert low == [{"id": esco.meters[0], "balance": 4.25, "threshold": 15.00}]
    assert operator.get("/meters_clock_drift", params={"select": "id"}).json() == [{"id": esco.meters[0]}]


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}, body
    if code:
        assert body["code"] == code, body
    return body


def test_error_bodies(api, operator, esco):
    assert_error(operator.get("/meter_registry", params={"serial": "bogus.1"}), 400, "PGRST100")
    with api.client() as anonymous:
        assert_error(anonymous.get("/meter_registry"), 401, "42501")
    with api.client("analyst", esco.code) as analyst:
        assert_error(analyst.post("/sites", json={"code": "X", "name": "X"}), 403, "42501")
    assert_error(operator.get("/no_such_endpoint"), 404)
    serial = operator.get("/meter_registry", params={"select": "serial", "limit": 1}).json()[0]["serial"]
    assert_error(operator.post("/meter_registry", json={"serial": serial}), 409, "23505")


def test_openapi_describes_every_endpoint(api, operator):
    spec = operator.get("/").json()
    with api.client("admin") as admin:  # it also sees what is for administrators only (/workers)
        definitions = {**admin.get("/").json()["definitions"], **spec["definitions"]}
    with api.sql() as conn:
        views = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'api'::regnamespace AND relkind = 'v'")]
    undescribed = [v for v in views if not definitions.get(v, {}).get("description")]
    assert not undescribed, f"OpenAPI has no description for {undescribed}"
    assert spec["definitions"]["meter_shadows"]["properties"]["csq"]["description"].startswith("Cellular signal")
    assert "/rpc/register_meter" in spec["paths"]

"""Writes operators need (register meters, build topology) and the bad input
they must be told about: a 4xx naming the field, and nothing written."""

import pytest

from flows import factories
from flows.factories import new_serial


@pytest.fixture
def esco(api):
    return api.new_esco()


@pytest.fixture
def meter(api, esco) -> str:
    """A meter of the ESCO (no hardware: one SINGLE register)."""
    with api.sql() as conn:
        return factories.add_meter(conn, esco[0]).id


@pytest.fixture
def operator(api, esco):
    with api.client("operator", esco[1]) as http:
        yield http


def created(response):
    assert response.status_code in (200, 201), response.text
    return response.json()[0] if isinstance(response.json(), list) else response.json()


def post(http, path, body):
    return created(http.post(path, json=body, headers={"Prefer": "return=representation"}))


def test_operator_builds_topology_and_registers_meters(operator, esco):
    """The esco column defaults from the token; every link stays inside the ESCO."""
    site = post(operator, "/sites", {"code": "WL", "name": "Water Lilies", "capacity_kw": 200})
    assert site["esco"] == esco[0]
    plot = post(operator, "/properties", {"site": site["id"], "plot": "WL-01", "address": "1 Lily Lane"})
    feeder = post(operator, "/feeder_registry", {"name": "Feeder 1", "substation": "North", "rating_amps": 400})
    head = post(operator, "/service_head_registry", {"name": "SH-01", "phase": 2, "fuse_rating": 100,
                                                     "type": "network_owned", "feeder": feeder["id"]})
    post(operator, "/properties_service_head", {"property": plot["id"], "service_head": head["id"]})
    meter = created(operator.post("/rpc/register_meter", json={"serial": new_serial(), "hardware": "C1.w",
                                                               "site": site["id"], "ip_address": "10.0.0.5"}))
    assert sorted(r["element"] for r in meter["meter_registers"]) == ["A", "B"]
    post(operator, "/service_head_meter", {"service_head": head["id"], "meter": meter["id"]})
    circuit = post(operator, "/circuits", {"site": site["id"], "type": "power", "name": "Homes"})
    register = operator.get("/meter_registers", params={"meter_id": f"eq.{meter['id']}", "element": "eq.A"}).json()[0]
    link = post(operator, "/circuit_register", {"circuit": circuit["id"], "register": register["register_id"],
                                                "start_time": "2026-01-01T00:00:00Z"})
    # move the register: end the first range, start a new one where it ended
    other = post(operator, "/circuits", {"site": site["id"], "type": "heat", "name": "Heat"})
    moved = operator.patch("/circuit_register", params={"id": f"eq.{link['id']}"},
                           json={"end_time": "2026-06-01T00:00:00Z"})
    assert moved.status_code == 204, moved.text
    post(operator, "/circuit_register", {"circuit": other["id"], "register": register["register_id"],
                                         "start_time": "2026-06-01T00:00:00Z"})
    shadow = operator.get("/meter_shadows", params={"id": f"eq.{meter['id']}"}).json()
    assert len(shadow) == 1, "every meter gets its shadow"
    # a single-element meter gets one SINGLE register
    single = created(operator.post("/rpc/register_meter", json={"serial": new_serial(), "hardware": "B1.w"}))
    assert [r["element"] for r in single["meter_registers"]] == ["SINGLE"]


def test_cannot_link_across_escos(api, operator):
    other_id, other_code = api.new_esco()
    with api.client("operator", other_code) as other:
        foreign_site = post(other, "/sites", {"code": "X", "name": "Theirs"})
    response = operator.post("/properties", json={"site": foreign_site["id"], "plot": "P1"})
    assert response.status_code == 409 and "properties_site_esco_fkey" in response.json()["message"]


def count(api, table):
    with api.sql() as conn:
        return conn.execute(f"SELECT count(*) FROM flows.{table}").fetchone()[0]


def assert_refused(api, response, status, *words, table=None, before=None):
    assert response.status_code == status, response.text
    body = response.json()
    text = f"{body['message']} {body['details']} {body['hint']}"
    for word in words:
        assert word in text, f"{word!r} not in {body}"
    if table:
        assert count(api, table) == before, f"something was written to {table}"
    return body


def test_unknown_esco(api, esco):
    with api.client("operator", "NOPE") as stranger:
        assert_refused(api, stranger.get("/sites"), 403, "unknown ESCO", "'NOPE'", "esco claim")
        before = count(api, "sites")
        assert_refused(api, stranger.post("/sites", json={"code": "S", "name": "S"}), 403, "unknown ESCO",
                       table="sites", before=before)
    with api.client("admin") as admin:
        before = count(api, "sites")
        response = admin.post("/sites", json={"esco": "00000000-0000-4000-8000-000000000000", "code": "S",
                                              "name": "S"})
        assert_refused(api, response, 409, "esco", "is not present", table="sites", before=before)
        before = count(api, "sites")
        assert_refused(api, admin.post("/sites", json={"code": "S", "name": "S"}), 400, '"esco"', "null",
                       table="sites", before=before)


def test_duplicate_serial(api, operator):
    serial = new_serial()
    created(operator.post("/meter_registry", json={"serial": serial}, headers={"Prefer": "return=representation"}))
    before = count(api, "meter_registry")
    body = assert_refused(api, operator.post("/rpc/register_meter", json={"serial": serial}), 409,
                          "meter_registry_serial_key", table="meter_registry", before=before)
    assert body["code"] == "23505"
    assert count(api, "meter_registers") >= 0


def test_bad_serial_and_element(api, operator):
    before = count(api, "meter_registry")
    assert_refused(api, operator.post("/meter_registry", json={"serial": "ABC123"}), 400,
                   "meter_registry_serial_format", table="meter_registry", before=before)
    meter = created(operator.post("/rpc/register_meter", json={"serial": new_serial(), "hardware": "B1.w"}))
    before = count(api, "meter_registers")
    assert_refused(api, operator.post("/meter_registers", json={"meter_id": meter["id"], "element": "C"}), 400,
                   "meter_registers_element_valid", table="meter_registers", before=before)
    # and through register_meter: the meter is not kept without its registers
    before = count(api, "meter_registry")
    assert_refused(api, operator.post("/rpc/register_meter", json={"serial": new_serial(),
                                                                   "registers": [{"element": "C"}]}),
                   400, "meter_registers_element_valid", table="meter_registry", before=before)


def test_csq_out_of_range(api, meter):
    before = count(api, "meter_csq")
    with api.client("service") as service:
        response = service.post("/rpc/record_meter_state", json={
            "meter_id": str(meter), "observed_at": "2026-11-01T10:00:00Z", "state": {"csq": 45, "balance": 3}})
    assert_refused(api, response, 400, "csq", "45", table="meter_csq", before=before)
    assert count(api, "meter_prepay_balance") >= 0


def test_overlapping_circuit_ranges(api, operator):
    site = post(operator, "/sites", {"code": "OV", "name": "Overlap"})
    meter = created(operator.post("/rpc/register_meter", json={"serial": new_serial()}))
    register = meter["meter_registers"][0]["register_id"]
    first, second = (post(operator, "/circuits", {"site": site["id"], "type": "power", "name": n}) for n in "AB")
    post(operator, "/circuit_register", {"circuit": first["id"], "register": register,
                                         "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-03-01T00:00:00Z"})
    before = count(api, "circuit_register")
    response = operator.post("/circuit_register", json={"circuit": second["id"], "register": register,
                                                        "start_time": "2026-02-01T00:00:00Z"})
    assert_refused(api, response, 400, "circuit_register_register_time_overlap", "register",
                   table="circuit_register", before=before)
    response = operator.post("/circuit_register", json={"circuit": second["id"], "register": register,
                                                        "start_time": "2026-05-01T00:00:00Z",
                                                        "end_time": "2026-04-01T00:00:00Z"})
    assert_refused(api, response, 400, "circuit_register_end_after_start", table="circuit_register", before=before)


@pytest.mark.parametrize(("tariff", "words"), [
    ({"unit_rate_element_a": -0.1}, ["unit_rate_element_a", "between 0 and 1", "-0.1"]),
    ({"standing_charge": "2.5"}, ["standing_charge", "between 0 and 2"]),
    ({"unit_rate_element_a": "0.123456"}, ["unit_rate_element_a", "5 decimal places"]),
    ({"unit_rate": 0.2}, ["unknown", "unit_rate"]),
    ({"standing_charge": "cheap"}, ["standing_charge", "must be a number"]),
])
def test_bad_tariff(api, meter, tariff, words):
    before = count(api, "meter_tariff_history")
    with api.client("service") as service:
        response = service.post("/rpc/record_meter_state", json={
            "meter_id": str(meter), "observed_at": "2026-11-01T10:00:00Z", "state": {"tariffs_active": tariff}})
    assert_refused(api, response, 400, *words, table="meter_tariff_history", before=before)


def test_future_tariff_needs_activation(api, meter):
    with api.client("service") as service:
        response = service.post("/rpc/record_meter_state", json={
            "meter_id": str(meter), "observed_at": "2026-11-01T10:00:00Z",
            "state": {"tariffs_future": {"standing_charge": "0.5"}}})
    assert_refused(api, response, 400, "activation_datetime")

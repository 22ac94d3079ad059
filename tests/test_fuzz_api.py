"""Fuzzing the API from its OpenAPI document (schemathesis), for every role's
token: a short run per role, each operation with a few generated requests
(valid and invalid), reads first and then writes. No request may get a 5xx, and
no token of ESCO A may ever receive a row of ESCO B (any id B's rows carry).

The database is this module's own (two ESCOs built by the factory); PostgREST
serves the document each role is allowed to see (openapi-mode follow-privileges)."""

import json
import re
import uuid

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.api import start_postgrest
from tests.support.factory import sample_esco

pytestmark = pytest.mark.slow
EXAMPLES = 3  # per operation and role, valid and invalid requests: a short run for CI
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ROLES = {  # role -> claims besides the role (A's ESCO for the ESCO-bound ones)
    "admin": {}, "service": {}, "anon": None, "operator": {"esco": "A"}, "analyst": {"esco": "A"},
    "customer": {"esco": "A", "customer": "A"},
}
READ_METHODS = {"GET", "HEAD"}


@pytest.fixture(scope="module")
def fuzz_world(pg_server, template_db, tmp_path_factory):
    name = f"flows_fuzz_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            a, b = sample_esco(conn), sample_esco(conn)
        with start_postgrest(pg_server, name, tmp_path_factory.mktemp("fuzz")) as api:
            yield api, a, b


def headers_for(api, role: str, a) -> dict:
    claims = ROLES[role]
    if claims is None:
        return {}
    extra = {"customer": a.billing.customer} if role == "customer" else {}
    return {"Authorization": f"Bearer {api.token(role, a.code if 'esco' in claims else None, **extra)}"}


def foreign_ids(body: str, b_ids: set[str]) -> set[str]:
    return set(UUID.findall(body)) & b_ids


@pytest.mark.parametrize("role", list(ROLES))
def test_fuzz_the_api_as(role, fuzz_world):
    api, a, b = fuzz_world
    headers = headers_for(api, role, a)
    document = httpx.get(api.base_url + "/", headers=headers).json()
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    b_ids = b.ids() - a.ids()
    tenant_bound = ROLES[role] is not None and "esco" in ROLES[role]
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() not in READ_METHODS)  # reads while the data is whole
    requests = 0
    saw_other_esco = 0  # responses carrying B's ids: the check's own check (admins see every ESCO)
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as http:
        for operation in operations:

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                                  operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
            def exercise(case):
                nonlocal requests, saw_other_esco
                kwargs = case.as_transport_kwargs(base_url=api.base_url)
                response = http.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                        headers={**(kwargs.get("headers") or {}), **headers},
                                        content=kwargs.get("data"), json=kwargs.get("json"))
                requests += 1
                where = f"{case.method} {response.request.url}"
                if response.status_code >= 500:
                    problems.append(f"{where} -> {response.status_code} {response.text[:300]}")
                leaked = foreign_ids(response.text, b_ids)
                saw_other_esco += bool(leaked)
                if tenant_bound and leaked:
                    problems.append(f"{where} -> rows of another ESCO: {sorted(leaked)[:3]}")

            try:
                exercise()
            except Unsatisfiable:
                continue
    print(f"{role}: {requests} requests over {len(operations)} operations")
    if role == "admin":
        assert saw_other_esco, "the admin never saw ESCO B's rows: the leak check would see nothing either"
    assert requests >= len(operations), f"only {requests} requests for {len(operations)} operations"
    assert not problems, f"{role}: {len(problems)} problems in {requests} requests:\n" + "\n".join(problems[:15])


def test_every_role_sees_a_document_and_anon_sees_only_health(fuzz_world):
    api, a, _ = fuzz_world
    anon = httpx.get(api.base_url + "/").json()
    assert set(anon["paths"]) == {"/", "/rpc/health"}
    admin = httpx.get(api.base_url + "/", headers=headers_for(api, "admin", a)).json()
    assert {"/meter_registry", "/audit_log", "/api_keys", "/rpc/send_token"} <= set(admin["paths"])
    customer = httpx.get(api.base_url + "/", headers=headers_for(api, "customer", a)).json()
    assert "/audit_log" not in customer["paths"] and "/meter_registry" in customer["paths"]
    json.dumps(admin)  # a JSON document schemathesis can load

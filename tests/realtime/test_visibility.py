"""Who gets what: rows are read as each subscriber's role and claims, and a
key-only removal goes only to a subscriber whose view held the row before
(a deleted meter, a meter moved off a customer's property, a row leaving a
filter). Late clients resuming from an older position get the same rows, and
a resync where nobody can tell what they saw. Expired tokens are closed; bad
requests are refused with a clear message."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import websockets

from flows import auth
from tests.support.factory import sample_esco
from tests.support.realtime import SseClient, WsClient, head, until


def ops(received, key: str = "id") -> list[tuple[str, str]]:
    return [(c["op"], c["key"][key]) for m in received.events for c in m["changes"]]




async def test_removals_only_reach_those_who_saw_the_row(stack, gateway):
    api = stack.api
    with api.sql() as conn:
        a, b = sample_esco(conn), sample_esco(conn)
    m0, m1, m2 = a.meters
    customer1 = api.token("customer", a.code, customer=a.billing.customer)  # owner-occupier of P-01: m0, m2
    customer2 = api.token("customer", a.code, customer=a.billing.others["tenant.customer"])  # P-02's tenant: m1
    start = head(api.db_url)
    c1 = SseClient(gateway.url, customer1, "meter_shadows", since=start).start()
    c2 = SseClient(gateway.url, customer2, "meter_shadows", since=start).start()
    op_a = WsClient(gateway.ws_url, api.token("operator", a.code),
                    {"low": {"relation": "meter_shadows", "filter": {"balance": "lt.10"}},
                     "all": {"relation": "meter_shadows"}}, since=start).start()
    op_b = SseClient(gateway.url, api.token("operator", b.code), "meter_shadows", since=start).start()
    clients = [c1, c2, op_a, op_b]
    await until(lambda: all(c.connects == 1 for c in clients), what="connected")
    await asyncio.sleep(0.3)

    def state(meter, balance):
        return json.dumps([{"meter_id": meter, "observed_at": datetime.now(UTC).isoformat(), "balance": balance}])

    async def step(sql, *params):
        with api.sql() as conn:
            conn.execute(sql, params)
        position = head(api.db_url)
        await until(lambda: all(max([0, *r.ids()]) >= position for r in (op_a.received["all"],)), what=sql)
        await asyncio.sleep(0.3)

    await step("SELECT flows.record_meter_states(%s::jsonb)", state(m0, "3"))     # m0 under 10
    await step("SELECT flows.record_meter_states(%s::jsonb)", state(m0, "20"))    # m0 leaves the filter
    await step("DELETE FROM flows.service_head_meter WHERE meter = %s", m0)       # m0 leaves customer 1
    # A new meter, then behind customer 2's head, then deleted (each step delivered before the next, since
    # every event carries its row as it is when delivered).
    await step("SELECT api.register_meter(serial => 'EML3999000001', esco => %s)", a.esco)
    with api.sql() as conn:
        mx = str(conn.execute("SELECT id FROM flows.meter_registry WHERE serial = 'EML3999000001'").fetchone()[0])
    await step("INSERT INTO flows.service_head_meter (service_head, meter, esco) VALUES (%s, %s, %s)",
               a.heads[1], mx, a.esco)
    await step("DELETE FROM flows.meter_registry WHERE id = %s", mx)

    assert ops(c1.received) == [("upsert", m0), ("upsert", m0), ("remove", m0)]
    assert ops(c2.received) == [("upsert", mx), ("remove", mx)]
    assert ops(op_a.received["low"]) == [("upsert", m0), ("remove", m0)]
    assert ops(op_a.received["all"]) == [("upsert", m0)] * 3 + [("upsert", mx)] * 2 + [("remove", mx)]
    assert op_b.received.events == []
    assert all(not r.resyncs and not r.errors for r in (c1.received, c2.received, op_b.received,
                                                       *op_a.received.values()))
    assert c1.received.events[1]["changes"][0]["row"]["balance"] == 20  # the row as the customer reads it
    assert m1 not in {k for _, k in ops(c1.received)} and m2 not in {k for _, k in ops(c2.received)}

    # Late clients, resuming from the same start: no snapshot of the past to ask.
    late_b = SseClient(gateway.url, api.token("operator", b.code), "meter_shadows", since=start).start()
    late_a = SseClient(gateway.url, api.token("operator", a.code), "meter_shadows", since=start).start()
    late_c1 = SseClient(gateway.url, customer1, "meter_shadows", since=start).start()
    await until(lambda: late_c1.received.resyncs and late_a.received.events, what="late clients")
    await asyncio.sleep(0.5)
    assert late_b.received.events == [] and not late_b.received.resyncs  # another ESCO: certainly never seen
    # Operator A: m0 as it is now; mx came and went after the client's position, so nothing about it.
    assert ops(late_a.received) == [("upsert", m0)] * 3 and not late_a.received.resyncs
    # Customer 1 lost m0 while away: no one can tell whether it had the row, so it reloads.
    assert late_c1.received.events == [] and late_c1.received.resyncs[0]["id"] >= head(api.db_url) - 1
    for client in [*clients, late_a, late_b, late_c1]:
        await client.stop()


async def test_expired_tokens_are_closed(stack, gateway):
    api = stack.api
    _, code = api.new_esco()
    soon = datetime.now(UTC) + timedelta(seconds=2)
    token = auth.mint_token(api.jwt_secret, "operator", code, soon)
    ws = WsClient(gateway.ws_url, token, {"s": {"relation": "meter_shadows"}}).start()
    sse = SseClient(gateway.url, token, "meter_shadows").start()
    await until(lambda: ws.close_code == 4401 and sse.closed_reason == "token expired", timeout=10,
                what="closed at expiry")
    assert ws.connects == 1 and sse.connects == 1
    # An expired token is refused at the door.
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.url}/events/stream", params={"relation": "meter_shadows"},
                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.json()["message"] == "token expired"
    await ws.stop()
    await sse.stop()


async def test_a_fresh_token_extends_a_socket(stack, gateway):
    api = stack.api
    _, code = api.new_esco()
    short = auth.mint_token(api.jwt_secret, "operator", code, datetime.now(UTC) + timedelta(seconds=2))
    async with websockets.connect(gateway.ws_url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": short}))
        assert json.loads(await socket.recv())["type"] == "ready"
        longer = auth.mint_token(api.jwt_secret, "operator", code, datetime.now(UTC) + timedelta(minutes=5))
        await socket.send(json.dumps({"type": "auth", "token": longer}))
        assert json.loads(await socket.recv())["type"] == "ready"
        other = auth.mint_token(api.jwt_secret, "admin", None, datetime.now(UTC) + timedelta(minutes=5))
        await socket.send(json.dumps({"type": "auth", "token": other}))
        assert "same role and claims" in json.loads(await socket.recv())["message"]
        await asyncio.sleep(2.5)
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}  # still open past the first token's expiry


async def test_bad_requests_are_refused_clearly(stack, gateway):
    api = stack.api
    _, code = api.new_esco()
    token = api.token("operator", code)
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        none = await http.get("/events/stream", params={"relation": "meter_shadows"})
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        forged = await http.get("/events/stream", params={"relation": "meter_shadows"},
                                headers={"Authorization": f"Bearer {auth.mint_token('x' * 40, 'admin')}"})
        assert forged.status_code == 401 and "invalid token" in forged.json()["message"]
        anon = await http.get("/events/stream", params={"relation": "meter_shadows"},
                              headers={"Authorization": f"Bearer {api.token('anon')}"})
        assert anon.status_code == 401
        unknown = await http.get("/events/stream", params={"relation": "meter_readings"}, headers=bearer)
        assert unknown.status_code == 400 and "meter_shadows" in unknown.json()["message"]
        column = await http.get("/events/stream", params={"relation": "meter_shadows", "colour": "eq.red"},
                                headers=bearer)
        assert column.status_code == 400 and "colour" in column.json()["message"]
        value = await http.get("/events/stream", params={"relation": "meter_shadows", "balance": "lt.lots"},
                               headers=bearer)
        assert value.status_code == 400 and "lots" in value.json()["message"]
        operator = await http.get("/events/stream", params={"relation": "meter_shadows", "balance": "like.5"},
                                  headers=bearer)
        assert operator.status_code == 400 and "operators" in operator.json()["message"]
        stranger = api.token("customer", code, customer=str(uuid.uuid4()))
        customer = await http.get("/events/stream", params={"relation": "meter_commands"},
                                  headers={"Authorization": f"Bearer {stranger}"})
        assert customer.status_code == 400 and "permission denied" in customer.json()["message"]
    async with websockets.connect(f"{gateway.ws_url}?token={token}") as socket:
        assert json.loads(await socket.recv())["type"] == "ready"
        await socket.send(json.dumps({"type": "subscribe", "id": "x", "relation": "meter_shadows",
                                      "filter": {"id": "in.(a,b)"}}))
        reply = json.loads(await socket.recv())
        assert reply["type"] == "error" and reply["id"] == "x" and "uuid" in reply["message"]
        await socket.send("not json")
        assert "cannot read" in json.loads(await socket.recv())["message"]
    async with websockets.connect(gateway.ws_url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "nonsense"}))
        assert "invalid token" in json.loads(await socket.recv())["message"]
        await socket.wait_closed()
        assert socket.close_code == 4403
    assert token not in gateway.log()  # the query-string token never reaches the logs


async def test_a_snapshot_then_changes(stack, gateway):
    api = stack.api
    with api.sql() as conn:
        a = sample_esco(conn)
    token = api.token("operator", a.code)
    client = SseClient(gateway.url, token, "meter_shadows", snapshot="true", id=f"in.({a.meters[0]},{a.meters[1]})")
    client.start()
    await until(lambda: client.received.snapshots, what="snapshot")
    snapshot = client.received.snapshots[0]
    assert sorted(c["key"]["id"] for c in snapshot["changes"]) == sorted(a.meters[:2])
    with api.sql() as conn:
        conn.execute("SELECT flows.record_meter_states(%s::jsonb)", (json.dumps(
            [{"meter_id": m, "observed_at": datetime.now(UTC).isoformat(), "balance": "7"} for m in a.meters]),))
    await until(lambda: client.received.events, what="change after the snapshot")
    await asyncio.sleep(0.3)
    assert client.received.events[0]["id"] > snapshot["id"]
    assert {c["key"]["id"] for c in client.received.events[0]["changes"]} == set(a.meters[:2])
    await client.stop()

"""End to end: two ESCOs, WebSocket and SSE clients per ESCO and a customer,
while the real worker syncs emulated meters, pushes top-ups and rolls a tariff
out; the gateway is restarted in the middle. Each client gets exactly the
changes its token may see, in commit order, none twice, none of the other
tenant's; the expected changes come from the change log itself."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from flows import factories
from flows.emulator import MeterConfig
from tests.support.realtime import SseClient, WsClient, expected_changes, head, until
from tests.worker.conftest import new_esco, register, serials, wait_for

TARIFF = {"standing_charge": "0.6512", "unit_rate_element_a": "0.24567", "unit_rate_element_b": "0.19",
          "prepayment_emergency_credit": "10", "prepayment_ecredit_availability": "5",
          "prepayment_debt_recovery_rate": "0.3"}


def connect_customer(stack, esco: str, meter: str) -> str:
    """A property whose service head feeds ``meter``, and a customer living there; returns the customer id."""
    with stack.sql() as conn:
        site = conn.execute("INSERT INTO flows.sites (esco, code, name) VALUES (%s, %s, 'Site') RETURNING id",
                            (esco, "S" + uuid.uuid4().hex[:6])).fetchone()[0]
        prop = conn.execute("INSERT INTO flows.properties (esco, site, plot, address) VALUES (%s, %s, 'C-1', 'Road')"
                            " RETURNING id", (esco, site)).fetchone()[0]
        head_id = conn.execute("INSERT INTO flows.service_head_registry (esco, name, phase, fuse_rating, type)"
                               " VALUES (%s, %s, 1, 100, 'network_owned') RETURNING id",
                               (esco, "H" + uuid.uuid4().hex[:6])).fetchone()[0]
        conn.execute("INSERT INTO flows.properties_service_head (property, service_head, esco) VALUES (%s, %s, %s)",
                     (prop, head_id, esco))
        conn.execute("INSERT INTO flows.service_head_meter (service_head, meter, esco) VALUES (%s, %s, %s)",
                     (head_id, meter, esco))
        moved_in = conn.execute("SELECT date_bin('30 minutes', now() - interval '1 day', 'epoch')").fetchone()[0]
        return factories.onboard_customer(conn, prop, "Cara Customer", move_in=moved_in).customer


async def all_done(stack, escos: list[str]) -> None:
    def done():
        with stack.sql() as conn:
            return conn.execute("SELECT count(*) = 0 FROM flows.meter_commands WHERE esco = ANY (%s::uuid[])"
                                " AND status IN ('pending', 'running')", (escos,)).fetchone()[0]
    await wait_for(done, timeout=60)


async def test_each_client_gets_exactly_its_changes_in_commit_order_across_a_gateway_restart(
        stack, fleet_of, running_worker, gateway):
    api = stack.api
    esco_a, code_a = new_esco(stack)
    esco_b, code_b = new_esco(stack)
    fleet_a = await fleet_of(*(MeterConfig(serial=s, hardware=h)
                               for s, h in zip(serials(3, 801), ("C1.w", "B1.w", "C1.w"), strict=True)))
    fleet_b = await fleet_of(*(MeterConfig(serial=s, hardware="B1.w") for s in serials(2, 811)))
    meters_a, meters_b = register(stack, fleet_a, esco_a), register(stack, fleet_b, esco_b)
    customer_meter = meters_a[fleet_a.meters[0].serial]
    customer_id = connect_customer(stack, esco_a, customer_meter)
    customer_token = api.token("customer", code_a, customer=customer_id)
    operator_a, operator_b = api.token("operator", code_a), api.token("operator", code_b)
    start = head(api.db_url)

    every = {"shadows": {"relation": "meter_shadows"}, "commands": {"relation": "meter_commands"},
             "rollouts": {"relation": "tariff_rollouts"}}
    ws_a = WsClient(gateway.ws_url, operator_a, every, since=start).start()
    ws_b = WsClient(gateway.ws_url, operator_b, every, since=start, token_in_query=True).start()
    sse_a = SseClient(gateway.url, operator_a, "meter_shadows", since=start).start()
    sse_b = SseClient(gateway.url, operator_b, "meter_commands", since=start, kind="eq.send_token").start()
    customer = SseClient(gateway.url, customer_token, "meter_shadows", since=start).start()
    clients = [ws_a, ws_b, sse_a, sse_b, customer]
    await until(lambda: all(c.connects == 1 for c in clients), what="clients connected")
    await running_worker(stack.worker_url)

    async with api.async_client("operator", code_a) as http_a, api.async_client("operator", code_b) as http_b:
        # Syncs and top-ups in both ESCOs.
        for http in (http_a, http_b):
            response = await http.post("/rpc/request_sync", json={"metrics": ["prepay_balance", "csq"]})
            assert response.status_code == 200, response.text
        for http, meter in ((http_a, customer_meter), (http_b, meters_b[fleet_b.meters[0].serial])):
            response = await http.post("/rpc/send_token", json={"meter_id": meter, "amount": 5,
                                                                 "idempotency_key": uuid.uuid4().hex})
            assert response.status_code == 200, response.text
        await all_done(stack, [esco_a, esco_b])
        await asyncio.sleep(0.5)

        # The gateway goes away; work goes on: a tariff rollout in A, syncs in B.
        gateway.stop()
        activation = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0).isoformat()
        rollout = await http_a.post("/rpc/set_future_tariff",
                                    json={"tariff": {**TARIFF, "activation_datetime": activation}, "whole_esco": True})
        assert rollout.status_code == 200, rollout.text
        assert (await http_b.post("/rpc/request_sync", json={"metrics": ["prepay_balance"]})).status_code == 200
        await all_done(stack, [esco_a, esco_b])
        gateway.start()

        # Back: more top-ups and syncs while clients catch up.
        response = await http_a.post("/rpc/send_token", json={"meter_id": meters_a[fleet_a.meters[1].serial],
                                                               "amount": 7, "idempotency_key": uuid.uuid4().hex})
        assert response.status_code == 200, response.text
        assert (await http_a.post("/rpc/request_sync", json={"metrics": ["prepay_balance"]})).status_code == 200
        await all_done(stack, [esco_a, esco_b])
    end = head(api.db_url)

    with stack.sql() as conn:
        commands = {esco: {str(r[0]) for r in conn.execute("SELECT id FROM flows.meter_commands WHERE esco = %s",
                                                           (esco,))} for esco in (esco_a, esco_b)}
        tokens_b = {str(r[0]) for r in conn.execute(
            "SELECT id FROM flows.meter_commands WHERE esco = %s AND kind = 'send_token'", (esco_b,))}
        rollouts = {esco: {str(r[0]) for r in conn.execute(
            "SELECT DISTINCT batch_id FROM flows.meter_commands WHERE esco = %s AND batch_id IS NOT NULL", (esco,))}
            for esco in (esco_a, esco_b)}
    shadows_a, shadows_b = set(meters_a.values()), set(meters_b.values())
    expectations = [
        (ws_a.received["shadows"], "meter_shadows", shadows_a, "id"),
        (ws_a.received["commands"], "meter_commands", commands[esco_a], "id"),
        (ws_a.received["rollouts"], "tariff_rollouts", rollouts[esco_a], "rollout_id"),
        (ws_b.received["shadows"], "meter_shadows", shadows_b, "id"),
        (ws_b.received["commands"], "meter_commands", commands[esco_b], "id"),
        (ws_b.received["rollouts"], "tariff_rollouts", rollouts[esco_b], "rollout_id"),
        (sse_a.received, "meter_shadows", shadows_a, "id"),
        (sse_b.received, "meter_commands", tokens_b, "id"),
        (customer.received, "meter_shadows", {customer_meter}, "id"),
    ]
    wanted = [(received, expected_changes(api.db_url, relation, keys, start, end), key)
              for received, relation, keys, key in expectations]
    assert all(expected for _, expected, _ in wanted[:5]) and len(rollouts[esco_a]) == 1 and not rollouts[esco_b]

    def caught_up():
        return all(set(expected) <= set(received.ids()) for received, expected, _ in wanted)

    await until(caught_up, timeout=30, what="clients caught up")
    await asyncio.sleep(0.5)  # anything extra would arrive now
    for received, expected, key in wanted:
        ids = received.ids()
        assert ids == sorted(set(ids)), f"not in commit order, or duplicated: {ids}"
        assert received.by_position(key, "upsert") == expected
        # Removals: a resuming client whose filter hides rows it may read can be told to drop some it never had
        # (the gateway cannot know what it had at its position; it reveals nothing it could not read).
        removed = {k for keys in received.by_position(key, "remove").values() for k in keys}
        assert received is sse_b.received or not removed
        assert removed <= commands[esco_b] - tokens_b
        assert not received.resyncs and not received.errors
    assert all(c.connects == 2 for c in clients), "every client reconnected once"
    # None of the other tenant's ids, anywhere.
    seen_by_a = {k for received, _, key in wanted[:3] + wanted[6:7] + wanted[8:]
                 for keys in received.by_position(key).values() for k in keys}
    assert seen_by_a and not seen_by_a & (shadows_b | commands[esco_b] | rollouts[esco_b])
    # The customer's rows are its meter's shadow, as it reads it over the API.
    latest = customer.received.latest_rows()
    async with api.async_client("customer", code_a, customer=customer_id) as http:
        api_rows = (await http.get("/meter_shadows")).json()
    assert [row["id"] for row in api_rows] == [customer_meter] and latest[customer_meter] == api_rows[0]
    for client in clients:
        await client.stop()

"""Live updates through `flows gateway` vs the same clients polling PostgREST once a second.

World: 10 ESCOs with 300 meters each; each meter has a property, a service head
and a customer. A subscriber is either a customer watching its own meter's
shadow (meter_shadows?id=eq.ID, 90 %) or an operator dashboard watching every
meter of its ESCO (meter_shadows, 10 %), half over WebSocket and half over SSE.
Changes: 200 meter states per second for the run's duration, each its own
transaction through flows.record_meter_states (what the worker calls), each
with a balance no other change has, so every delivery is matched to its commit.

Phases, in one run, on one throwaway PostgreSQL cluster:
  writes only                (the database CPU the writes cost by themselves)
  realtime, 1,000 subscribers  vs  polling, the same 1,000 clients (GET once a second)
  realtime, 100 and 3,000 subscribers (what grows with subscribers)
Also: the cost of capture on writes (one writer, and four at once) with the
triggers on and off.

Reported: commit-to-delivery p50/p99 (commit = when the writer's COMMIT
returned; delivery = when the client had the message; same clock), and the
database CPU per delivered change: the cluster's CPU during the phase less what
its writes cost by themselves (the writes-only CPU per write times the phase's
writes: on a busy machine the writer may not reach its rate, and subtracting the
writes-only CPU per second would credit a phase with writes it never made),
divided by the changes clients received (polling: the changes a poll noticed).
The ratio subtracting per second is printed beside it. Targets: p50 >= 10x
lower, CPU per change >= 10x less.

usage: python bench/bench_realtime.py [--duration 60] [--scale-duration 20] [--rate 200]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report  # noqa: E402
from flows import factories  # noqa: E402
from flows.auth import mint_token  # noqa: E402
from flows.paths import POSTGREST_BIN, POSTGREST_CONF, ROOT  # noqa: E402
from flows.stack.postgres import free_port  # noqa: E402
from flows.stack.stack import wait_ready  # noqa: E402

FLOWS = str(Path(sys.executable).parent / "flows")
ESCOS, METERS_PER_ESCO = 10, 300
CLIENT_PROCESSES = 2
TICK = os.sysconf("SC_CLK_TCK")


# -- the world ----------------------------------------------------------------------
def build_world(conn) -> list[dict]:
    """ESCOs, meters, and a property + head + junction per meter; returns the meters."""
    meters = []
    for e in range(ESCOS):
        code = f"RT{e:02}"
        esco = conn.execute("INSERT INTO flows.escos (code, name) VALUES (%s, %s) RETURNING id",
                            (code, code)).fetchone()[0]
        site = conn.execute("INSERT INTO flows.sites (esco, code, name) VALUES (%s, %s, 'Site') RETURNING id",
                            (esco, code)).fetchone()[0]
        rows = conn.execute(
            """WITH m AS (SELECT api.register_meter(serial => 'EML' || (3600000000 + %s * 1000 + i)::text,
                                                    esco => %s, site => %s) ->> 'id' AS id, i
                          FROM generate_series(1, %s) AS i),
               p AS (INSERT INTO flows.properties (esco, site, plot, address)
                     SELECT %s, %s, 'P-' || i, 'Street' FROM m RETURNING id, plot),
               h AS (INSERT INTO flows.service_head_registry (esco, name, phase, fuse_rating)
                     SELECT %s, %s || '-H-' || i, 1, 100 FROM m RETURNING id, name)
            SELECT m.id, p.id, h.id FROM m JOIN p ON p.plot = 'P-' || m.i JOIN h ON h.name = %s || '-H-' || m.i""",
            (e, esco, site, METERS_PER_ESCO, esco, site, esco, code, code)).fetchall()
        for meter, prop, head in rows:
            conn.execute("INSERT INTO flows.properties_service_head (property, service_head, esco) VALUES (%s, %s, %s)",
                         (prop, head, esco))
            conn.execute("INSERT INTO flows.service_head_meter (service_head, meter, esco) VALUES (%s, %s, %s)",
                         (head, meter, esco))
        # a customer living in each home (api.onboard_customer, as operators do), who watches its own meter
        moved_in = conn.execute("SELECT date_bin('30 minutes', now() - interval '1 day', 'epoch')").fetchone()[0]
        onboarded = factories.onboard_customers(conn, [(prop, "Customer", None) for _, prop, _ in rows],
                                                move_in=moved_in)
        meters += [{"id": str(meter), "customer": made.customer, "esco": code}
                   for (meter, _, _), made in zip(rows, onboarded, strict=True)]
    return meters


def subscribers(meters: list[dict], count: int, secret: str) -> list[dict]:
    """``count`` clients: per ESCO, 10 % operators (all meters) and 90 % customers (their own meter)."""
    per_esco = count // ESCOS
    expires = datetime.now(UTC) + timedelta(days=1)
    operators = max(1, per_esco // 10)
    clients = []
    for e in range(ESCOS):
        code = f"RT{e:02}"
        mine = [m for m in meters if m["esco"] == code]
        operator = mint_token(secret, "operator", code, expires)
        for i in range(per_esco):
            if i < operators:
                clients.append({"token": operator, "meter": None})
            else:
                meter = mine[i - operators]
                clients.append({"token": mint_token(secret, "customer", code, expires,
                                                    {"customer": meter["customer"]}), "meter": meter["id"]})
    for i, client in enumerate(clients):
        client["transport"] = "ws" if i % 2 == 0 else "sse"
    return clients


# -- CPU ------------------------------------------------------------------------------
def process_cpu(pid: int, children_done: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])
    if children_done:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of the cluster: the postmaster, its live children, and the children that exited."""
    total = process_cpu(postmaster, children_done=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if int(text.rsplit(")", 1)[1].split()[1]) == postmaster:
                total += process_cpu(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


# -- processes --------------------------------------------------------------------------
def writer(url: str, meters: list[str], rate: float, duration: float, out: str, seed: int,
           connections: int = 4) -> None:
    """``rate`` meter states per second, each its own transaction, spread over a few connections (as workers
    do: one commit's fsync must not hold up the next); logs (meter, balance, commit time)."""
    import threading

    log = []

    def one(lane: int) -> None:
        rng = random.Random(seed * 100 + lane)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            n = 0
            while time.perf_counter() - started < duration:
                due = started + n / (rate / connections)
                if due > time.perf_counter():
                    time.sleep(due - time.perf_counter())
                meter = rng.choice(meters)
                # a balance no other change of this run has: deliveries are matched to commits by it
                balance = f"{seed % 50 * 10 + lane}.{n:05d}"
                observed = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
                conn.execute("SELECT flows.record_meter_states(%s::jsonb)",
                             (json.dumps([{"meter_id": meter, "observed_at": observed, "balance": balance}]),))
                log.append((meter, balance, time.time()))
                n += 1

    lanes = [threading.Thread(target=one, args=(lane,)) for lane in range(connections)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    Path(out).write_text(json.dumps(log))


def clients_process(mode: str, base: str, clients: list[dict], duration: float, out: str) -> None:
    asyncio.run(_clients(mode, base, clients, duration, out))


async def _clients(mode: str, base: str, clients: list[dict], duration: float, out: str) -> None:
    import httpx
    import websockets

    received: list[tuple[str, str, float]] = []
    ready = [0]
    stop_at = [None]

    def note(changes) -> None:
        now = time.time()
        for change in changes:
            row = change.get("row")
            if row and row.get("balance") is not None:
                received.append((change["key"]["id"], str(row["balance"]), now))

    async def ws_client(client):
        async with websockets.connect(f"{base.replace('http', 'ws')}/realtime", max_size=None, open_timeout=60,
                                      ping_interval=None) as socket:
            await socket.send(json.dumps({"type": "auth", "token": client["token"]}))
            await socket.recv()
            spec = {"type": "subscribe", "id": "s", "relation": "meter_shadows"}
            if client["meter"]:
                spec["filter"] = {"id": f"eq.{client['meter']}"}
            await socket.send(json.dumps(spec))
            ready[0] += 1
            while stop_at[0] is None or time.time() < stop_at[0]:
                try:
                    message = json.loads(await asyncio.wait_for(socket.recv(), 2))
                except TimeoutError:
                    continue
                if message.get("type") == "change":
                    note(message["changes"])

    async def sse_client(client, http):
        params = {"relation": "meter_shadows"}
        if client["meter"]:
            params["id"] = f"eq.{client['meter']}"
        async with http.stream("GET", f"{base}/events/stream", params=params,
                               headers={"Authorization": f"Bearer {client['token']}"}) as response:
            ready[0] += 1
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "change":
                    note(json.loads(line[6:])["changes"])
                if stop_at[0] is not None and time.time() > stop_at[0]:
                    return

    async def poller(client, http):
        # A plain keep-alive HTTP/1.1 connection per client: the baseline is PostgREST's cost, not a client
        # library's (httpx at 1,000 requests/s would use more CPU than the server).
        path = "/meter_shadows" + (f"?id=eq.{client['meter']}" if client["meter"] else "")
        host, port = base.removeprefix("http://").split(":")
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {client['token']}\r\n"
                   "Accept: application/json\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        last: dict[str, str] = {}
        first = True
        await asyncio.sleep(random.random())
        ready[0] += 1
        next_poll = time.monotonic()
        while stop_at[0] is None or time.time() < stop_at[0]:
            writer.write(request)
            rows = json.loads(await _read_response(reader))
            now = time.time()
            for row in rows:
                balance = str(row["balance"]) if row.get("balance") is not None else None
                if balance is not None and last.get(row["id"]) != balance:
                    if not first:
                        received.append((row["id"], balance, now))
                    last[row["id"]] = balance
            first = False
            next_poll += 1.0
            await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
        writer.close()

    limits = httpx.Limits(max_connections=None if mode == "realtime" else 200, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=limits) as http:
        tasks = []
        for client in clients:
            if mode == "poll":
                tasks.append(asyncio.create_task(poller(client, http)))
            elif client["transport"] == "ws":
                tasks.append(asyncio.create_task(ws_client(client)))
            else:
                tasks.append(asyncio.create_task(sse_client(client, http)))
            if len(tasks) % 50 == 0:
                await asyncio.sleep(0.05)
        while ready[0] < len(clients):
            await asyncio.sleep(0.1)
        Path(out + ".ready").write_text("1")
        while not Path(out + ".stop").exists():
            await asyncio.sleep(0.1)
        stop_at[0] = time.time() + 2.0  # what is in flight still arrives
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
    Path(out).write_text(json.dumps(received))


async def _read_response(reader) -> bytes:
    """The body of one HTTP/1.1 response (Content-Length or chunked, as PostgREST sends)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    if b"content-length:" in head:
        return await reader.readexactly(int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]))
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return body


def start_postgrest(url_for, secret: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port, admin = free_port(), free_port()
    process = subprocess.Popen([str(POSTGREST_BIN), str(POSTGREST_CONF)], cwd=ROOT, env={
        **os.environ, "PGRST_DB_URI": url_for("flows_authenticator"), "PGRST_JWT_SECRET": secret,
        "PGRST_SERVER_PORT": str(port), "PGRST_ADMIN_SERVER_PORT": str(admin), "PGRST_LOG_LEVEL": "error",
        "PGRST_DB_POOL": "20"}, stdout=open(workdir / "postgrest.log", "wb"), stderr=subprocess.STDOUT)
    if not wait_ready(f"http://127.0.0.1:{admin}/ready", 30, alive=lambda: process.poll() is None):
        raise RuntimeError("PostgREST did not start")
    return process, f"http://127.0.0.1:{port}"


def start_gateway(url_for, secret: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([FLOWS, "gateway", "--port", str(port), "--queue-limit", "5000"], env={
        **os.environ, "FLOWS_DATABASE_URL": url_for("flows_authenticator"), "FLOWS_JWT_SECRET": secret,
        "FLOWS_LOG_LEVEL": "INFO", "FLOWS_LOG_FORMAT": "json"},
        stdout=open(workdir / "gateway.log", "ab"), stderr=subprocess.STDOUT)
    if not wait_ready(f"http://127.0.0.1:{port}/health", 30, alive=lambda: process.poll() is None):
        raise RuntimeError("the gateway did not start")
    return process, f"http://127.0.0.1:{port}"


# -- phases ------------------------------------------------------------------------------
def run_phase(mode, base, clients, admin_url, meters, rate, duration, postmaster, workdir, server_pid=None) -> dict:
    spawn = multiprocessing.get_context("spawn")
    chunks = [clients[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)] if clients else []
    outs = [str(workdir / f"{mode}-{len(clients)}-{i}.json") for i in range(len(chunks))]
    for out in outs:
        for suffix in (".ready", ".stop"):
            Path(out + suffix).unlink(missing_ok=True)
    procs = [spawn.Process(target=clients_process, args=(mode, base, chunk, duration, out))
             for chunk, out in zip(chunks, outs, strict=True)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 300
    while not all(Path(o + ".ready").exists() for o in outs):
        if time.monotonic() > deadline:
            raise RuntimeError("clients did not connect")
        time.sleep(0.2)
    time.sleep(2.0)  # settle (connections established, first polls done)
    write_log = str(workdir / f"writes-{mode}-{len(clients)}.json")
    gauges = gateway_metrics(base) if mode == "realtime" else {}
    cpu_db, cpu_server, started = cluster_cpu(postmaster), process_cpu(server_pid) if server_pid else 0, time.time()
    w = spawn.Process(target=writer, args=(admin_url, meters, rate, duration, write_log, len(clients) + 7))
    w.start()
    w.join()
    cpu_db = cluster_cpu(postmaster) - cpu_db
    cpu_server = (process_cpu(server_pid) - cpu_server) if server_pid else 0
    elapsed = time.time() - started
    if mode == "realtime":
        gauges = {k: v - gauges.get(k, 0) for k, v in gateway_metrics(base).items()}
    for out in outs:
        Path(out + ".stop").write_text("1")
    for p in procs:
        p.join(120)
    commits = {(m, str(Decimal(b).normalize())): t for m, b, t in json.loads(Path(write_log).read_text())}
    latencies = []
    for out in outs:
        for meter, balance, seen in json.loads(Path(out).read_text()):
            committed = commits.get((meter, str(Decimal(balance).normalize())))
            if committed is not None:
                latencies.append(seen - committed)
    latencies.sort()
    return {"mode": mode, "clients": len(clients), "writes": len(commits), "elapsed": elapsed, "cpu_db": cpu_db,
            "cpu_server": cpu_server, "delivered": len(latencies),
            "p50": _pct(latencies, 50), "p99": _pct(latencies, 99), "gateway": gauges}


def gateway_metrics(base: str) -> dict[str, float]:
    """Counters of the gateway's feed: steps, their seconds, reads as an audience."""
    import urllib.request

    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    wanted = ("flows_gateway_step_seconds_count", "flows_gateway_step_seconds_sum", "flows_gateway_commits_total",
              "flows_gateway_audience_reads_total")
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def write_cost(admin_url: str, meters: list[str], seconds: float, rounds: int = 3) -> dict:
    """Transactions per second of record_meter_states with capture on and off (alternating, median of
    ``rounds``), one connection and four at once, as fast as they go."""
    samples: dict[tuple[bool, int], list[float]] = {}
    spawn = multiprocessing.get_context("spawn")
    for round_ in range(rounds):
        for capture in (True, False):
            set_capture(admin_url, capture)
            for connections in (1, 4):
                log = tempfile.mktemp(suffix=".json")
                p = spawn.Process(target=writer, args=(admin_url, meters, 1e9, seconds, log, 40 + round_,
                                                       connections))
                p.start()
                p.join()
                samples.setdefault((capture, connections), []).append(len(json.loads(Path(log).read_text())) / seconds)
                Path(log).unlink()
    set_capture(admin_url, True)
    return {key: statistics.median(values) for key, values in samples.items()}


def set_capture(admin_url: str, on: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for operation in ("insert", "update", "delete"):
            conn.execute(f"ALTER TABLE flows.meter_shadows {'ENABLE' if on else 'DISABLE'}"
                         f" TRIGGER meter_shadows_realtime_{operation}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the 1,000-subscriber comparison")
    parser.add_argument("--scale-duration", type=float, default=20.0, help="seconds of the 100 and 3,000 runs")
    parser.add_argument("--rate", type=float, default=200.0, help="row changes per second")
    args = parser.parse_args()
    secret = secrets.token_urlsafe(40)
    with database() as admin_url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(os.environ.get("FLOWS_BENCH_WORKDIR") or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            password = secrets.token_urlsafe(12)
            conn.execute(f"ALTER ROLE flows_authenticator PASSWORD '{password}'")
            conn.execute("ALTER ROLE flows_customer SET statement_timeout = '30s'")
            datadir = conn.execute("SHOW data_directory").fetchone()[0]
            print(f"building {ESCOS} ESCOs x {METERS_PER_ESCO} meters ...", flush=True)
            meters = build_world(conn)
        postmaster = int(Path(datadir, "postmaster.pid").read_text().split()[0])

        def url_for(user):
            return admin_url.replace("postgresql://postgres@", f"postgresql://{user}:{password}@")

        meter_ids = [m["id"] for m in meters]
        print("write cost of capture ...", flush=True)
        costs = write_cost(admin_url, meter_ids, 5.0)
        print("writes only ...", flush=True)
        idle = run_phase("none", "", [], admin_url, meter_ids, args.rate, args.scale_duration, postmaster, workdir)
        idle_rate = idle["cpu_db"] / idle["elapsed"]

        gateway, gateway_url = start_gateway(url_for, secret, workdir)
        postgrest, api_url = start_postgrest(url_for, secret, workdir)
        phases = {}
        try:
            for count, duration in ((1000, args.duration), (100, args.scale_duration), (3000, args.scale_duration)):
                print(f"realtime, {count} subscribers ...", flush=True)
                phases[("realtime", count)] = run_phase("realtime", gateway_url, subscribers(meters, count, secret),
                                                        admin_url, meter_ids, args.rate, duration, postmaster,
                                                        workdir, gateway.pid)
                if count == 1000:
                    print("polling, 1000 clients ...", flush=True)
                    phases[("poll", 1000)] = run_phase("poll", api_url, subscribers(meters, 1000, secret), admin_url,
                                                       meter_ids, args.rate, duration, postmaster, workdir,
                                                       postgrest.pid)
        finally:
            for process in (gateway, postgrest):
                process.send_signal(signal.SIGTERM)
                process.wait(20)

    idle_per_write = idle["cpu_db"] / max(1, idle["writes"])

    def per_change(phase, by_time: bool = False):
        writes_cost = idle_rate * phase["elapsed"] if by_time else idle_per_write * phase["writes"]
        return max(0.0, phase["cpu_db"] - writes_cost) / max(1, phase["delivered"])

    live, poll = phases[("realtime", 1000)], phases[("poll", 1000)]
    lines = [f"writes only: {idle['writes'] / idle['elapsed']:.0f} changes/s, database CPU "
             f"{idle_rate * 100:.0f} % of a core"]
    for key in (("realtime", 100), ("realtime", 1000), ("realtime", 3000), ("poll", 1000)):
        p = phases[key]
        lines.append(
            f"{key[0]:8} {p['clients']:>5} clients: {p['writes'] / p['elapsed']:.0f} changes/s, {p['delivered']} "
            f"delivered, commit-to-client p50 {p['p50'] * 1000:.1f} ms p99 {p['p99'] * 1000:.1f} ms; database CPU "
            f"{(p['cpu_db'] / p['elapsed']) * 100:.0f} % of a core ({per_change(p) * 1e6:.0f} us per delivered change "
            f"over the writes), {'gateway' if key[0] == 'realtime' else 'PostgREST'} CPU "
            f"{p['cpu_server'] / p['elapsed'] * 100:.0f} %")
        if g := p.get("gateway"):
            steps = max(1.0, g.get("flows_gateway_step_seconds_count", 0))
            step_ms = g.get("flows_gateway_step_seconds_sum", 0) / steps * 1000
            lines.append(f"{'':15}gateway: {steps / p['elapsed']:.0f} steps/s of {step_ms:.1f} ms, "
                         f"{g.get('flows_gateway_commits_total', 0) / steps:.1f} commits and "
                         f"{g.get('flows_gateway_audience_reads_total', 0) / steps:.1f} audience reads per step")
    lines.append("capture cost on writes (record_meter_states, transactions/s): "
                 + ", ".join(f"{w} connection{'s' if w > 1 else ''}: {costs[(True, w)]:.0f} with capture vs "
                             f"{costs[(False, w)]:.0f} without ({(1 - costs[(True, w)] / costs[(False, w)]) * 100:.0f}"
                             " % fewer)" for w in (1, 4)))
    latency_ratio = poll["p50"] / live["p50"]
    cpu_ratio = per_change(poll) / max(per_change(live), 1e-9)
    lines.append(f"p50 latency: polling / realtime = {latency_ratio:.1f}x (target >= 10x)")
    by_time = per_change(poll, by_time=True) / max(per_change(live, by_time=True), 1e-9)
    lines.append(f"database CPU per delivered change: polling / realtime = {cpu_ratio:.1f}x (target >= 10x; "
                 f"subtracting the writes-only CPU per second instead of per write: {by_time:.1f}x)")
    report("realtime vs polling (1,000 clients, 200 changes/s)", min(latency_ratio, cpu_ratio), 10, lines)


if __name__ == "__main__":
    main()

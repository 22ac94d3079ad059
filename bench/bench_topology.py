"""The price of the scaled topology, row-level security and the audit trail,
each measured against its baseline in the same run, on this machine.

1. API reads at 50 concurrent clients (wrk): through nginx + two PostgREST +
   PgBouncer (`flows up --topology scaled`) vs one PostgREST straight on
   PostgreSQL. Requests/s and p99; target: p99 ratio <= 1.3.
2. 2,000 concurrent database clients (asyncpg), each running an API-shaped
   transaction: through PgBouncer every one is served; straight to PostgreSQL
   (max_connections 200) most are turned away.
3. The same read as an operator through the api views under RLS vs as the
   owner on the bare tables with the ESCO in the WHERE clause (pgbench);
   target: latency ratio <= 1.25.
4. Writes (a meter renamed; a meter registered with its registers) with the
   audit trail vs with its triggers disabled (pgbench); target: ratio <= 1.3.

Data: 50 ESCOs of 100 meters (passive, so the workers leave them alone).
Run: .venv/bin/python bench/bench_topology.py [--seconds 10] [--only reads|clients|rls|audit]
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import psycopg

from flows.paths import POSTGREST_BIN, POSTGREST_CONF, ROOT, pg_bindir
from flows.stack.postgres import free_port
from flows.stack.stack import wait_ready

FLOWS = str(Path(sys.executable).parent / "flows")
ESCOS, METERS = 50, 100
READ_PATH = "/meter_shadows?select=balance,health,meter_registry(serial,name)&order=id&limit=50"
READ_SQL = {
    "rls": """SELECT s.balance, s.health, m.serial, m.name FROM api.meter_shadows AS s
              JOIN api.meter_registry AS m ON m.id = s.id ORDER BY m.serial LIMIT 50;""",
    "bare": """SELECT s.balance, s.health, m.serial, m.name FROM flows.meter_shadows AS s
               JOIN flows.meter_registry AS m ON m.id = s.id,
               (SELECT e.id FROM flows.escos AS e WHERE e.code = 'B' || lpad(:n::text, 3, '0')) AS e
               WHERE m.esco = e.id AND s.esco = e.id
               ORDER BY m.serial LIMIT 50;""",
}
AS_OPERATOR = """BEGIN;
SET LOCAL ROLE flows_operator;
SELECT set_config('request.jwt.claims', json_build_object('role', 'flows_operator', 'sub', 'bench',
                                                          'esco', 'B' || lpad(:n::text, 3, '0'))::text, true);
{body}
COMMIT;
"""
PICK = "\\set n random(1, {escos})\n\\set k random(1, {meters})\n"


def flows(env: dict, *args: str) -> str:
    result = subprocess.run([FLOWS, *args], capture_output=True, text=True, env={**os.environ, **env},
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"flows {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def load(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO flows.escos (code, name) SELECT 'B' || lpad(n::text, 3, '0'), 'Bench ESCO ' || n
            FROM generate_series(1, %s) AS n ON CONFLICT DO NOTHING""", (ESCOS,))
        conn.execute("""
            SELECT api.register_meter(serial => 'EML' || (9000000000 + n * 1000 + k), name => 'Home ' || k,
                                      hardware => CASE WHEN k %% 4 = 0 THEN 'B1.w' ELSE 'C1.w' END,
                                      mode => 'passive', esco => e.id)
            FROM generate_series(1, %s) AS n CROSS JOIN generate_series(1, %s) AS k
            JOIN flows.escos AS e ON e.code = 'B' || lpad(n::text, 3, '0')
            WHERE NOT EXISTS (SELECT FROM flows.meter_registry WHERE serial = 'EML' || (9000000000 + n * 1000 + k))""",
                     (ESCOS, METERS))
        conn.execute("UPDATE flows.meter_shadows SET balance = round((random() * 60)::numeric, 2), health = 'healthy'")
        conn.execute("CREATE SEQUENCE IF NOT EXISTS public.bench_serial START 8000000000")
        conn.execute("GRANT USAGE ON SEQUENCE public.bench_serial TO flows_operator")
        conn.execute("ANALYZE")


# -- 1. reads through the topology ------------------------------------------
def wrk(url: str, token: str, seconds: int, clients: int = 50) -> tuple[float, float]:
    """(requests/s, p99 ms) of GET url at ``clients`` connections."""
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          "-H", f"Authorization: Bearer {token}", url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} failed requests at {url}:\n{out}")
    return rate, p99


def direct_postgrest(config: dict, home: Path) -> tuple[subprocess.Popen, str]:
    port, admin = free_port(), free_port()
    log = open(home / "direct-postgrest.log", "wb")
    process = subprocess.Popen([str(POSTGREST_BIN), str(POSTGREST_CONF)], stdout=log, stderr=subprocess.STDOUT, env={
        **os.environ, "PGRST_JWT_SECRET": config["jwt_secret"], "PGRST_SERVER_PORT": str(port),
        "PGRST_ADMIN_SERVER_PORT": str(admin),
        "PGRST_DB_URI": f"postgresql://flows_authenticator:{config['authenticator_password']}@127.0.0.1:"
                        f"{config['pg_port']}/flows"})
    if not wait_ready(f"http://127.0.0.1:{admin}/ready", 30, alive=lambda: process.poll() is None):
        sys.exit("the direct PostgREST did not start")
    return process, f"http://127.0.0.1:{port}"


def bench_reads(config: dict, token: str, home: Path, seconds: int) -> float:
    process, direct = direct_postgrest(config, home)
    scaled = f"http://127.0.0.1:{config['proxy_port']}"
    try:
        for url in (direct, scaled):  # warm both
            wrk(url + READ_PATH, token, 3)
        runs = {"direct": [], "scaled": []}
        for _ in range(5):  # alternate, in case the machine's load moves; compare each pair
            runs["direct"].append(wrk(direct + READ_PATH, token, seconds))
            runs["scaled"].append(wrk(scaled + READ_PATH, token, seconds))
    finally:
        process.terminate()
        process.wait(10)
    direct_rate = statistics.median(r for r, _ in runs["direct"])
    direct_p99 = statistics.median(p for _, p in runs["direct"])
    scaled_rate = statistics.median(r for r, _ in runs["scaled"])
    scaled_p99 = statistics.median(p for _, p in runs["scaled"])
    pairs = [s[1] / d[1] for d, s in zip(runs["direct"], runs["scaled"], strict=True)]
    ratio = statistics.median(pairs)
    print("# API reads, 50 clients (wrk), GET " + READ_PATH + f" (medians of {len(pairs)} alternating runs)")
    print(f"  one PostgREST, direct:              {direct_rate:8.0f} req/s   p99 {direct_p99:6.1f} ms")
    print(f"  nginx + 2 PostgREST + PgBouncer:    {scaled_rate:8.0f} req/s   p99 {scaled_p99:6.1f} ms")
    print(f"  p99 ratio {ratio:.2f}x (median of the pairs {', '.join(f'{r:.2f}' for r in pairs)}; target <= 1.3x), "
          f"throughput ratio {scaled_rate / direct_rate:.2f}x")
    return ratio


# -- 2. 2,000 clients --------------------------------------------------------
async def many_clients(url: str, count: int) -> tuple[int, list[str], float]:
    """``count`` clients connected at once (handshakes 100 at a time), then all running their transaction
    together; returns (served, errors, seconds)."""
    handshakes = asyncio.Semaphore(100)
    all_connected = asyncio.Event()
    connected = 0

    async def one(i: int):
        nonlocal connected
        async with handshakes:
            try:
                conn = await asyncpg.connect(url, statement_cache_size=0, timeout=60)
            finally:
                connected += 1
                if connected == count:
                    all_connected.set()
        try:
            await all_connected.wait()
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE flows_operator")
                await conn.execute("SELECT set_config('request.jwt.claims', $1, true)",
                                   json.dumps({"role": "flows_operator", "esco": f"B{i % ESCOS + 1:03d}"}))
                await conn.fetch("SELECT serial, name FROM api.meter_registry ORDER BY serial LIMIT 10")
        finally:
            await conn.close()

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, Exception)]
    return count - len(errors), errors, time.perf_counter() - started


def bench_clients(config: dict) -> None:
    password = config["authenticator_password"]
    direct = f"postgresql://flows_authenticator:{password}@127.0.0.1:{config['pg_port']}/flows"
    pooled = f"postgresql://flows_authenticator:{password}@127.0.0.1:{config['pgbouncer_port']}/flows"
    print("# 2,000 database clients connected at once, then one API-shaped transaction each")
    # PgBouncer first: while PostgreSQL turns clients away, PgBouncer's own logins fail too and it then
    # refuses clients for server_login_retry (15 s)
    for name, url in (("through PgBouncer", pooled), ("direct to PostgreSQL", direct)):
        served, errors, wall = asyncio.run(many_clients(url, 2000))
        reasons = sorted({e[:90] for e in errors})[:2]
        print(f"  {name:22} {served:5} served, {len(errors):5} refused, {wall:5.1f} s  {'; '.join(reasons)}")
    print("  (PostgreSQL allows 200 connections; PgBouncer keeps 40 + 10 to it for all the clients)")


# -- 3 and 4: pgbench --------------------------------------------------------
def pgbench(url: str, script: str, seconds: int, workdir: Path, name: str, clients: int = 8) -> tuple[float, float]:
    """(mean ms, p99 ms) per transaction of ``script``."""
    path = workdir / f"{name}.sql"
    path.write_text(script)
    logs = workdir / name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    result = subprocess.run([str(pg_bindir() / "pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds),
                             "-f", str(path), "-l", "--log-prefix", str(logs / "tx"), url],
                            capture_output=True, text=True)
    if result.returncode != 0 or "failed" in result.stdout and " 0 (0.000%)" not in result.stdout:
        sys.exit(f"pgbench {name} failed:\n{result.stdout}\n{result.stderr}")
    latencies = sorted(int(line.split()[2]) / 1000 for f in logs.iterdir() for line in f.read_text().splitlines())
    return statistics.fmean(latencies), latencies[int(len(latencies) * 0.99)]


def bench_rls(config: dict, admin_url: str, workdir: Path, seconds: int) -> float:
    """Both log in the same way (over the socket) and run the same transaction: as PostgREST does it
    (authenticator, SET LOCAL ROLE, claims) through the api views, or as the owner (who bypasses RLS) on the
    tables with the ESCO in the WHERE clause."""
    pick = PICK.format(escos=ESCOS, meters=METERS)
    rls = pick + AS_OPERATOR.format(body=READ_SQL["rls"])
    bare = pick + AS_OPERATOR.replace("SET LOCAL ROLE flows_operator;", "SET LOCAL ROLE flows_owner;").format(
        body=READ_SQL["bare"])
    operator_url = admin_url.replace("postgres@", "flows_authenticator@")
    pgbench(operator_url, rls, 2, workdir, "warm-rls")
    pgbench(admin_url, bare, 2, workdir, "warm-bare")
    runs = {"rls": [], "bare": []}
    for _ in range(2):
        runs["rls"].append(pgbench(operator_url, rls, seconds, workdir, "rls"))
        runs["bare"].append(pgbench(admin_url, bare, seconds, workdir, "bare"))
    rls_mean, rls_p99 = (statistics.median(r[i] for r in runs["rls"]) for i in (0, 1))
    bare_mean, bare_p99 = (statistics.median(r[i] for r in runs["bare"]) for i in (0, 1))
    ratio = rls_mean / bare_mean
    print("# The same read: 50 meters of one ESCO with their balance (pgbench, 8 clients, median of 2 runs)")
    print(f"  bare tables, ESCO in WHERE (owner):   mean {bare_mean:6.2f} ms   p99 {bare_p99:6.2f} ms")
    print(f"  api views under RLS (operator):       mean {rls_mean:6.2f} ms   p99 {rls_p99:6.2f} ms")
    print(f"  latency ratio {ratio:.2f}x (target <= 1.25x)")
    return ratio


def bench_audit(config: dict, admin_url: str, workdir: Path, seconds: int) -> float:
    operator_url = admin_url.replace("postgres@", "flows_authenticator@")
    pick = PICK.format(escos=ESCOS, meters=METERS)
    rename = pick + AS_OPERATOR.format(
        body="UPDATE api.meter_registry SET name = 'Home ' || :k || ' (' || random() || ')' "
             "WHERE serial = 'EML' || (9000000000 + :n * 1000 + :k);")
    register = pick + AS_OPERATOR.format(
        body="SELECT api.register_meter(serial => 'EML' || nextval('public.bench_serial'), hardware => 'C1.w', "
             "mode => 'passive');")
    triggers = [f"{table} {trigger}" for table in ("flows.meter_registry", "flows.meter_registers")
                for trigger in ("audit_insert", "audit_update")]

    def audit(enabled: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for item in triggers:
                table, trigger = item.split()
                conn.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {trigger}")

    results = {}
    try:
        for name, script in (("rename", rename), ("register", register)):
            for enabled in (True, False):
                audit(enabled)
                pgbench(operator_url, script, 2, workdir, "warm")
                results[name, enabled] = pgbench(operator_url, script, seconds, workdir, f"{name}-{enabled}")
    finally:
        audit(True)
    print("# Writes as an operator, with the audit trail vs without (pgbench, 8 clients)")
    ratios = []
    for name, what in (("rename", "rename a meter (UPDATE, 1 audit row)"),
                       ("register", "register a meter (3 INSERTs, 3 audit rows)")):
        with_mean, with_p99 = results[name, True]
        without_mean, without_p99 = results[name, False]
        ratios.append(with_mean / without_mean)
        print(f"  {what}: without {without_mean:6.2f} ms (p99 {without_p99:6.2f}), with {with_mean:6.2f} ms "
              f"(p99 {with_p99:6.2f}): {with_mean / without_mean:.2f}x")
    print(f"  worst ratio {max(ratios):.2f}x (target <= 1.3x)")
    return max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="Length of each measured run.")
    parser.add_argument("--only", choices=("reads", "clients", "rls", "audit"), action="append",
                        help="Run only these parts (repeatable; default all).")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/setup.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="flows-bench-topology-", dir="/tmp"))
    base.chmod(0o755)
    env = {"FLOWS_HOME": str(base / "home"), "FLOWS_PG_PORT": str(free_port()), "FLOWS_API_PORT": str(free_port()),
           "FLOWS_DATABASE_URL": "", "FLOWS_JWT_SECRET": ""}
    try:
        print("starting the scaled topology (flows up --topology scaled --no-demo) ...", flush=True)
        flows(env, "up", "--topology", "scaled", "--no-demo")
        status = json.loads(flows(env, "status", "--json"))
        config = json.loads((base / "home" / "stack.json").read_text())
        admin_url = status["postgresql"]["url"]
        print(f"loading {ESCOS} ESCOs of {METERS} meters ...", flush=True)
        load(admin_url)
        token = flows(env, "token", "--role", "operator", "--esco", "B001").strip()
        parts = set(args.only or ("reads", "clients", "rls", "audit"))
        ratios = {}
        if "reads" in parts:
            ratios["reads p99"] = (bench_reads(config, token, base, args.seconds), 1.3)
        if "clients" in parts:
            bench_clients(config)
        if "rls" in parts:
            ratios["RLS latency"] = (bench_rls(config, admin_url, base, args.seconds), 1.25)
        if "audit" in parts:
            ratios["audit writes"] = (bench_audit(config, admin_url, base, args.seconds), 1.3)
    finally:
        flows(env, "down")
        shutil.rmtree(base, ignore_errors=True)
    print("# Summary")
    missed = []
    for name, (ratio, target) in ratios.items():
        verdict = "meets" if ratio <= target else "MISSES"
        print(f"  {name:14} {ratio:5.2f}x (target <= {target}x): {verdict} the target")
        if ratio > target:
            missed.append(name)
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

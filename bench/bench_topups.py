"""Top-ups while the whole fleet backfills 30 days of profile log.

An emulator process serves N twin-element meters (default 500) that answer
after 300 ms (a 4G modem) and keep 32 days of half-hour log; a `flows worker`
process (pacing 0, concurrency for every meter, steps of --step-seconds) runs
one 30-day `read_profile_log` per meter, all queued at once. While they run,
top-ups (`api.send_token`) are requested one after another for meters in the
middle of their backfill, and timed on the database clock: requested ->
claimed (the backfill gave the meter up at its next step) and requested ->
credited (done). Baseline, in the same run and on the same meters: the same
top-ups with nothing else running.
Printed: the top-ups' p50/p99 with the fleet backfilling and idle, and beside
them the backfill's throughput (half hours recorded per second, meters done
per minute) and its network bound (exchanges per meter x latency).
Target: the meter is handed over to a top-up within one step: p99 of
requested -> claimed while the fleet backfills <= --step-seconds. (Credited
then takes the top-up's own exchanges, slower than idle on a busy machine.)

usage: python bench/bench_topups.py [--meters 500] [--latency-ms 300] [--topups 60] [--step-seconds 2]
"""

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report  # noqa: E402
from flows import factories  # noqa: E402
from flows.emulator.fleet import raise_open_file_limit  # noqa: E402

FLOWS = str(Path(sys.executable).parent / "flows")
DAYS = 30
SECRET = "bench-secret-not-for-production-0000"


def start_emulator(count: int, latency_ms: float, workdir: Path) -> tuple[subprocess.Popen, list[dict]]:
    config = workdir / "fleet.json"
    config.write_text(json.dumps({"latency_ms": latency_ms, "meters": [
        {"serial": f"EML{2800000000 + i}", "hardware": "C1.w", "history_days": DAYS + 2, "balance": "5"}
        for i in range(count)]}))
    process = subprocess.Popen([FLOWS, "emulator", "--config", str(config), "--json"], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "FLOWS_TEST_VENDOR_SECRET": SECRET})
    line = process.stdout.readline()
    if not line:
        sys.exit("bench_topups: the emulator did not start")
    return process, json.loads(line)["meters"]


def start_worker(worker_url: str, home: str, concurrency: int, step_seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [FLOWS, "worker", "--database-url", worker_url, "--concurrency", str(concurrency), "--pacing", "0",
         "--scheduler-interval", "0", "--poll", "1", "--emop-attempts", "3", "--step-seconds", str(step_seconds),
         "--lease", "60"],
        stdout=open(Path(home) / "worker.log", "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "FLOWS_HOME": home, "FLOWS_LOG_LEVEL": "WARNING", "FLOWS_TEST_VENDOR_SECRET": SECRET})


def top_ups(conn, meter_ids: list, count: int, busy: bool) -> list[tuple[float, float]]:
    """(claimed, credited) seconds after the request, one top-up at a time; while ``busy``, only for meters
    whose backfill is under way (running, or handed back to make room for an earlier top-up)."""
    timings = []
    for n in range(count):
        if busy:
            meter = None
            while meter is None:
                row = conn.execute(
                    "SELECT (array_agg(meter_id ORDER BY random()) FILTER (WHERE status = 'running'"
                    " AND progress ? 'cursor'))[1], count(*) FROM flows.meter_commands"
                    " WHERE kind = 'read_profile_log' AND status IN ('running', 'pending')").fetchone()
                if not row[1]:
                    return timings  # the fleet has finished
                meter = row[0]
                if meter is None:
                    time.sleep(0.1)  # no backfill has recorded a step yet
        else:
            meter = meter_ids[n % len(meter_ids)]
        token = conn.execute("SELECT id FROM api.send_token(%s, amount => 1)", (meter,)).fetchone()[0]
        while True:
            status, claimed, done = conn.execute(
                "SELECT status, extract(epoch FROM started_at - created_at), extract(epoch FROM finished_at"
                " - created_at) FROM flows.meter_commands WHERE id = %s", (token,)).fetchone()
            if status in ("done", "failed"):
                break
            time.sleep(0.01)
        if status != "done":
            sys.exit(f"bench_topups: a top-up failed on meter {meter}")
        timings.append((float(claimed), float(done)))
        time.sleep(0.2)
    return timings


def percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.99 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--topups", type=int, default=60)
    parser.add_argument("--step-seconds", type=float, default=2.0)
    args = parser.parse_args()
    raise_open_file_limit(4 * args.meters + 256)
    print(f"bench_topups: {args.meters} emulated meters at {args.latency_ms:g} ms, each backfilling {DAYS} days;"
          f" load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as home, database() as admin_url, \
            psycopg.connect(admin_url, autocommit=True) as conn:
        emulator, meters = start_emulator(args.meters, args.latency_ms, Path(home))
        worker = None
        try:
            password = secrets.token_urlsafe(12)
            conn.execute(f"ALTER ROLE flows_worker PASSWORD '{password}'")
            esco = factories.add_esco(conn, "TOPS", "Top-ups", max_running_commands=10000).id
            ids = [m.id for m in factories.add_meters(conn, esco, [
                factories.MeterSpec(m["serial"], "C1.w", ip_address=m["host"], emop_port=m["port"]) for m in meters],
                registers_from="2020-01-01T00:00:00Z")]
            worker_url = admin_url.replace("postgresql://postgres@", f"postgresql://flows_worker:{password}@")
            worker = start_worker(worker_url, home, 2 * args.meters + 10, args.step_seconds)
            time.sleep(1.5)
            idle = top_ups(conn, ids, min(args.topups, 30), busy=False)

            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            conn.execute("SELECT count(*) FROM unnest(%s::uuid[]) AS m (id),"
                         " LATERAL api.read_profile_log(m.id, %s, %s)", (ids, today - timedelta(days=DAYS), today))
            started = time.perf_counter()
            busy = top_ups(conn, ids, args.topups, busy=True)
            while conn.execute("SELECT count(*) FROM flows.meter_commands WHERE kind = 'read_profile_log'"
                               " AND status IN ('pending', 'running')").fetchone()[0]:
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            failed, half_hours, exchanges = conn.execute(
                "SELECT count(*) FILTER (WHERE status <> 'done'), sum((result ->> 'half_hours')::int),"
                " sum((result ->> 'records')::int) / 5.0 FROM flows.meter_commands WHERE kind = 'read_profile_log'"
            ).fetchone()
        finally:
            if worker:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
            emulator.send_signal(signal.SIGINT)
            emulator.wait(60)
    if failed:
        sys.exit(f"bench_topups: {failed} backfills did not finish")
    if len(busy) < 10:
        sys.exit(f"bench_topups: the fleet finished after {len(busy)} top-ups; raise --meters")
    busy_claim = percentiles([c for c, _ in busy])
    busy_done = percentiles([d for _, d in busy])
    idle_done = percentiles([d for _, d in idle])
    bound = exchanges / args.meters * args.latency_ms / 1000
    report(f"top-ups while {args.meters} meters backfill {DAYS} days ({args.latency_ms:g} ms latency)",
           args.step_seconds / busy_claim[1], 1, [
               f"backfilling  claimed p50 {busy_claim[0]:.2f} s, p99 {busy_claim[1]:.2f} s; credited p50 "
               f"{busy_done[0]:.2f} s, p99 {busy_done[1]:.2f} s ({len(busy)} top-ups)",
               f"idle         credited p50 {idle_done[0]:.2f} s, p99 {idle_done[1]:.2f} s ({len(idle)} top-ups)",
               f"backfill     {half_hours / seconds:,.0f} half hours/s, {args.meters / seconds * 60:,.0f} meters/min:"
               f" {args.meters} x {DAYS} days in {seconds:.1f} s (network bound {bound:.0f} s: "
               f"{exchanges / args.meters:.0f} exchanges a meter)",
               f"target: claimed p99 <= one step ({args.step_seconds:g} s); load average {os.getloadavg()[0]:.1f}",
           ])


if __name__ == "__main__":
    main()

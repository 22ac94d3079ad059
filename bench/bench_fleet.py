"""Fleet read throughput: our async client vs simt-emlite's production pattern (15 blocking threads).

An emulator process serves N meters (default 2,000) that answer after a fixed
latency (default 300 ms, a 4G modem). Each meter is read for serial, prepay
balance and element A (three exchanges, one connection each, as simt-emlite
does). Ours: one asyncio process, every meter at once, one session per meter.
Baseline: .venv-interop, ThreadPoolExecutor(15) calling EmliteAPI.read_element.

The network bound is the time the reads take if nothing but the latency costs:
three sequential exchanges per meter, every meter in parallel = 3 x latency.
Printed: both times, the ratio to the baseline (>= 20x) and our share of the
network bound (bound / our time; target >= 50%: one exchange costs little
enough CPU, in our client and in the emulated meters, that the latency is most
of the time).

usage: python bench/bench_fleet.py [--meters 2000] [--latency-ms 300] [--threads 15]
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows import event_loop
from flows.emop.client import EmopClient
from flows.emulator.fleet import raise_open_file_limit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INTEROP = ROOT / ".venv-interop" / "bin" / "python"
EXCHANGES_PER_METER = 3


def start_emulator(count: int, latency_ms: float) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "FLOWS_TEST_VENDOR_SECRET": "bench-secret-not-for-production-0000"}
    process = subprocess.Popen(
        [
            str(BIN / "flows"),
            "emulator",
            "--meters",
            str(count),
            "--hardware",
            "C1.w",
            "--latency-ms",
            str(latency_ms),
            "--json",
        ],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = process.stdout.readline()
    if not line:
        sys.exit("bench_fleet: the emulator did not start")
    return process, json.loads(line)


async def read_all(meters: list[dict]) -> tuple[float, int]:
    client = EmopClient(pacing=0, timeout=10, attempts=3, backoff=0.05)
    handles = [client.meter(m["serial"], host=m["host"], port=m["port"]) for m in meters]

    async def read(meter):
        async with meter.session():
            return await meter.serial_read(), await meter.prepay_balance(), await meter.read_element_a()

    started = time.perf_counter()
    results = await client.for_each(handles, read)
    elapsed = time.perf_counter() - started
    good = sum(
        not isinstance(r, Exception) and r[0] == h.serial for r, h in zip(results, handles, strict=True)
    )
    return elapsed, good


def fleet_arguments(bench: str) -> argparse.Namespace:
    """--meters, --latency-ms and --threads (the baseline's), once the baseline's virtualenv is there."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--threads", type=int, default=15)
    args = parser.parse_args()
    if not INTEROP.exists():
        sys.exit(f"{bench}: {INTEROP} is missing; run `make setup`")
    return args


def run_baseline(bench: str, described: dict, threads: int, *reads: str) -> dict:
    """simt-emlite's production pattern over the emulated fleet (baseline_simt_fleet.py in .venv-interop):
    {"seconds", "ok"}. ``reads``: the EmliteAPI reads per meter (default the script's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as listing:
        json.dump(described, listing)
    try:
        run = subprocess.run(
            [str(INTEROP), str(ROOT / "bench" / "baseline_simt_fleet.py"), listing.name, str(threads),
             *([",".join(reads)] if reads else [])],
            capture_output=True, text=True, env={**os.environ, "EMLITE_TIMEOUT_SECONDS": "10"})
    finally:
        os.unlink(listing.name)
    if run.returncode:
        sys.exit(f"{bench}: the baseline failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    args = fleet_arguments("bench_fleet")
    raise_open_file_limit(3 * args.meters + 256)
    print(
        f"bench_fleet: {args.meters} emulated meters, {args.latency_ms:g} ms latency, "
        f"serial + balance + element A each; open files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    process, described = start_emulator(args.meters, args.latency_ms)
    try:
        meters = described["meters"]
        ours, ours_ok = event_loop.run(read_all(meters))
        print(f"ours      {ours:8.2f} s  {args.meters / ours:8.1f} meters/s  ({ours_ok}/{len(meters)} read)")
        baseline = run_baseline("bench_fleet", described, args.threads)
        print(
            f"baseline  {baseline['seconds']:8.2f} s  {args.meters / baseline['seconds']:8.1f} meters/s  "
            f"({baseline['ok']}/{len(meters)} read; {args.threads} threads, simt-emlite EmliteAPI)"
        )
        bound = EXCHANGES_PER_METER * args.latency_ms / 1000
        print(f"ratio     {baseline['seconds'] / ours:8.1f}x  (target >= 20x)")
        share = bound / ours
        print(f"network bound {bound:.2f} s (3 exchanges x {args.latency_ms:g} ms, all meters at once); our share of "
              f"it {share:.0%} (target >= 50%): {'meets' if share >= 0.5 else 'MISSES'} the target; load average "
              f"{os.getloadavg()[0]:.1f}")
        if share < 0.5:
            sys.exit(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


if __name__ == "__main__":
    main()

"""Prometheus metrics of a worker (served on --metrics-port)."""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

COMMANDS = Counter("flows_worker_commands_total", "Commands executed, by kind and outcome (done, retry, failed, "
                   "fenced, yielded to a top-up, released at a stop, unrecorded).", ["kind", "outcome"])
COMMAND_SECONDS = Histogram("flows_worker_command_seconds", "Time from claim to done or failed.", ["kind"],
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
CLAIM_WAIT = Histogram("flows_worker_claim_wait_seconds", "Time from a command's creation to its claim.", ["kind"],
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600))
IN_FLIGHT = Gauge("flows_worker_in_flight", "Commands this worker is running.")
QUEUE_DEPTH = Gauge("flows_worker_queue_depth", "Commands in the queue, by status (all workers).", ["status"])


def serve(port: int, host: str = "127.0.0.1") -> None:
    start_http_server(port, addr=host)

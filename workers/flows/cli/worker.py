"""`flows worker`: run a worker daemon against FLOWS_DATABASE_URL."""

import asyncio
import signal
from datetime import timedelta

import click

import flows.notifications.jobs  # noqa: F401 (registers the notification jobs: rules, email, sms)
from flows import event_loop
from flows.cli.common import database_url_option, settings
from flows.payments import job as payments_job  # noqa: F401 (registers the payments job)
from flows.vending import get_vendor
from flows.worker import metrics
from flows.worker.daemon import Worker, WorkerConfig
from flows.worker.jobs import JobContext, build_jobs


@click.command()
@database_url_option
@click.option("--concurrency", default=200, show_default=True, help="Commands in flight at once.")
@click.option("--pool-size", default=10, show_default=True, help="Database connections (besides the listener).")
@click.option("--pacing", default=2.0, show_default=True, help="Seconds between exchanges with one meter.")
@click.option("--emop-timeout", default=10.0, show_default=True, help="Seconds to wait for a meter.")
@click.option("--emop-attempts", default=3, show_default=True,
              help="Tries per exchange before a command attempt fails.")
@click.option("--lease", default=120, show_default=True,
              help="Seconds a claimed command is held (renewed while running).")
@click.option("--poll", default=2.0, show_default=True, help="Seconds between polls when no NOTIFY wakes the worker.")
@click.option("--scheduler-interval", default=10.0, show_default=True,
              help="Seconds between scheduler passes (0: never; one pass at a time across workers).")
@click.option("--retry-backoff", default=10.0, show_default=True, help="Seconds before the first retry (doubles).")
@click.option("--shutdown-grace", default=20.0, show_default=True,
              help="On SIGTERM, seconds to let running commands finish before releasing them "
                   "(whatever stops the worker must wait longer than this).")
@click.option("--step-seconds", default=2.0, show_default=True,
              help="Long work (backfills, event logs, tariff writes) gives its meter up to a waiting top-up "
                   "after about this long.")
@click.option("--esco", "escos", multiple=True, metavar="CODE",
              help="Serve only this ESCO's commands (repeat for more; default every ESCO).")
@click.option("--heartbeat", default=5.0, show_default=True,
              help="Seconds between heartbeats in flows.workers (flows workers list).")
@click.option("--proxy", default=None, envvar="FLOWS_SOCKS_PROXY", help="SOCKS5 proxy to the meters (socks5://...).")
@click.option("--metrics-port", type=int, default=None, envvar="FLOWS_METRICS_PORT",
              help="Serve Prometheus metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for the metrics endpoint.")
@click.option("--name", default=None, help="Worker name in leases and logs (default host:pid:random).")
@click.option("--jobs", default=None,
              help="Outbound jobs to run beside meter commands, comma-separated (default: all; 'none': none).")
def worker(**options) -> None:
    """Claim meter commands and run them over EMOP until SIGTERM."""
    resolved = settings(options["database_url"])
    config = WorkerConfig(
        database_url=resolved.database_url,
        concurrency=options["concurrency"],
        pool_size=options["pool_size"],
        pacing=options["pacing"],
        emop_timeout=options["emop_timeout"],
        emop_attempts=options["emop_attempts"],
        lease=timedelta(seconds=options["lease"]),
        poll_interval=options["poll"],
        scheduler_interval=options["scheduler_interval"],
        retry_backoff=timedelta(seconds=options["retry_backoff"]),
        shutdown_grace=options["shutdown_grace"],
        proxy=options["proxy"],
        step_seconds=options["step_seconds"],
        escos=list(options["escos"]) or None,
        heartbeat=options["heartbeat"],
    )
    if options["name"]:
        config.name = options["name"]
    if options["metrics_port"]:
        metrics.serve(options["metrics_port"], options["metrics_host"])
    names = None if options["jobs"] is None else [n for n in options["jobs"].split(",") if n and n != "none"]
    jobs = build_jobs(JobContext(config.database_url, config.name, resolved, lease=config.lease,
                                 poll_interval=config.poll_interval, retry_backoff=config.retry_backoff), names)
    event_loop.run(_run(Worker(config, vendor=get_vendor(resolved.vendor, resolved.home), jobs=jobs)))


async def _run(daemon: Worker) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop)
    await daemon.run()

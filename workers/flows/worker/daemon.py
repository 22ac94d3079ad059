"""The worker daemon: claims meter commands and runs them.

* Woken by NOTIFY on ``flows_meter_commands`` (ids only), with a poll as a
  fallback; the listening connection is re-opened and re-LISTENs after any
  loss (e.g. PostgreSQL restarted), and a claim follows at once.
* Claims as many commands as it has free slots (``concurrency``), with a
  lease it renews by heartbeat; a command whose lease it loses is abandoned
  (the fence stops it recording anything).
* One EMOP session per meter: the database never hands two commands for one
  meter to anyone at the same time, and the EMOP client's per-meter lock
  holds within the process.
* Each command is finished or failed by one SQL call (one transaction), which
  records the results, the meter's health and the command's status.
* Runs the scheduler every ``scheduler_interval`` seconds (one pass at a time
  across all workers).
* SIGTERM/SIGINT: stops claiming, gives running commands ``shutdown_grace``
  seconds to finish, then releases what is left (pending again, the attempt
  not counted).
"""

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from flows.emop.client import EmopClient
from flows.errors import Refused
from flows.log import get_logger
from flows.vending import VendingAdapter
from flows.worker import metrics
from flows.worker.jobs import OutboundJob, supervise
from flows.worker.queries import CHANNEL, Command, Fenced, Queries, QueryFailed, listening
from flows.worker.workflows import WORKFLOWS, Context

log = get_logger("flows.worker")


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerConfig:
    database_url: str
    name: str = field(default_factory=default_name)
    concurrency: int = 200
    lease: timedelta = timedelta(minutes=2)
    poll_interval: float = 2.0
    scheduler_interval: float = 10.0  # 0: this worker does not schedule
    retry_backoff: timedelta = timedelta(seconds=10)
    shutdown_grace: float = 20.0
    pool_size: int = 10
    pacing: float = 2.0  # seconds between exchanges with one meter (production meters need it)
    emop_timeout: float = 10.0
    emop_attempts: int = 3
    proxy: str | None = None


class Worker:
    def __init__(self, config: WorkerConfig, vendor: VendingAdapter, emop: EmopClient | None = None,
                 jobs: Sequence[OutboundJob] = ()):
        self.config = config
        self.vendor = vendor
        self.jobs = list(jobs)  # outbound jobs run beside the meter commands (flows.worker.jobs)
        self.emop = emop or EmopClient(pacing=config.pacing, timeout=config.emop_timeout,
                                       attempts=config.emop_attempts, proxy=config.proxy)
        self.queries: Queries | None = None
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.running: dict[uuid.UUID, tuple[Command, asyncio.Task]] = {}
        self.claims = 0  # how many times the claim loop ran (tests wait on it)

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        log.info("worker starting", worker=self.config.name, concurrency=self.config.concurrency)
        self.queries = await self._connect()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("listen", self._listen()),
            ("heartbeat", self._heartbeat()),
            ("scheduler", self._schedule()),
            *((f"job:{job.name}", supervise(job, self.stopping)) for job in self.jobs),
        )]
        try:
            await self._claim_loop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._drain()
            await self.queries.close()
            log.info("worker stopped", worker=self.config.name)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def _connect(self) -> Queries:
        delay = 0.2
        while True:
            try:
                return await Queries.connect(self.config.database_url, self.config.name, self.config.pool_size)
            except QueryFailed as error:
                if self.stopping.is_set():
                    raise
                log.warning("database unreachable, retrying", error=str(error), in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    # -- waking up -----------------------------------------------------------------------
    async def _listen(self) -> None:
        """Keeps a connection LISTENing; after a loss, reconnects, re-LISTENs, and wakes the claimer."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                async with listening(self.config.database_url, self.wake.set) as lost:
                    log.info("listening", channel=CHANNEL)
                    delay = 0.2
                    self.wake.set()  # anything queued while we were away
                    await self._until(lost)
            except QueryFailed as error:
                log.warning("listen connection failed, retrying", error=str(error), in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _until(self, lost: asyncio.Event) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        gone = asyncio.create_task(lost.wait())
        await asyncio.wait({stop, gone}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        gone.cancel()

    # -- claiming ------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            free = self.config.concurrency - len(self.running)
            claimed = []
            if free > 0:
                try:
                    claimed = await self.queries.claim(free, self.config.lease)
                except QueryFailed as error:
                    log.warning("claim failed", error=str(error))
                    await asyncio.sleep(0.5)
                except Exception:
                    log.exception("claim failed unexpectedly")
                    await asyncio.sleep(1)
                self.claims += 1
            now = time.time()
            for command in claimed:
                metrics.CLAIM_WAIT.labels(command.kind).observe(max(0.0, now - command.created_at.timestamp()))
                task = asyncio.create_task(self._execute(command), name=f"command {command.id}")
                self.running[command.id] = (command, task)
                task.add_done_callback(lambda _, cid=command.id: self._done(cid))
            metrics.IN_FLIGHT.set(len(self.running))
            if claimed and len(claimed) == free:
                continue  # there may be more
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.poll_interval)
            except TimeoutError:
                pass

    def _done(self, command_id: uuid.UUID) -> None:
        self.running.pop(command_id, None)
        metrics.IN_FLIGHT.set(len(self.running))
        self.wake.set()  # a slot is free

    # -- executing -----------------------------------------------------------------------
    async def _execute(self, command: Command) -> None:
        bound = log.bind(command_id=str(command.id), serial=command.serial, kind=command.kind,
                         attempt=command.attempt)
        started = time.monotonic()
        outcome_label = "done"
        try:
            if command.host is None:
                raise Refused(f"meter {command.serial} has no ip_address")
            meter = self.emop.meter(command.serial, host=command.host, port=command.port)
            context = Context(command, meter, self.queries, self.vendor)
            async with meter.session():
                outcome = await WORKFLOWS[command.kind](context)
            await self.queries.finish(command, outcome)
            bound.info("command done", seconds=round(time.monotonic() - started, 3))
        except Fenced as fenced:
            outcome_label = "fenced"
            bound.warning("lease lost; result discarded", reason=str(fenced))
        except asyncio.CancelledError:
            outcome_label = "released"
            raise
        except Exception as error:  # every failure ends in the command, never in the worker
            retryable = not isinstance(error, Refused)  # a NAK or a refusal is final; the rest may pass
            reason = describe(error)
            try:
                status = await self.queries.fail(command, reason, retryable, self.config.retry_backoff)
                outcome_label = "retry" if status == "pending" else "failed"
                bound.warning("command failed", error=reason, retryable=retryable, now=status)
            except Fenced:
                outcome_label = "fenced"
            except QueryFailed as db_error:
                outcome_label = "unrecorded"  # the lease runs out and another attempt follows
                bound.error("could not record the failure", error=reason, db_error=str(db_error))
        finally:
            metrics.COMMANDS.labels(command.kind, outcome_label).inc()
            metrics.COMMAND_SECONDS.labels(command.kind).observe(time.monotonic() - started)

    # -- leases --------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        interval = self.config.lease.total_seconds() / 4
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                continue
            held = [command for command, _ in self.running.values()]
            try:
                lost = await self.queries.renew(held, self.config.lease)
            except QueryFailed as error:
                log.warning("lease renewal failed", error=str(error))
                continue
            for command_id in lost:
                entry = self.running.get(command_id)
                if entry:
                    log.warning("lease lost; abandoning command", command_id=str(command_id))
                    entry[1].cancel()

    # -- scheduling and queue metrics ----------------------------------------------------
    async def _schedule(self) -> None:
        if self.config.scheduler_interval <= 0:
            return
        while True:
            try:
                queued = await self.queries.run_scheduler()
                if queued and any(queued.values()):
                    log.info("scheduled", **queued)
                for status, count in (await self.queries.queue_depth()).items():
                    metrics.QUEUE_DEPTH.labels(status).set(count)
            except QueryFailed as error:
                log.warning("scheduler pass failed", error=str(error))
            await asyncio.sleep(self.config.scheduler_interval)

    # -- shutdown ------------------------------------------------------------------------
    async def _drain(self) -> None:
        if not self.running:
            return
        log.info("finishing in-flight commands", count=len(self.running), grace=self.config.shutdown_grace)
        tasks = [task for _, task in self.running.values()]
        done, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_grace)
        for command, task in list(self.running.values()):
            if task in pending:
                task.cancel()
                try:
                    await self.queries.release(command)
                    log.info("released", command_id=str(command.id))
                except QueryFailed as error:  # Fenced too
                    log.warning("could not release; its lease will run out", command_id=str(command.id),
                                error=str(error))
        await asyncio.gather(*pending, return_exceptions=True)


def describe(error: BaseException) -> str:
    """The reason recorded for a failure: the error's type and message (the driver's, for a query that failed)."""
    if isinstance(error, QueryFailed) and error.__cause__ is not None:
        error = error.__cause__
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"

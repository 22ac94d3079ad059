"""The worker daemon: claims meter commands and runs them.

* Registers in ``flows.workers`` (host, pid, version, concurrency, the ESCOs it
  serves) and beats every ``heartbeat`` seconds (in flight, finished); an
  administrator sees it in ``flows workers list`` / ``/workers``.
* Woken by NOTIFY on ``flows_meter_commands`` (ids only), with a poll as a
  fallback; the listening connection is re-opened and re-LISTENs after any
  loss (e.g. PostgreSQL restarted), and a claim follows at once. A NOTIFY on
  ``flows_workers`` naming it (``flows workers drain``) drains it.
* Claims as many commands as it has free slots (``concurrency``), with a
  lease it renews by heartbeat; a command whose lease it loses is abandoned
  (the fence stops it recording anything).
* One EMOP session per meter: the database never hands two commands for one
  meter to anyone at the same time, and the EMOP client's per-meter lock
  holds within the process.
* Long work runs in steps (``flows.worker.steps``): at the end of each, the
  command gives its meter up to a waiting top-up or operator, and a stopping
  worker hands it back.
* Commands that end well are finished in batches (``flows.worker.finisher``),
  one transaction for many; a failure is recorded by one SQL call.
* Runs the scheduler every ``scheduler_interval`` seconds (one pass at a time
  across all workers).
* SIGTERM/SIGINT: stops claiming; commands in steps are handed back at their
  next exchange, the others get ``shutdown_grace`` seconds to finish; what is
  left is released (pending again, the attempt not counted); says what it
  finished and released, and exits. A drain does the same without the grace
  limit.
"""

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from flows import __version__
from flows.emop.client import EmopClient
from flows.errors import Refused
from flows.log import get_logger
from flows.vending import VendingAdapter
from flows.worker import metrics
from flows.worker.finisher import Finisher
from flows.worker.jobs import OutboundJob, supervise
from flows.worker.queries import CHANNEL, WORKERS_CHANNEL, Command, Fenced, Queries, QueryFailed, listening
from flows.worker.steps import HandedBack, Steps
from flows.worker.workflows import RECORDED_STEPS, UNSTEPPED, WORKFLOWS, Context

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
    escos: list[str] | None = None  # ESCO codes whose commands it claims; None: every ESCO
    step_seconds: float = 2.0  # long work gives its meter up to a waiting top-up after about this long
    heartbeat: float = 5.0  # seconds between heartbeats in flows.workers


@dataclass
class Running:
    command: Command
    task: asyncio.Task
    steps: Steps | None = None  # its steps, once it talks to the meter (a top-up's never end)
    recording: bool = False  # the meter is done with: the outcome is being recorded (never cancelled)


class Worker:
    def __init__(self, config: WorkerConfig, vendor: VendingAdapter, emop: EmopClient | None = None,
                 jobs: Sequence[OutboundJob] = ()):
        self.config = config
        self.vendor = vendor
        self.jobs = list(jobs)  # outbound jobs run beside the meter commands (flows.worker.jobs)
        self.emop = emop or EmopClient(pacing=config.pacing, timeout=config.emop_timeout,
                                       attempts=config.emop_attempts, proxy=config.proxy)
        self.queries: Queries | None = None
        self.finisher: Finisher | None = None
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.stop_reason = ""
        self.running: dict[uuid.UUID, Running] = {}
        self.claims = 0  # how many times the claim loop ran (tests wait on it)
        self.finished = 0  # commands done, failed or retried since start
        self.handed_back: list[tuple[Command, str]] = []  # (command, yielded | released)
        self.saturated = False  # the last claim filled every free slot: there may be more to claim

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        config = self.config
        log.info("worker starting", worker=config.name, concurrency=config.concurrency,
                 escos=config.escos or "all")
        self.queries = await self._connect()
        await self._register()
        self.finisher = Finisher(self.queries)
        self.finisher.start()
        waking = [asyncio.create_task(self._listen(), name="listen"),
                  asyncio.create_task(self._schedule(), name="scheduler"),
                  *(asyncio.create_task(supervise(job, self.stopping), name=f"job:{job.name}")
                    for job in self.jobs)]
        keeping = [asyncio.create_task(self._renew_leases(), name="leases"),  # until the last command ends
                   asyncio.create_task(self._heartbeat(), name="heartbeat")]
        try:
            await self._claim_loop()
        finally:
            await _cancel(waking)
            await self._shut_down()
            await _cancel(keeping)
            await self.finisher.close()
            try:
                await self.queries.stopped(self.finished)
            except QueryFailed as error:
                log.warning("could not record the stop", error=str(error))
            await self.queries.close()

    def stop(self, reason: str = "signal") -> None:
        """Stop claiming, hand back stepped work, give the rest ``shutdown_grace`` seconds, exit."""
        if not self.stopping.is_set():
            self.stop_reason = reason
            log.info("stopping", worker=self.config.name, reason=reason, in_flight=len(self.running))
        self.stopping.set()
        self.wake.set()

    def drain(self) -> None:
        """An administrator's drain: as stop, but commands that do not step may take the time they need."""
        self.stop("drain")

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

    async def _register(self) -> None:
        config = self.config
        await self.queries.register(socket.gethostname(), os.getpid(), __version__, config.concurrency,
                                    config.escos, timedelta(seconds=config.heartbeat))

    # -- waking up -----------------------------------------------------------------------
    async def _listen(self) -> None:
        """Keeps a connection LISTENing; after a loss, reconnects, re-LISTENs, and wakes the claimer."""
        delay = 0.2
        callbacks = {CHANNEL: lambda _: self.wake.set(), WORKERS_CHANNEL: self._told}
        while not self.stopping.is_set():
            try:
                async with listening(self.config.database_url, callbacks) as lost:
                    log.info("listening", channels=list(callbacks))
                    delay = 0.2
                    self.wake.set()  # anything queued while we were away
                    await self._until(lost)
            except QueryFailed as error:
                log.warning("listen connection failed, retrying", error=str(error), in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    def _told(self, worker: str) -> None:
        if worker == self.config.name:
            self.drain()

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
            self.saturated = bool(claimed) and len(claimed) == free
            await self._hand_over_waited_for()
            now = time.time()
            for command in claimed:
                metrics.CLAIM_WAIT.labels(command.kind).observe(max(0.0, now - command.created_at.timestamp()))
                task = asyncio.create_task(self._execute(command), name=f"command {command.id}")
                self.running[command.id] = Running(command, task)
                task.add_done_callback(lambda _, cid=command.id: self._done(cid))
            metrics.IN_FLIGHT.set(len(self.running))
            if self.saturated:
                continue  # there may be more
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.poll_interval)
            except TimeoutError:
                pass

    async def _hand_over_waited_for(self) -> None:
        """Flags the commands whose meter a top-up (or an operator) now waits for: they hand it over at their
        next exchange (flows.worker.steps)."""
        if not any(entry.steps for entry in self.running.values()):
            return
        try:
            waited = await self.queries.waited_for()
        except QueryFailed as error:
            log.warning("could not ask what waits for our meters", error=str(error))
            return
        for command_id in waited:
            entry = self.running.get(command_id)
            if entry is not None and entry.steps is not None:
                entry.steps.hand_over = True

    def _done(self, command_id: uuid.UUID) -> None:
        self.running.pop(command_id, None)
        metrics.IN_FLIGHT.set(len(self.running))
        if self.saturated:
            self.wake.set()  # a slot is free and more may wait (the database wakes us for what finishing frees)

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
            steps = Steps(command, meter, self.queries, self.config.step_seconds, self.stopping,
                          records=command.kind in RECORDED_STEPS)
            if command.kind not in UNSTEPPED:
                meter.after_exchange = steps.after_exchange
                self.running[command.id].steps = steps
            async with meter.session():
                outcome = await WORKFLOWS[command.kind](Context(command, meter, self.queries, self.vendor, steps))
            self.running[command.id].recording = True
            await self.finisher.finish(command, steps.finished(outcome))
            self.finished += 1
            bound.info("command done", seconds=round(time.monotonic() - started, 3), steps=steps.steps)
        except HandedBack as handed:
            outcome_label = handed.how
            self.handed_back.append((command, handed.how))
            bound.info(f"command {handed.how}", steps=handed.steps, progress=steps.progress.get("cursor"))
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
                self.finished += 1
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

    # -- leases and heartbeats -----------------------------------------------------------
    async def _renew_leases(self) -> None:
        interval = self.config.lease.total_seconds() / 4
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                continue
            held = [entry.command for entry in self.running.values()]
            try:
                lost = await self.queries.renew(held, self.config.lease)
            except QueryFailed as error:
                log.warning("lease renewal failed", error=str(error))
                continue
            for command_id in lost:
                entry = self.running.get(command_id)
                if entry:
                    log.warning("lease lost; abandoning command", command_id=str(command_id))
                    entry.task.cancel()

    async def _heartbeat(self) -> None:
        """Tells flows.workers how busy this worker is; learns there whether to drain (should a NOTIFY be lost)."""
        while True:
            await asyncio.sleep(self.config.heartbeat)
            try:
                drain = await self.queries.heartbeat(len(self.running), self.finished)
                if drain is None:
                    await self._register()  # its row was removed: register again
                elif drain:
                    self.drain()
            except QueryFailed as error:
                log.warning("heartbeat failed", error=str(error))

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
    async def _shut_down(self) -> None:
        """Commands in steps hand themselves back at their next exchange (Steps sees ``stopping``); the rest
        get the grace (a drain: all the time they need); what is left is released. Then says what it did."""
        finished_before = self.finished
        if self.running:
            grace = None if self.stop_reason == "drain" else self.config.shutdown_grace
            log.info("finishing in-flight commands", count=len(self.running), grace=grace or "until done")
            tasks = [entry.task for entry in self.running.values()]
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for entry in list(self.running.values()):
                if entry.task in pending and not entry.recording:
                    entry.task.cancel()
                    try:
                        await self.queries.release(entry.command)
                        self.handed_back.append((entry.command, "released"))
                    except QueryFailed as error:  # Fenced too
                        log.warning("could not release; its lease will run out", command_id=str(entry.command.id),
                                    error=str(error))
            await asyncio.gather(*(entry.task for entry in list(self.running.values())), return_exceptions=True)
        released = [f"{c.kind} {c.serial}" for c, how in self.handed_back if how == "released"]
        log.info("worker stopped", worker=self.config.name, reason=self.stop_reason,
                 finished=self.finished - finished_before, released=len(released), released_commands=released)


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def describe(error: BaseException) -> str:
    """The reason recorded for a failure: the error's type and message (the driver's, for a query that failed)."""
    if isinstance(error, QueryFailed) and error.__cause__ is not None:
        error = error.__cause__
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"

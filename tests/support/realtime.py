"""A real `flows gateway` process and realtime clients (WebSocket and SSE) that
reconnect and resume from their last event id, as a browser or portal would."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import websockets

from flows.stack.postgres import free_port
from flows.stack.stack import wait_ready

FLOWS = str(Path(sys.executable).parent / "flows")


class GatewayProcess:
    """`flows gateway` logged in as flows_authenticator with the API's JWT secret."""

    def __init__(self, api, workdir: Path, *extra: str, env: dict[str, str] | None = None):
        self.api, self.workdir, self.extra, self.env = api, workdir, extra, env or {}
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/realtime"

    def database_url(self) -> str:
        base = self.api.db_url.rsplit("/", 1)
        host_part = base[0].split("@", 1)[-1]
        return f"postgresql://flows_authenticator:{self.api.authenticator_password}@{host_part}/{base[1]}"

    def start(self) -> None:
        log = open(self.workdir / "gateway.log", "ab")
        self.process = subprocess.Popen(
            [FLOWS, "gateway", "--port", str(self.port), "--poll", "0.5", *self.extra],
            env={**os.environ, "FLOWS_DATABASE_URL": self.database_url(), "FLOWS_JWT_SECRET": self.api.jwt_secret,
                 "FLOWS_LOG_FORMAT": "json", **self.env},
            stdout=log, stderr=subprocess.STDOUT)
        if not wait_ready(f"{self.url}/health", 30, alive=lambda: self.process.poll() is None):
            raise RuntimeError(f"gateway did not start: {self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return (self.workdir / "gateway.log").read_text(errors="replace")


def head(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT flows.realtime_head()").fetchone()[0]


def expected_changes(db_url: str, relation: str, keys: set[str], after: int, through: int) -> dict[int, set[str]]:
    """From the change log itself: position -> keys of ``relation`` among ``keys`` changed in that commit."""
    expected: dict[int, set[str]] = {}
    with psycopg.connect(db_url) as conn:
        for position, key in conn.execute(
                "SELECT commit_position, key FROM flows.realtime_changes(%s, %s)"
                " WHERE relation = %s AND key = ANY (%s)",
                (after, through, relation, list(keys))):
            expected.setdefault(position, set()).add(key)
    return expected


@dataclass
class Received:
    """What one subscription received, in order."""

    events: list[dict] = field(default_factory=list)  # change messages
    resyncs: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    snapshots: list[dict] = field(default_factory=list)

    @property
    def last_id(self) -> int | None:
        ids = [m["id"] for m in self.events + self.snapshots + self.resyncs]
        return max(ids) if ids else None

    def by_position(self, key_column: str = "id", op: str | None = None) -> dict[int, set[str]]:
        """Position -> keys changed there (only upserts or removals with ``op``)."""
        found = {m["id"]: {c["key"][key_column] for c in m["changes"] if op is None or c["op"] == op}
                 for m in self.events}
        return {position: keys for position, keys in found.items() if keys}

    def ids(self) -> list[int]:
        return [m["id"] for m in self.events]

    def latest_rows(self, key_column: str = "id") -> dict[str, dict | None]:
        rows: dict[str, dict | None] = {}
        for message in self.snapshots + self.events:
            for change in message["changes"]:
                rows[change["key"][key_column]] = change.get("row")
        return rows


class SseClient:
    """Follows /events/stream, reconnecting with Last-Event-ID like EventSource."""

    def __init__(self, base_url: str, token: str, relation: str, since: int | None = None, **filters: str):
        self.base_url, self.token, self.relation, self.filters = base_url, token, relation, filters
        self.received = Received()
        self.since = since
        self.last_event_id: str | None = None  # as EventSource keeps it: from any event with an id
        self.connects = 0
        self.closed_reason: str | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> "SseClient":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            while True:
                last = self.last_event_id or self.since
                headers = {"Authorization": f"Bearer {self.token}"}
                if last is not None:
                    headers["Last-Event-ID"] = str(last)
                params = {"relation": self.relation, **self.filters}
                try:
                    async with client.stream("GET", f"{self.base_url}/events/stream", params=params,
                                             headers=headers) as response:
                        if response.status_code != 200:
                            self.received.errors.append({"status": response.status_code,
                                                         "body": (await response.aread()).decode()})
                            return
                        self.connects += 1
                        event: dict = {}
                        async for line in response.aiter_lines():
                            if line == "":
                                if self._dispatch(event):
                                    return
                                event = {}
                            elif not line.startswith(":"):
                                name, _, value = line.partition(":")
                                event[name] = event.get(name, "") + value.removeprefix(" ")
                except (httpx.TransportError, httpx.RemoteProtocolError):
                    pass
                await asyncio.sleep(0.2)

    def _dispatch(self, event: dict) -> bool:
        """Handle one SSE event; True when the stream is over for good."""
        kind, data = event.get("event"), event.get("data")
        if event.get("id"):
            self.last_event_id = event["id"]
        if not data:
            return False
        message = json.loads(data)
        if kind == "change":
            self.received.events.append(message)
        elif kind == "snapshot":
            self.received.snapshots.append(message)
        elif kind == "resync":
            self.received.resyncs.append(message)
        elif kind == "error":
            self.received.errors.append(message)
            self.closed_reason = message.get("message")
            return True
        return False


class WsClient:
    """One WebSocket with several subscriptions; after a lost connection it
    reconnects and subscribes again with since = the last id it got."""

    def __init__(self, ws_url: str, token: str, subscriptions: dict[str, dict], since: int | None = None,
                 token_in_query: bool = False):
        self.ws_url, self.token, self.token_in_query = ws_url, token, token_in_query
        self.subscriptions = subscriptions  # name -> {"relation": ..., "filter": {...}}
        self.received = {name: Received() for name in subscriptions}
        self.since = since
        self.connects = 0
        self.close_code: int | None = None
        self.replies: list[dict] = []
        self._task: asyncio.Task | None = None

    def start(self) -> "WsClient":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            url = f"{self.ws_url}?token={self.token}" if self.token_in_query else self.ws_url
            try:
                async with websockets.connect(url, max_size=None) as socket:
                    if not self.token_in_query:
                        await socket.send(json.dumps({"type": "auth", "token": self.token}))
                    ready = json.loads(await socket.recv())
                    if ready.get("type") != "ready":
                        self.replies.append(ready)
                        return
                    self.connects += 1
                    for name, spec in self.subscriptions.items():
                        since = self.received[name].last_id or self.since
                        await socket.send(json.dumps({"type": "subscribe", "id": name, **spec,
                                                      **({"since": since} if since is not None else {})}))
                    async for text in socket:
                        message = json.loads(text)
                        target = self.received.get(message.get("subscription"))
                        kind = message["type"]
                        if target is not None and kind == "change":
                            target.events.append(message)
                        elif target is not None and kind == "snapshot":
                            target.snapshots.append(message)
                        elif target is not None and kind == "resync":
                            target.resyncs.append(message)
                        elif kind != "heartbeat":
                            self.replies.append(message)
            except websockets.ConnectionClosed as closed:
                self.close_code = closed.rcvd.code if closed.rcvd else None
                if self.close_code in (4401, 4403):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)


async def until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what or predicate}")
        await asyncio.sleep(interval)
    return value

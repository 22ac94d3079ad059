"""The feed: reads the change log in commit order and fans changes out to
subscriptions, each row read as the subscriber's role and claims.

One step (woken by the ``flows_realtime`` doorbell, or every poll interval):

1. Open a REPEATABLE READ transaction (snapshot S_now) and read the head
   position: every commit up to it is visible, none after it (positions are
   handed out in commit order, sql/schema/realtime.sql).
2. Read the changes after the lowest subscriber cursor up to the head.
3. Per relation, group subscriptions by audience (role + claims): for each
   audience, set the role and request.jwt.claims as PostgREST does, and run
   the prepared statement of ``flows.realtime_query`` (one per relation and
   filter shape, its plan reused across audiences of a role): the touched
   rows as that audience reads them, and which of its filters they pass.
4. A key an audience no longer matches gets a key-only removal only if it
   matched before: that is asked in the previous step's snapshot (S_prev),
   which this gateway keeps open until the step is done. So a removal never
   reveals a key to someone who could not see its row.
5. Keep S_now open as the next step's S_prev.

Changes older than S_prev (a client resuming from an older position, or the
first step after a reconnect) have no "before" snapshot; for them a key that is
invisible now gets no message unless its row was deleted or its visibility
changed (op d or s) in an ESCO the audience sees: then nobody can tell whether
the client saw it, and the subscription is told to resync instead.
"""

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass

import asyncpg
import psycopg

from flows.gateway import metrics, queries
from flows.gateway.config import GatewayConfig
from flows.gateway.snapshots import SnapshotConnection
from flows.gateway.subscriptions import Message, Subscription
from flows.log import get_logger

CONNECTION_SQLSTATES = ("08", "57")  # connection exceptions, operator intervention (shutdown)


class SubscriptionRefused(Exception):
    """A subscription PostgreSQL refused (unknown relation or column, bad value, unknown ESCO in the claims)."""


@dataclass
class Seen:
    row: str | None
    matches: list[bool]


@dataclass
class Change:
    position: int
    relation: str
    key: str
    esco: str | None
    may_leave: bool
    inserted: bool


class Feed:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.subscriptions: set[Subscription] = set()
        self.key_columns: dict[str, str] = {}
        self.position: int | None = None  # head of the held snapshot: everything up to it was delivered
        self.connected = asyncio.Event()
        self.log = get_logger("flows.gateway.feed")
        self._wake = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._connections: list[SnapshotConnection] = []
        self._held: SnapshotConnection | None = None  # the connection whose open snapshot is S_prev
        self._pool: asyncpg.Pool | None = None
        self._statements: dict[tuple, tuple[str, list[str]]] = {}
        self._reading = 0.0  # seconds of the current step spent waiting for rows (reported on slow steps)

    # -- subscriptions ---------------------------------------------------------
    async def check(self, subscription: Subscription) -> None:
        """Ask PostgreSQL, as the subscriber, whether the relation and filter are valid; raise SubscriptionRefused."""
        if subscription.relation not in self.key_columns:
            known = ", ".join(sorted(self.key_columns))
            raise SubscriptionRefused(f"relation {subscription.relation!r} cannot be followed live; one of: {known}")
        if self._pool is None:
            raise SubscriptionRefused("the gateway is not connected to the database yet; retry shortly")
        try:
            async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                await conn.fetch(queries.SNAPSHOT, subscription.relation, subscription.principal.audience,
                                 json.dumps(subscription.filter), 0)
        except asyncpg.PostgresError as error:
            raise SubscriptionRefused(error.args[0] if error.args else str(error)) from None

    def add(self, subscription: Subscription) -> None:
        subscription.outbox.subscriptions.add(subscription)
        self.subscriptions.add(subscription)
        metrics.SUBSCRIBERS.labels(subscription.transport, subscription.relation).inc()
        self._wake.set()

    def remove(self, subscription: Subscription) -> None:
        if subscription in self.subscriptions:
            self.subscriptions.discard(subscription)
            metrics.SUBSCRIBERS.labels(subscription.transport, subscription.relation).dec()
        subscription.outbox.subscriptions.discard(subscription)

    # -- running -----------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        pruner = asyncio.create_task(self._prune_forever())
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    backoff = 0.2
                    await self._loop()
                except Exception as error:  # the database went away, or a bug: reconnect and catch up
                    if self._stopping:
                        break
                    self.connected.clear()
                    metrics.FEED_RECONNECTS.inc()
                    self.log.warning("feed lost the database; reconnecting", error=repr(error), retry_in=backoff)
                    await self._disconnect()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            pruner.cancel()
            await self._disconnect()

    async def _connect(self) -> None:
        settings = {"application_name": "flows-gateway", "jit": "off"}
        self._listener = await asyncpg.connect(self.config.database_url, server_settings=settings)
        await self._listener.add_listener(queries.LISTEN_CHANNEL, lambda *_: self._wake.set())
        self._connections = [await SnapshotConnection.connect(self.config.database_url) for _ in range(2)]
        self._pool = await asyncpg.create_pool(self.config.database_url, min_size=1, max_size=4,
                                               server_settings=settings)
        self.key_columns = dict(await self._listener.fetch(queries.RELATIONS))
        self._held = None  # no "before" snapshot yet: the first step treats its changes as catch-up
        self.connected.set()
        self.log.info("feed connected", relations=sorted(self.key_columns), position=self.position)

    async def _disconnect(self) -> None:
        self._held = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
        if self._listener is not None and not self._listener.is_closed():
            self._listener.terminate()
        for conn in self._connections:
            await conn.close()
        self._listener, self._connections = None, []

    async def _loop(self) -> None:
        last_step = 0.0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
                # Batch: wait for more commits, and at least step_interval after the last step began.
                pause = max(self.config.batch_window, last_step + self.config.step_interval - time.monotonic())
                if pause > 0:
                    await asyncio.sleep(pause)
            except TimeoutError:
                pass
            self._wake.clear()
            last_step = time.monotonic()
            if self._listener is None or self._listener.is_closed():
                raise ConnectionError("the doorbell connection closed")
            await self.step()

    async def _prune_forever(self) -> None:
        while self.config.prune_interval > 0:
            await asyncio.sleep(self.config.prune_interval)
            if self._pool is None:
                continue
            try:
                async with self._pool.acquire() as conn:
                    pruned = await conn.fetchval(queries.PRUNE, self.config.retention_seconds)
                self.log.info("pruned the change log", commits=pruned)
            except Exception as error:
                self.log.warning("pruning failed", error=repr(error))

    # -- one step ----------------------------------------------------------------
    async def step(self) -> None:
        started = time.perf_counter()
        conn = next(c for c in self._connections if c is not self._held)
        await conn.begin_snapshot()
        try:
            head = await conn.fetchval(queries.HEAD)
            if self.position is None:
                self.position = head  # a new gateway: nobody can have missed anything yet
            boundary = self.position if self._held else None
            if boundary is None and self.position < await conn.fetchval(queries.PRUNED_THROUGH):
                for subscription in self.subscriptions:  # away longer than the retention
                    subscription.resync_due = "the gateway was away longer than the retention"
            await self._join(conn, head)
            active = [s for s in self.subscriptions if s.joined and s.cursor < head and not s.resync_due]
            timings = {"head": time.perf_counter() - started}
            self._reading = 0.0
            if active:
                rows = await conn.fetch(queries.CHANGES, min(s.cursor for s in active), head)
                timings["changes"] = time.perf_counter() - started
                await self._deliver(conn, rows, active, boundary)
                timings["delivered"] = time.perf_counter() - started
                timings["reading_rows"] = self._reading
                for subscription in active:
                    subscription.cursor = head
            self._settle(head)
        except BaseException:
            await _quietly(conn.end_snapshot())
            raise
        if self._held:
            await self._held.end_snapshot()
        self._held = conn
        self.position = head
        metrics.POSITION.set(head)
        seconds = time.perf_counter() - started
        metrics.STEP.observe(seconds)
        if seconds > 0.25:
            self.log.info("slow step", seconds=round(seconds, 3), position=head,
                          **{k: round(v, 3) for k, v in timings.items()})

    async def _join(self, conn: SnapshotConnection, head: int) -> None:
        pruned = None
        for subscription in [s for s in self.subscriptions if not s.joined]:
            subscription.joined = True
            subscription.cursor = self.position
            if subscription.snapshot:
                await self._snapshot(conn, subscription, head)
            elif subscription.since is not None:
                if pruned is None:
                    pruned = await conn.fetchval(queries.PRUNED_THROUGH)
                if subscription.since < pruned:
                    subscription.resync_due = f"position {subscription.since} is older than the retention"
                elif subscription.since > head:
                    subscription.resync_due = f"position {subscription.since} is ahead of the change log"
                elif head - subscription.since > self.config.max_catchup:
                    subscription.resync_due = f"position {subscription.since} is too far behind"
                else:
                    subscription.cursor = subscription.since

    async def _snapshot(self, conn: SnapshotConnection, subscription: Subscription, head: int) -> None:
        limit = self.config.snapshot_limit
        try:
            async with conn.savepoint():
                rows = await conn.fetch(queries.SNAPSHOT, subscription.relation, subscription.principal.audience,
                                        json.dumps(subscription.filter), limit)
        except psycopg.errors.Error as error:
            if _lost_connection(error):
                raise
            self._refuse(subscription, error)
            return
        if len(rows) > limit:
            self._refuse(subscription, f"more than {limit} rows match: narrow the filter, or read the first "
                                       "state over the API and subscribe without snapshot")
            return
        key_column = self.key_columns[subscription.relation]
        changes = ",".join(_upsert(key_column, key, row) for key, row in rows)
        subscription.cursor = head
        subscription.outbox.put_control(Message(
            "snapshot", subscription, head, f'"id":{head},{subscription.envelope()},"changes":[{changes}]',
            changes=len(rows)))

    def _refuse(self, subscription: Subscription, error) -> None:
        text = error if isinstance(error, str) else _message(error)
        subscription.outbox.put_control(Message("error", subscription, 0, f'{subscription.envelope()},'
                                                f'"message":{json.dumps(text)}'))
        self.remove(subscription)

    def _settle(self, head: int) -> None:
        for subscription in list(self.subscriptions):
            if subscription.resync_due:
                reason, subscription.resync_due = subscription.resync_due, None
                subscription.cursor = head
                metrics.RESYNCS.labels(_reason(reason)).inc()
                subscription.outbox.put_control(Message(
                    "resync", subscription, head,
                    f'"id":{head},{subscription.envelope()},"reason":{json.dumps(reason)}'))

    # -- fan-out -----------------------------------------------------------------
    async def _deliver(self, conn, rows, active: list[Subscription], boundary: int | None) -> None:
        committed_at: dict[int, float] = {}
        changes: list[Change] = []
        for position, at, relation, key, esco, may_leave, inserted in rows:
            committed_at[position] = at.timestamp()
            changes.append(Change(position, relation, key, str(esco) if esco else None, may_leave, inserted))
            metrics.CHANGES.labels(relation).inc()
        metrics.COMMITS.inc(len(committed_at))
        by_relation: dict[str, list[Change]] = defaultdict(list)
        for change in changes:
            by_relation[change.relation].append(change)
        subscribers: dict[str, list[Subscription]] = defaultdict(list)
        for subscription in active:
            subscribers[subscription.relation].append(subscription)
        for relation, relation_changes in by_relation.items():
            if subscribers.get(relation):
                await self._deliver_relation(conn, relation, relation_changes, subscribers[relation], boundary,
                                             committed_at)

    async def _deliver_relation(self, conn, relation: str, changes: list[Change], subscriptions: list[Subscription],
                                boundary: int | None, committed_at: dict[int, float]) -> None:
        # Audiences and, within each, its distinct filters.
        audiences: dict[str, list[str]] = {}  # audience -> filter keys (index = position in `matches`)
        members: dict[str, list[Subscription]] = defaultdict(list)
        filters: dict[str, list[dict]] = {}
        for subscription in subscriptions:
            keys = audiences.setdefault(subscription.principal.audience, [])
            if subscription.filter_key not in keys:
                keys.append(subscription.filter_key)
                filters[subscription.filter_key] = subscription.filter
            members[subscription.principal.audience].append(subscription)
        touched = {c.key for c in changes}
        wanted: dict[str, set[str]] = {}  # audience -> keys worth reading for it
        for audience, subs in members.items():
            if all(s.pinned is not None for s in subs):
                keys = touched & frozenset().union(*(s.pinned for s in subs))
            else:
                keys = touched
            if keys:
                wanted[audience] = keys
        if not wanted:
            return
        read_started = time.perf_counter()
        now = await self._read(conn, relation, wanted, audiences, filters, rows=True)
        self._reading += time.perf_counter() - read_started

        # Live changes (after the held snapshot): ask S_prev whether keys no longer matching matched before.
        before: dict[tuple[str, str], Seen] = {}
        if boundary is not None and self._held is not None:
            live = [c for c in changes if c.position > boundary]
            created = {c.key for c in live if c.inserted}  # did not exist in S_prev
            may_leave = {c.key for c in live if c.may_leave}
            ask: dict[str, set[str]] = {}
            for audience, keys in wanted.items():
                for key in {c.key for c in live} & keys:
                    seen = now.get((audience, key))
                    if key in created or (seen is not None and all(seen.matches)):
                        continue
                    if key in may_leave or seen is not None:
                        ask.setdefault(audience, set()).add(key)
            if ask:
                before = await self._read(self._held, relation, ask, audiences, filters, rows=False)

        # Catch-up changes: which ESCOs of invisible, deleted or re-scoped rows each audience sees.
        escos_seen: dict[str, set[str]] = defaultdict(set)
        catch_up = [c for c in changes if boundary is None or c.position <= boundary]
        doubtful = {c.esco for c in catch_up if c.may_leave and c.esco}
        if doubtful:
            payload = [json.loads(a) for a in wanted]
            metrics.AUDIENCE_READS.labels("escos").inc(len(payload))
            async with conn.savepoint():
                for index, esco in await conn.fetch(queries.VISIBLE_ESCOS, json.dumps(payload), sorted(doubtful)):
                    escos_seen[list(wanted)[index]].add(str(esco))

        key_column = self.key_columns[relation]
        for audience, subs in members.items():
            keys = wanted.get(audience)
            if not keys:
                continue
            mine = [c for c in changes if c.key in keys]
            for filter_index, filter_key in enumerate(audiences[audience]):
                by_cursor: dict[int, list[Subscription]] = defaultdict(list)
                for subscription in subs:
                    if subscription.filter_key == filter_key:
                        by_cursor[subscription.cursor].append(subscription)
                for cursor, group in by_cursor.items():
                    entries = self._entries(audience, filter_index, cursor, mine, now, before, escos_seen[audience],
                                            boundary, key_column)
                    for subscription in group:
                        self._send(subscription, entries, committed_at)

    @staticmethod
    def _entries(audience, index, cursor, changes, now, before, escos_seen, boundary, key_column):
        """Per commit after ``cursor``: the changes this audience-and-filter gets, or None when no one can tell
        whether the client saw a row that is gone from its view (resync)."""
        entries: dict[int, list[str] | None] = {}
        changes = [c for c in changes if c.position > cursor]
        created = {c.key for c in changes if c.inserted}  # rows the client cannot have had at its position
        for change in changes:
            if entries.get(change.position, []) is None:
                continue
            seen = now.get((audience, change.key))
            if seen is not None and seen.matches[index]:
                entry = _upsert(key_column, change.key, seen.row)
            elif boundary is not None and change.position > boundary:
                was = before.get((audience, change.key))
                entry = _remove(key_column, change.key) if was is not None and was.matches[index] else None
            elif change.key in created:
                entry = None
            elif seen is not None:  # readable now, outside the filter: a removal reveals nothing
                entry = _remove(key_column, change.key)
            elif change.may_leave and (change.esco is None or change.esco in escos_seen):
                entries[change.position] = None  # it may have been seen before, and no one can tell
                continue
            else:
                entry = None
            if entry is not None:
                entries.setdefault(change.position, []).append(entry)
        return entries

    @staticmethod
    def _send(subscription: Subscription, entries: dict, committed_at: dict[int, float]) -> None:
        for position in sorted(entries):
            if position <= subscription.cursor:
                continue
            changes = entries[position]
            if changes is None:
                subscription.resync_due = "a row left the view while the client was away"
                return
            subscription.outbox.put(Message(
                "change", subscription, position,
                f'"id":{position},{subscription.envelope()},"committed_at":{committed_at[position]:.6f},'
                f'"changes":[{",".join(changes)}]',
                committed_at=committed_at[position], changes=len(changes)))

    async def _read(self, conn, relation, wanted: dict[str, set[str]], audiences, filters, rows: bool):
        """Rows (or just filter matches) of ``relation`` for each audience's keys, read as that audience."""
        seen: dict[tuple[str, str], Seen] = {}
        for group in _by_key_set(wanted):
            keys = sorted(set().union(*(wanted[a] for a in group)))
            try:
                result = await self._visible(conn, relation, keys, group, audiences, filters, rows)
            except psycopg.errors.Error as error:
                if _lost_connection(error):
                    raise
                result = []
                for audience in group:  # find the audience PostgreSQL refuses, and end its subscriptions
                    try:
                        result += await self._visible(conn, relation, keys, [audience], audiences, filters, rows)
                    except psycopg.errors.Error as refused:
                        if _lost_connection(refused):
                            raise
                        for subscription in [s for s in self.subscriptions if s.principal.audience == audience]:
                            self._refuse(subscription, refused)
            for audience, key, row, matches in result:
                seen[(audience, key)] = Seen(row, list(matches))
        return seen

    async def _visible(self, conn, relation, keys, group, audiences, filters, rows):
        statements = await self._statements_for(  # built as the gateway, before switching roles
            conn, relation, [[filters[f] for f in audiences[audience]] for audience in group], rows)
        order = sorted(range(len(group)), key=lambda i: self._audience(group[i])[0])  # reuse plans per role
        metrics.AUDIENCE_READS.labels("rows" if rows else "before").inc(len(group))
        pipeline = []
        for index in order:
            query, values = statements[index]
            pipeline.append((queries.AS_AUDIENCE, self._audience(group[index]), False))
            pipeline.append((query, (keys, values) if values else (keys,), True))
        pipeline.append((queries.AS_GATEWAY, (), False))
        found = await conn.pipeline(pipeline)
        return [(group[index], key, row, matches)
                for index, rows in zip(order, [r for r in found if r is not None], strict=True)
                for key, row, matches in rows]

    async def _statements_for(self, conn, relation: str, filter_lists: list[list], rows: bool):
        """The statement (and filter values) reading ``relation`` with each filter list, from flows.realtime_query
        (those not seen before fetched in one pipeline)."""
        keys = [(relation, json.dumps(filter_list, sort_keys=True), rows) for filter_list in filter_lists]
        missing = sorted({key for key in keys if key not in self._statements})
        if missing:
            if len(self._statements) + len(missing) > 20_000:
                self._statements.clear()
            found = await conn.pipeline([(queries.STATEMENT, key, True) for key in missing])
            for key, result in zip(missing, found, strict=True):
                query, values = result[0]
                self._statements[key] = (query, list(values))
        return [self._statements[key] for key in keys]

    @staticmethod
    def _audience(audience: str) -> tuple[str, str]:
        parsed = json.loads(audience)
        return parsed["role"], json.dumps(parsed["claims"])


def _by_key_set(wanted: dict[str, set[str]]) -> list[list[str]]:
    """Audiences reading all the touched keys in one call, each pinned audience with the others pinned (small sets)."""
    if not wanted:
        return []
    largest = max(len(keys) for keys in wanted.values())
    full = [a for a, keys in wanted.items() if len(keys) == largest]
    rest = [a for a in wanted if a not in full]
    return [group for group in (full, rest) if group]


def _upsert(key_column: str, key: str, row: str) -> str:
    return f'{{"op":"upsert","key":{{{json.dumps(key_column)}:{json.dumps(key)}}},"row":{row}}}'


def _remove(key_column: str, key: str) -> str:
    return f'{{"op":"remove","key":{{{json.dumps(key_column)}:{json.dumps(key)}}}}}'


def _reason(text: str) -> str:
    for word in ("slow", "retention", "ahead", "behind", "away", "left"):
        if word in text:
            return word
    return "other"


def _lost_connection(error: Exception) -> bool:
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) and not getattr(error, "sqlstate", None):
        return True
    return (getattr(error, "sqlstate", "") or "")[:2] in CONNECTION_SQLSTATES


def _message(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    if diag is not None and diag.message_primary:
        return diag.message_primary
    return error.args[0] if error.args else str(error)


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass

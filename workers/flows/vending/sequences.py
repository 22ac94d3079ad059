"""Per-meter token sequence counters that two processes can never hand out twice.

``FileSequenceStore`` keeps ``{serial: last sequence}`` in a JSON file and takes
an exclusive ``flock`` on a lock file beside it for each increment (read, add
one, write to a temporary file, fsync, rename), so concurrent ``flows vend``
processes and workers on one machine serialise. A store backed by the database
(``UPDATE ... RETURNING`` on a counter row) implements the same one method.
"""

import asyncio
import fcntl
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class SequenceStore(Protocol):
    async def next_sequence(self, serial: str) -> int:
        """The next unused sequence number for ``serial`` (1 for the first token)."""
        ...


class MemorySequenceStore:
    """In-process counters (tests, one-off scripts)."""

    def __init__(self, start: dict[str, int] | None = None):
        self._last = dict(start or {})

    async def next_sequence(self, serial: str) -> int:
        self._last[serial] = self._last.get(serial, 0) + 1
        return self._last[serial]


class FileSequenceStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    async def next_sequence(self, serial: str) -> int:
        return await asyncio.to_thread(self.next_sequence_sync, serial)

    def next_sequence_sync(self, serial: str) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                counters = json.loads(self.path.read_text()) if self.path.exists() else {}
                counters[serial] = int(counters.get(serial, 0)) + 1
                tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
                with open(tmp, "w") as out:
                    json.dump(counters, out, indent=1, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                tmp.replace(self.path)
                return counters[serial]
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def last(self, serial: str) -> int:
        counters = json.loads(self.path.read_text()) if self.path.exists() else {}
        return int(counters.get(serial, 0))

"""Counters shared by every process on this host that uses the same SQLite database.

A process that remembers something read from the database (a verified API key, a rendered page
of approvals) must stop trusting it on the very next request after another process changed the
rows behind it. Each memory therefore records the *revision* it was read under, and whoever
commits a change bumps the revision. The counters live in a small file beside the database,
memory-mapped by every process: reading one is a memory read, with no system call and no
release of the GIL, which matters under gunicorn's threads (reading a counter through SQLite
measured several hundred microseconds of CPU per request there).

Where there is no such file (an in-memory SQLite database, another database),
:meth:`SharedCounters.read` answers ``None`` and callers read the rows every time.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Iterable

from sqlalchemy.engine import Engine

_COUNTER = struct.Struct("<Q")


def counters_path(engine: Engine, suffix: str) -> str | None:
    """Return the path of the counters file beside an SQLite database file, if there is one."""
    url = engine.url
    database = url.database if url.get_backend_name() == "sqlite" else None
    return None if database in (None, "", ":memory:") else f"{database}{suffix}"


class SharedCounters:
    """``slots`` 64-bit counters in a memory-mapped file (none where ``path`` is ``None``)."""

    def __init__(self, path: str | None, slots: int = 1) -> None:
        self.path = path
        self.slots = slots
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()

    def _mapped(self) -> mmap.mmap | None:
        if self._map is None and self.path is not None:
            with self._lock:
                if self._map is None:
                    size = _COUNTER.size * self.slots
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        if os.fstat(fd).st_size < size:
                            os.ftruncate(fd, size)  # zero-filled; growing is idempotent
                        self._map = mmap.mmap(fd, size)
                    finally:
                        os.close(fd)
        return self._map

    def read(self, slot: int = 0) -> int | None:
        """Return a counter, or ``None`` where there are no shared counters."""
        mapped = self._mapped()
        return None if mapped is None else _COUNTER.unpack_from(mapped, slot * _COUNTER.size)[0]

    def bump(self, slots: Iterable[int] = (0,)) -> None:
        """Advance the given counters; call after committing the change they stand for."""
        mapped = self._mapped()
        if mapped is None:
            return
        with open(self.path, "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # serialize bumps across processes
            try:
                for slot in set(slots):
                    offset = slot * _COUNTER.size
                    _COUNTER.pack_into(mapped, offset, _COUNTER.unpack_from(mapped, offset)[0] + 1)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


class OrganizationRevisions:
    """A revision per organization: what a process remembers of one organization's data
    is good while its revision stays the same.

    Organizations share a fixed number of counters by a stable hash of their id (a bump may
    also retire another organization's memories, never keep a stale one); one more counter,
    bumped by :meth:`bump_all`, counts for every organization.
    """

    BUCKETS = 4096

    def __init__(self, path: str | None) -> None:
        self._counters = SharedCounters(path, slots=self.BUCKETS + 1)

    def _slot(self, organization_id: str) -> int:
        return 1 + zlib.crc32(organization_id.encode()) % self.BUCKETS

    def current(self, organization_id: str) -> int | None:
        """Return the organization's revision, or ``None`` where nothing is shared."""
        everyone = self._counters.read(0)
        if everyone is None:
            return None
        return everyone + self._counters.read(self._slot(organization_id))

    def bump(self, organization_ids: Iterable[str]) -> None:
        self._counters.bump(self._slot(organization_id) for organization_id in organization_ids)

    def bump_all(self) -> None:
        self._counters.bump((0,))

"""Counters shared by every process that uses the same database.

A process that remembers something read from the database (a verified API key, a rendered page
of approvals) must stop trusting it on the very next request after another process changed the
rows behind it. Each memory therefore records the *revision* it was read under, and whoever
commits a change bumps the revision.

On an SQLite file the counters live in a small file beside the database, memory-mapped by every
process: reading one is a memory read, with no system call and no release of the GIL, which
matters under gunicorn's threads (reading a counter through SQLite measured several hundred
microseconds of CPU per request there). Elsewhere (PostgreSQL), with a Redis rate-limit storage,
they live in Redis (:class:`RedisCounters`), which every process on every host reads in one
round trip.

Where there are neither (an in-memory SQLite database, PostgreSQL without Redis), or Redis does
not answer, the revision is ``None`` and callers read the rows every time.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterable

from flask import g, has_app_context
from sqlalchemy.engine import Engine

_COUNTER = struct.Struct("<Q")
log = logging.getLogger(__name__)
WARN_EVERY = 10.0  # seconds between two warnings that Redis does not answer


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


class RedisCounters:
    """Named counters in Redis, shared by every process on every host that uses it.

    A counter Redis lost (restarted or flushed: nothing need be kept on disk) starts again from
    a random 48-bit value, not from zero, so a revision read before the loss is not met again
    after it. Should Redis not answer, :meth:`read` answers ``None`` (callers read the rows)
    and says so in the log at most every ``WARN_EVERY`` seconds; a bump that fails is logged
    (the memories it should have retired still run out after their own maximum age).
    """

    def __init__(self, storage_uri: str, prefix: str, unreadable: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            storage_uri, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._prefix = prefix
        self._unreadable = unreadable  # the warning's words when Redis does not answer
        self._warned = -WARN_EVERY

    @classmethod
    def of_storage(cls, storage_uri: str, prefix: str, unreadable: str) -> RedisCounters | None:
        """Counters in the rate-limit storage, if it is Redis."""
        if not storage_uri.startswith(("redis://", "rediss://")):
            return None
        return cls(storage_uri, prefix, unreadable)

    def key_of(self, name: str) -> str:
        """The Redis key of a named counter."""
        return f"{self._prefix}:{name}"

    def _keys(self, names: Iterable[str]) -> list[str]:
        return [self.key_of(name) for name in names]

    def read(self, names: list[str]) -> int | None:
        """Return the sum of the named counters (one round trip), or ``None``."""
        keys = self._keys(names)
        try:
            values = self._redis.mget(keys)
            if None in values:  # never bumped, or lost: start from somewhere new
                for key, value in zip(keys, values, strict=True):
                    if value is None:
                        self._redis.set(key, secrets.randbits(48), nx=True)
                values = self._redis.mget(keys)
            return sum(int(value) for value in values)
        except Exception as error:  # noqa: BLE001 - any failure: trust nothing remembered
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY:  # once in a while, not on every request
                self._warned = now
                log.warning("%s: %r", self._unreadable, error)
            return None

    def bump(self, names: Iterable[str]) -> None:
        """Advance the named counters (one round trip); call after committing the change."""
        keys = self._keys(names)
        pipeline = self._redis.pipeline(transaction=False)
        for key in keys:
            pipeline.set(key, secrets.randbits(48), nx=True)
            pipeline.incr(key)
        try:
            pipeline.execute()
        except Exception as error:  # noqa: BLE001
            log.error("could not bump %s in Redis: %r", ", ".join(keys), error)


class OrganizationRevisions:
    """A revision per organization: what a process remembers of one organization's data
    is good while its revision stays the same.

    In the file beside an SQLite database, organizations share a fixed number of counters by a
    stable hash of their id (a bump may also retire another organization's memories, never keep
    a stale one); one more counter, bumped by :meth:`bump_all`, counts for every organization.
    In Redis (``storage_uri``, where there is no such file) each organization has its own.
    """

    BUCKETS = 4096
    EVERYONE = "org-revision:every"  # organization ids begin "org_"

    def __init__(self, path: str | None, storage_uri: str = "", prefix: str = "discountflow"):
        self._counters = SharedCounters(path, slots=self.BUCKETS + 1)
        self._redis = None
        if path is None:
            self._redis = RedisCounters.of_storage(
                storage_uri,
                prefix,
                "organization revisions unreadable in Redis, rendering pages from the database",
            )

    def _slot(self, organization_id: str) -> int:
        return 1 + zlib.crc32(organization_id.encode()) % self.BUCKETS

    def redis_keys(self, organization_id: str) -> list[str] | None:
        """The Redis keys whose sum is the organization's revision, where it is kept in Redis:
        a caller may read them in a round trip of its own and hand the sum to :meth:`noted`."""
        if self._redis is None:
            return None
        return [self._redis.key_of(self.EVERYONE), self._redis.key_of(_named(organization_id))]

    def noted(self, organization_id: str, revision: int) -> None:
        """Remember, for the rest of this request, the revision its caller has just read.

        The API reads it with the request's own round trip to Redis (``api.py``): a page asked
        for later in the request is then looked up under it with no second round trip. A
        revision read at the start of the request is never newer than the database was then,
        so what is served under it is at worst what the request would have seen a moment
        earlier; any bump in this process forgets it (a request's own writes are seen).
        """
        if has_app_context():
            setattr(g, _NOTED, (self, organization_id, revision))

    def current(self, organization_id: str) -> int | None:
        """Return the organization's revision, or ``None`` where nothing is shared."""
        if self._redis is not None:
            noted = g.get(_NOTED) if has_app_context() else None
            if noted is not None and noted[0] is self and noted[1] == organization_id:
                return noted[2]
            return self._redis.read([self.EVERYONE, _named(organization_id)])
        everyone = self._counters.read(0)
        if everyone is None:
            return None
        return everyone + self._counters.read(self._slot(organization_id))

    def bump(self, organization_ids: Iterable[str]) -> None:
        if self._redis is not None:
            _forget_noted()
            self._redis.bump(_named(each) for each in set(organization_ids))
            return
        self._counters.bump(self._slot(organization_id) for organization_id in organization_ids)

    def bump_all(self) -> None:
        if self._redis is not None:
            _forget_noted()
            self._redis.bump([self.EVERYONE])
            return
        self._counters.bump((0,))


_NOTED = "_discountflow_organization_revision"  # in ``g``: (revisions, organization id, revision)


def _named(organization_id: str) -> str:
    return f"org-revision:{organization_id}"


def _forget_noted() -> None:
    if has_app_context():
        g.pop(_NOTED, None)

"""The per-process memory of API keys, so a valid key costs one bcrypt check per process.

A key's bcrypt hash is checked once; after that this process remembers an HMAC of the key
(under a secret that lives only in this process) and compares digests in constant time. Keys
that failed bcrypt are remembered too, so the same bad key never costs a second bcrypt check.

Whether a remembered key is still usable (revoked, replaced, expired) must hold on the very next
request in every process, whoever changed it (another worker, the CLI). So each remembered key
carries the *key revision* it was read under (a counter shared by the processes, see
:mod:`discountflow.revisions`) and is trusted only while that revision is current. The revision
grows after every generate, roll and revoke. Where there is no shared counter (another
database), :meth:`KeyRevision.current` answers ``None`` and the key's row is read on every
request.

Should a process die between committing a key change and bumping the counter, the other
processes would not hear of it; remembered rows are therefore read again after
``MAX_AGE`` seconds whatever the counter says.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy.engine import Engine

from ..extensions import db
from ..revisions import RedisCounters, SharedCounters, counters_path

MAX_AGE = 10.0  # seconds a remembered row is trusted without reading it again


class KeyRevision:
    """The revision of API keys, shared by every process that may remember keys.

    On an SQLite file: a counter in a memory-mapped file beside it (every process on the box).
    Elsewhere (PostgreSQL), with a Redis rate-limit storage: a counter in Redis, which every
    process on every host reads (one round trip, far cheaper than reading the key's row through
    a pooled database connection). Otherwise there is none, and every request reads the row.
    Should Redis not answer, ``current`` is ``None``: rows are read, never trusted blindly.
    """

    NAME = "key-revision"

    def __init__(self, engine: Engine, storage_uri: str = "", prefix: str = "discountflow") -> None:
        self._counter = SharedCounters(counters_path(engine, "-keyrev"))
        self._redis = None
        if self._counter.path is None:
            self._redis = RedisCounters.of_storage(
                storage_uri,
                prefix,
                "key revision unreadable in Redis, reading keys from the database",
            )

    def current(self) -> int | None:
        """Return the current revision, or ``None`` where there is no shared counter."""
        if self._redis is None:
            return self._counter.read()
        return self._redis.read([self.NAME])

    def redis_key(self) -> str | None:
        """The counter's key in Redis, where it is kept there: a caller may read it in a round
        trip of its own (see ``api.py``), as :meth:`current` would."""
        return None if self._redis is None else self._redis.key_of(self.NAME)

    def bump(self) -> None:
        """Advance the revision; call after committing a change to API keys."""
        if self._redis is None:
            self._counter.bump()
        else:
            self._redis.bump([self.NAME])


class KeyCache:
    """Bounded, thread-safe memory of verified keys and of rejected ones, by key digest.

    Entries are found by this process's HMAC of the whole presented key, so a remembered key
    is recognised without parsing it again; the HMAC's secret never leaves the process, so
    nothing an attacker sends can be steered towards a remembered digest.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._secret = secrets.token_bytes(32)
        self._max_entries = max_entries
        # digest → (key revision, monotonic time read, what the caller remembers of the key)
        self._verified: OrderedDict[bytes, tuple[int | None, float, Any]] = OrderedDict()
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        self._use_recorded: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, key: str) -> bytes:
        """Return this process's HMAC of a presented key."""
        return hmac.digest(self._secret, key.encode(), hashlib.sha256)  # (OpenSSL's one-shot)

    def fresh(self, digest: bytes, revision: int | None) -> Any | None:
        """Return what was remembered of a verified key, if read under the current revision."""
        entry = self._verified.get(digest)
        if (
            entry is None
            or revision is None
            or entry[0] != revision
            or time.monotonic() - entry[1] > MAX_AGE
        ):
            return None
        return entry[2]

    def remembered(self, digest: bytes) -> Any | None:
        """What was remembered of a verified key, fresh or not (``None`` if nothing)."""
        entry = self._verified.get(digest)
        return None if entry is None else entry[2]

    def was_verified(self, digest: bytes) -> bool:
        """Tell whether this exact key passed its bcrypt check in this process."""
        return digest in self._verified

    def is_rejected(self, digest: bytes) -> bool:
        """Tell whether this exact key failed its bcrypt check in this process."""
        return digest in self._rejected

    def remember_verified(self, digest: bytes, revision: int | None, value: Any) -> None:
        with self._lock:
            self._remember(self._verified, digest, (revision, time.monotonic(), value))

    def remember_rejected(self, digest: bytes) -> None:
        with self._lock:
            self._remember(self._rejected, digest, None)

    def use_is_due(self, key_id: str, stored: datetime | None, now: datetime, every: timedelta):
        """Tell whether this process should record a use of the key now (at most once per
        ``every``), given the last use stored in the row it read."""
        recorded = self._use_recorded.get(key_id)
        latest = recorded if stored is None or (recorded and recorded > stored) else stored
        if latest is not None and now - latest < every:
            return False
        with self._lock:
            self._remember(self._use_recorded, key_id, now)
        return True

    def _remember(self, entries: OrderedDict, key, value) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)


# --- wiring ------------------------------------------------------------------------------------

_REVISION = "discountflow.key_revision"
_CACHE = "discountflow.key_cache"


def init_app(app: Flask) -> None:
    """Give the app its key revision (shared with the other processes) and its key cache."""
    with app.app_context():
        engine = db.engine
    app.extensions[_REVISION] = KeyRevision(
        engine, app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_KEY_PREFIX"]
    )
    app.extensions[_CACHE] = KeyCache()


def key_revision(app: Flask | None = None) -> KeyRevision:
    """The app's key revision (the current app's unless one is given)."""
    return (app or current_app).extensions[_REVISION]


def key_cache(app: Flask | None = None) -> KeyCache:
    """The app's memory of verified and rejected keys (the current app's unless one is given)."""
    return (app or current_app).extensions[_CACHE]


def announce_key_change() -> None:
    """Make every process read keys again on its next request; call after the commit."""
    key_revision().bump()

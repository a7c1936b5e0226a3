"""The per-process memory of API keys, so a valid key costs one bcrypt check per process.

A key's bcrypt hash is checked once; after that this process remembers an HMAC of the key
(under a secret that lives only in this process) and compares digests in constant time. Keys
that failed bcrypt are remembered too, so the same bad key never costs a second bcrypt check.

Whether a remembered key is still usable (revoked, replaced, expired) must hold on the very next
request in every process, whoever changed it (another worker, the CLI, another host). So each
remembered key carries the auth revision (see :class:`~discountflow.auth.models.AuthRevision`)
it was read under, and is trusted only while that revision is current. On SQLite the revision
is read through a read-only connection of this process's own, which costs microseconds; where
that is not possible, :meth:`AuthRevisionReader.current` answers ``None`` and the key's row is
read on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine


class AuthRevisionReader:
    """Read the current auth revision cheaply, where the database allows it."""

    def __init__(self, engine: Engine) -> None:
        url = engine.url
        path = url.database if url.get_backend_name() == "sqlite" else None
        self._path = None if path in (None, "", ":memory:") else path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """Return the current revision, or ``None`` when it cannot be read cheaply."""
        if self._path is None:
            return None
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = sqlite3.connect(
                        f"file:{self._path}?mode=ro", uri=True, check_same_thread=False
                    )
                row = self._connection.execute(
                    "SELECT version FROM auth_revision WHERE id = 1"
                ).fetchone()
            except sqlite3.Error:
                self._connection = None
                return None
        return row[0] if row else None


class KeyCache:
    """Bounded, thread-safe memory of verified keys (with their row) and rejected digests."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._secret = secrets.token_bytes(32)
        self._max_entries = max_entries
        # key id → (digest of the verified key, auth revision, row snapshot)
        self._verified: OrderedDict[str, tuple[bytes, int | None, Any]] = OrderedDict()
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        self._use_recorded: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, key: str) -> bytes:
        """Return this process's HMAC of a presented key."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).digest()

    def is_verified(self, key_id: str, digest: bytes) -> bool:
        """Tell whether this exact key already passed its bcrypt check in this process."""
        entry = self._verified.get(key_id)
        return entry is not None and hmac.compare_digest(entry[0], digest)

    def fresh_row(self, key_id: str, digest: bytes, revision: int | None) -> Any | None:
        """Return the remembered row of this verified key if the revision has not moved."""
        entry = self._verified.get(key_id)
        if entry is None or revision is None or entry[1] != revision:
            return None
        return entry[2] if hmac.compare_digest(entry[0], digest) else None

    def is_rejected(self, digest: bytes) -> bool:
        """Tell whether this exact key already failed its bcrypt check in this process."""
        return digest in self._rejected

    def remember_verified(self, key_id: str, digest: bytes, revision: int | None, row) -> None:
        with self._lock:
            self._remember(self._verified, key_id, (digest, revision, row))

    def remember_rejected(self, digest: bytes) -> None:
        with self._lock:
            self._remember(self._rejected, digest, None)

    def use_is_due(self, key_id: str, stored: datetime | None, now: datetime, every: timedelta):
        """Tell whether this process should record a use of the key now (at most once per
        ``every``), given the last use stored in the row it read."""
        recorded = self._use_recorded.get(key_id)
        latest = max(filter(None, (recorded, stored)), default=None)
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

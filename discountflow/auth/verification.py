"""The per-process memory of API keys, so a valid key costs one bcrypt check per process.

A key's bcrypt hash is checked once; after that this process remembers an HMAC of the key
(under a secret that lives only in this process) and compares digests in constant time. Keys
that failed bcrypt are remembered too, so the same bad key never costs a second bcrypt check.

Whether a remembered key is still usable (revoked, replaced, expired) must hold on the very next
request in every process, whoever changed it (another worker, the CLI). So each remembered key
carries the *key revision* it was read under and is trusted only while that revision is current.
The revision grows after every generate, roll and revoke. On SQLite it is a counter in a small
file beside the database, memory-mapped by every process: reading it is a memory read, with no
system call and no release of the GIL, which matters under gunicorn's threads (reading it
through SQLite measured several hundred microseconds of CPU per request there). Where there is
no such file (another database), :meth:`KeyRevision.current` answers ``None`` and the key's row
is read on every request.

Should a process die between committing a key change and bumping the counter, the other
processes would not hear of it; remembered rows are therefore read again after
``MAX_AGE`` seconds whatever the counter says.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import mmap
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

MAX_AGE = 10.0  # seconds a remembered row is trusted without reading it again
_COUNTER = struct.Struct("<Q")


class KeyRevision:
    """A counter shared by every process on this host that uses the same SQLite database."""

    def __init__(self, engine: Engine) -> None:
        url = engine.url
        database = url.database if url.get_backend_name() == "sqlite" else None
        self.path = None if database in (None, "", ":memory:") else f"{database}-keyrev"
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()

    def _mapped(self) -> mmap.mmap | None:
        if self._map is None and self.path is not None:
            with self._lock:
                if self._map is None:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        if os.fstat(fd).st_size < _COUNTER.size:
                            os.ftruncate(fd, _COUNTER.size)  # zero-filled; growing is idempotent
                        self._map = mmap.mmap(fd, _COUNTER.size)
                    finally:
                        os.close(fd)
        return self._map

    def current(self) -> int | None:
        """Return the current revision, or ``None`` where there is no shared counter."""
        mapped = self._mapped()
        return None if mapped is None else _COUNTER.unpack_from(mapped)[0]

    def bump(self) -> None:
        """Advance the revision; call after committing a change to API keys."""
        mapped = self._mapped()
        if mapped is None:
            return
        with open(self.path, "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # serialize bumps across processes
            try:
                _COUNTER.pack_into(mapped, 0, _COUNTER.unpack_from(mapped)[0] + 1)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


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
        return hmac.new(self._secret, key.encode(), hashlib.sha256).digest()

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

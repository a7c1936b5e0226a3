"""The per-process memory of keys already checked, so bcrypt runs at most once per key.

A key's bcrypt hash is checked once; after that this process remembers an HMAC of the key
(under a secret that lives only in this process) and later requests compare digests in constant
time. Whether the key is still usable (revoked, replaced, expired) is read from the database on
every request, so this memory never keeps a dead key alive. Keys that failed bcrypt are
remembered too: the same bad key never costs a second bcrypt check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict


class KeyVerifier:
    """Bounded, thread-safe memory of verified and rejected key digests."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._secret = secrets.token_bytes(32)
        self._max_entries = max_entries
        self._verified: OrderedDict[str, bytes] = OrderedDict()
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, key: str) -> bytes:
        """Return this process's HMAC of a presented key."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).digest()

    def is_verified(self, key_id: str, digest: bytes) -> bool:
        """Tell whether this exact key already passed its bcrypt check in this process."""
        known = self._verified.get(key_id)
        return known is not None and hmac.compare_digest(known, digest)

    def is_rejected(self, digest: bytes) -> bool:
        """Tell whether this exact key already failed its bcrypt check in this process."""
        return digest in self._rejected

    def remember_verified(self, key_id: str, digest: bytes) -> None:
        with self._lock:
            self._remember(self._verified, key_id, digest)

    def remember_rejected(self, digest: bytes) -> None:
        with self._lock:
            self._remember(self._rejected, digest, None)

    def _remember(self, entries: OrderedDict, key, value) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)

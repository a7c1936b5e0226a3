"""The in-process rate-limit storage, budgets of failed attempts (API keys, dashboard sign-ins),
and what happens when the rate-limit storage is down.

The per-key quota of the API is a Flask-Limiter decorator on every ``/v2`` blueprint
(``api.per_key_quota``). The budgets here count *failures* instead, per client address or
account, in the same storage: an attempt is counted before it is tried and given back when it
succeeds, which Flask-Limiter's decorators do not express.

Decided: the API fails open. Should the shared storage (Redis) stop answering, API requests are
served without their per-key quota, and a warning is logged at most every 10 seconds. The
failed-authentication budget is counted in each process meanwhile (``counted_in`` a
``ProcessStorage``): keys carry 128 random bits, so guessing gains nothing from the pause, but
each wrong secret costs a bcrypt check, and those keep a ceiling. The dashboard's sign-in fails
closed (503): its limits are what stands between a password and a guesser. ``/readyz`` reports
the storage as unreachable either way.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from flask import Flask
from limits import parse_many
from limits.errors import StorageError
from limits.storage import MovingWindowSupport, Storage

from . import metrics
from .extensions import limiter

# What a storage that does not answer raises: limits wraps its driver's errors
# (``RATELIMIT_STORAGE_OPTIONS["wrap_exceptions"]``, config.py).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (StorageError,)


class ProcessStorage(Storage, MovingWindowSupport):
    """Rate-limit counts kept in this process (``process://``, the default), registered by its
    scheme through ``limits``' storage interface.

    It counts exactly as ``limits``' own ``memory://`` does — a moving window per key, fixed
    counters with an expiry — without that storage's timer: ``MemoryStorage`` starts a new
    ``threading.Timer`` to sweep expired entries whenever a hit finds none alive, which under
    steady load is a new thread about a hundred times a second (each start waits for the thread,
    and every request pays in GIL hand-offs). Here a window is trimmed when it is counted, a
    counter is dropped when it is read after its expiry, and the keys nobody uses any more are
    swept once a minute by whichever call finds the sweep due.
    """

    STORAGE_SCHEME = ["process"]
    SWEEP_EVERY = 60.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        self.windows: dict[str, tuple[int, deque[float]]] = {}  # expiry, times (oldest first)
        self.counters: dict[str, tuple[int, float]] = {}  # value, expires at
        self.lock = threading.Lock()
        self.next_sweep = time.time() + self.SWEEP_EVERY
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def _sweep(self, now: float) -> None:
        """Forget the keys nobody used for a while (call with the lock held)."""
        if now < self.next_sweep:
            return
        self.next_sweep = now + self.SWEEP_EVERY
        for key, (_, expires) in list(self.counters.items()):
            if expires <= now:
                del self.counters[key]
        for key, (expiry, window) in list(self.windows.items()):
            if not window or window[-1] <= now - expiry:
                del self.windows[key]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self.lock:
            value, expires = self.counters.get(key, (0, 0.0))
            if expires <= now:  # expired or new: a new count, expiring ``expiry`` from now
                value, expires = 0, now + expiry
            value += amount
            self.counters[key] = (value, expires)
            self._sweep(now)
        return value

    def get(self, key: str) -> int:
        value, expires = self.counters.get(key, (0, 0.0))
        return value if expires > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _, expires = self.counters.get(key, (0, now))
        return expires if expires > now else now

    def _window(self, key: str, expiry: int, now: float) -> deque[float]:
        """The key's acquired times still inside the window (call with the lock held)."""
        window = self.windows.setdefault(key, (expiry, deque()))[1]
        while window and window[0] <= now - expiry:
            window.popleft()
        return window

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self.lock:
            window = self._window(key, expiry, now)
            if len(window) + amount > limit:
                return False
            window.extend([now] * amount)
            self._sweep(now)
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """When the oldest request in the window arrived, and how many the window holds."""
        now = time.time()
        with self.lock:
            window = self._window(key, expiry, now)
            return (window[0], len(window)) if window else (now, 0)

    def check(self) -> bool:
        return True

    def clear(self, key: str) -> None:
        with self.lock:
            self.counters.pop(key, None)
            self.windows.pop(key, None)

    def reset(self) -> int | None:
        with self.lock:
            count = len(self.counters) + len(self.windows)
            self.counters.clear()
            self.windows.clear()
        return count


log = logging.getLogger(__name__)
WARN_EVERY = 10.0
_last_warning = -WARN_EVERY


def storage_unavailable(error: BaseException) -> None:
    """Note (at most every ``WARN_EVERY`` seconds) that the limit storage failed a request."""
    global _last_warning
    metrics.count_backend_error("redis")
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning(
            "rate-limit storage unreachable, serving the API without limits (failed "
            "authentications are counted in each process meanwhile): %r",
            error,
        )


class _SwallowedStorageErrors(logging.Filter):
    """Flask-Limiter (``RATELIMIT_SWALLOW_ERRORS``) logs every request whose quota it could not
    count with a traceback: say it through :func:`storage_unavailable` instead, once in a while."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, STORAGE_ERRORS):
            storage_unavailable(error)
            return False
        return True


def init_app(app: Flask) -> None:
    """Report the storage errors Flask-Limiter swallows in the service's own words."""
    flask_limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(each, _SwallowedStorageErrors) for each in flask_limiter_log.filters):
        flask_limiter_log.addFilter(_SwallowedStorageErrors())


class OverBudget(Exception):
    """The budget is spent until ``retry_after`` seconds from now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = max(1, retry_after)


class AttemptBudget:
    """Failed attempts per key (a client address, an account), in the limiter's storage (shared
    by every worker when it is Redis), within every window of ``limit`` ("20 per minute", or
    "20 per minute; 2 per 5 seconds").

    An attempt is counted *before* it is tried (``reserve``), so attempts made at the same
    moment cannot together go beyond the budget; one that succeeds is given back (``release``),
    so only failures stay counted. Windows are fixed (one atomic increment each); at a window's
    edge a client may therefore fail up to twice the amount in a short while, as documented.
    """

    def __init__(self, name: str, limit: str, storage: Storage | None = None) -> None:
        self.name = name
        self.limit = limit
        self.windows = [(item.amount, item.get_expiry()) for item in parse_many(limit)]
        self.storage = storage  # None: the limiter's (Redis, or this process's)

    def counted_in(self, storage: Storage) -> AttemptBudget:
        """The same budget, counted in ``storage`` (this process's, while Redis is away)."""
        return AttemptBudget(self.name, self.limit, storage)

    def _storage(self) -> Storage:
        return self.storage if self.storage is not None else limiter.storage

    def _counters(self, key: str) -> list[tuple[str, int, int, float]]:
        """(counter, amount, window, seconds left in it) for each window, as of now."""
        now = time.time()
        counters = []
        for amount, window in self.windows:
            start = now - now % window
            counter = f"{self.name}/{window}/{key}/{int(start)}"
            counters.append((counter, amount, window, start + window - now))
        return counters

    def spent(self, key: str) -> int | None:
        """Seconds until the budget has room again, if it is spent now (``None``: it is not)."""
        storage = self._storage()
        waits = [
            math.ceil(left)
            for counter, amount, _, left in self._counters(key)
            if storage.get(counter) >= amount
        ]
        return max(waits) if waits else None

    def reserve(self, key: str) -> list[tuple[str, int]]:
        """Count an attempt before trying it, or raise ``OverBudget``; return its counters."""
        storage = self._storage()
        reserved: list[tuple[str, int]] = []
        for counter, amount, window, left in self._counters(key):
            reserved.append((counter, window + 1))
            if storage.incr(counter, window + 1) > amount:
                self.release(reserved)  # it was not tried
                raise OverBudget(math.ceil(left))
        return reserved

    def release(self, reserved: list[tuple[str, int]]) -> None:
        """Give back an attempt (it succeeded, or was never tried)."""
        storage = self._storage()
        for counter, expiry in reserved:
            storage.incr(counter, expiry, amount=-1)

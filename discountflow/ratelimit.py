"""Keep the in-process (``memory://``) rate-limit storage cheap under load; say what happens
when a shared storage (Redis) is down.

limits' ``MemoryStorage`` removes expired entries from a ``threading.Timer`` that it starts anew,
10 ms after the previous one ended, whenever a hit finds no timer alive: under steady traffic
that is a new thread about a hundred times a second, each sweeping every key. Under gunicorn's
threads, that churn measured about 300 µs of CPU per API request (``bench/auth_overhead.py``).
Here one long-lived daemon thread sweeps once a second instead; the storage's counting is
unchanged (expired entries are ignored when counting, only their memory waits up to a second).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref

from flask import Flask
from limits import parse as parse_limit
from limits.errors import StorageError
from limits.storage import MemoryStorage

from . import metrics
from .extensions import limiter

SWEEP_INTERVAL = 1.0


def expire_events(storage: MemoryStorage) -> None:
    """Drop the storage's expired entries (limits' private method: ``limits`` is pinned exactly
    in requirements.txt, and tests/test_hardening.py fails loudly should it go)."""
    storage._MemoryStorage__expire_events()


class _Sweeper(threading.Thread):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(name="discountflow-rate-limit-sweeper", daemon=True)
        self._storage = weakref.ref(storage)  # the thread ends when the storage is gone

    def run(self) -> None:
        while True:
            time.sleep(SWEEP_INTERVAL)
            storage = self._storage()
            if storage is None:
                return
            expire_events(storage)
            del storage


def init_app(app: Flask) -> None:
    """Give the in-process storage one lasting sweeper (Flask-Limiter is bound already)."""
    if limiter.enabled:
        sweep_from_one_thread(limiter.storage)


def sweep_from_one_thread(storage: object) -> None:
    """Give a ``MemoryStorage`` one lasting sweeper; leave other storages alone."""
    if isinstance(storage, MemoryStorage):
        sweeper = _Sweeper(storage)
        sweeper.start()
        # MemoryStorage starts a new timer only when its ``timer`` is not alive; this one is.
        storage.timer = sweeper


# --- when the shared storage is down ------------------------------------------------------------
#
# Decided: the API fails open. Should Redis stop answering, API requests are served without
# their per-key limit (and without the failed-authentication budget: keys carry 128 random bits,
# so guessing them gains nothing from the pause), and a warning is logged at most every 10
# seconds. The dashboard's sign-in fails closed (503): its limits are what stands between a
# password and a guesser. /readyz reports the storage as unreachable either way.

log = logging.getLogger(__name__)
WARN_EVERY = 10.0
_last_warning = 0.0


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, StorageError]
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - limits[redis] brings it
        pass
    else:
        errors.append(RedisError)
    return tuple(errors)


STORAGE_ERRORS = _storage_errors()


def storage_unavailable(error: BaseException) -> None:
    """Note (at most every ``WARN_EVERY`` seconds) that the limit storage failed a request."""
    global _last_warning
    metrics.count_backend_error("redis")
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning("rate-limit storage unreachable, serving the API without limits: %r", error)


# --- budgets of attempts: counted before each attempt, successes given back --------------------


class OverBudget(Exception):
    """The budget is spent until ``retry_after`` seconds from now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = max(1, retry_after)


class AttemptBudget:
    """At most ``amount`` failed attempts per ``window`` seconds per key (a client address, an
    account), in the limiter's storage (shared by every worker when it is Redis).

    An attempt is counted *before* it is tried (``reserve``), so attempts made at the same
    moment cannot together go beyond the budget; one that succeeds is given back (``release``),
    so only failures stay counted. Windows are fixed (``limits``' counters: one atomic increment
    a reservation); at a window's edge a client may therefore fail up to twice the amount in a
    short while, which the README says.
    """

    def __init__(self, name: str, limit: str) -> None:
        item = parse_limit(limit)
        self.name, self.amount, self.window = name, item.amount, item.get_expiry()

    def _key(self, key: str) -> tuple[str, float]:
        now = time.time()
        start = now - now % self.window
        return f"{self.name}/{key}/{int(start)}", start + self.window - now

    def spent(self, key: str) -> int | None:
        """Seconds until the budget has room again, if it is spent now (``None``: it is not)."""
        counter, left = self._key(key)
        if limiter.storage.get(counter) >= self.amount:
            return math.ceil(left)
        return None

    def reserve(self, key: str) -> str:
        """Count an attempt before trying it, or raise ``OverBudget``; return its counter."""
        counter, left = self._key(key)
        if limiter.storage.incr(counter, math.ceil(left) + 1) > self.amount:
            limiter.storage.incr(counter, math.ceil(left) + 1, amount=-1)  # it was not tried
            raise OverBudget(math.ceil(left))
        return counter

    def release(self, counter: str) -> None:
        """Give back an attempt that succeeded."""
        limiter.storage.incr(counter, self.window + 1, amount=-1)

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
import threading
import time
import weakref

from flask import Flask
from limits.errors import StorageError
from limits.storage import MemoryStorage

from .extensions import limiter

SWEEP_INTERVAL = 1.0


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
            storage._MemoryStorage__expire_events()
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
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning("rate-limit storage unreachable, serving the API without limits: %r", error)

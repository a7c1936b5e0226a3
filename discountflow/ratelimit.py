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

import bisect
import logging
import math
import secrets
import threading
import time
import weakref
from functools import partial

from flask import Flask, request
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.storage.memory import Entry
from limits.strategies import MovingWindowRateLimiter

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
    """Give the in-process storage one lasting sweeper, and keep Flask-Limiter's per-request
    hooks off the API (Flask-Limiter is bound already)."""
    if limiter.enabled:
        sweep_from_one_thread(limiter.storage)
    keep_limiter_hooks_off_the_api(app)


def keep_limiter_hooks_off_the_api(app: Flask) -> None:
    """Skip Flask-Limiter's after-request and teardown hooks for requests below /v2.

    The API counts its per-key limit itself (``api.py``) and Flask-Limiter's before-request hook
    already skips /v2 (``extensions.Limiter``), so on /v2 its after-request hook (headers of
    limits it never checked) and its teardown (resetting a context it never used) only build
    and clear an empty per-request context: ~15 µs of each API request. Elsewhere (the
    dashboard) they run as before. Its hooks are recognised by being bound to the limiter;
    tests/test_request_overhead.py fails should a new Flask-Limiter register them otherwise.
    """
    for hooks, answer in (
        (app.after_request_funcs.setdefault(None, []), _pass_response),
        (app.teardown_request_funcs.setdefault(None, []), _pass_nothing),
    ):
        for index, hook in enumerate(hooks):
            if _bound_to_limiter(hook):
                hooks[index] = _off_the_api(hook, answer)


def _bound_to_limiter(hook: object) -> bool:
    if isinstance(hook, partial):
        return bool(hook.args) and hook.args[0] is limiter
    return getattr(hook, "__self__", None) is limiter


def _pass_response(response):
    return response


def _pass_nothing(error=None):
    return None


def _off_the_api(hook, answer):
    def hook_off_the_api(*args):
        path = request.path
        if path == "/v2" or path.startswith("/v2/"):
            return answer(*args)
        return hook(*args)

    # A name without "<locals>": DiscountFlow.ensure_sync remembers the hook is not a coroutine.
    hook_off_the_api.__qualname__ = f"keep_limiter_hooks_off_the_api({hook!r})"
    return hook_off_the_api


def sweep_from_one_thread(storage: object) -> None:
    """Give a ``MemoryStorage`` one lasting sweeper; leave other storages alone."""
    if isinstance(storage, MemoryStorage):
        sweeper = _Sweeper(storage)
        sweeper.start()
        # MemoryStorage starts a new timer only when its ``timer`` is not alive; this one is.
        storage.timer = sweeper


# --- a moving window counted in one storage call ------------------------------------------------
#
# ``limits`` counts a request (``hit``) and reports the window (``get_window_stats``) in two
# storage calls: on Redis two round trips, each a Lua script, for every API request. Both are
# done here in one call — for Redis one script, the library's two scripts run back to back; for
# the in-process storage under one lock — and answer exactly what the two calls would (tests in
# tests/test_request_overhead.py compare them, request by request). Any other storage or
# strategy takes the library's two calls. On Redis, ``hit_and_read`` also reads counters kept
# there (the API-key revision) in the same script: one round trip for a remembered key's request.

_WINDOW = """
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])

-- limits' acquire_moving_window.lua, for an amount of 1
local acquired = 0
local entry = redis.call('lindex', KEYS[1], limit - 1)
if not (entry and tonumber(entry) >= timestamp - expiry) then
    redis.call('lpush', KEYS[1], timestamp)
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    acquired = 1
end

-- limits' moving_window.lua: the oldest entry still in the window, by binary search
local target = timestamp - expiry
local low, high, index = 0, limit - 1, nil
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        index = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
"""
ACQUIRE_AND_WINDOW = (
    _WINDOW
    + """
if index then
    return {acquired, tostring(redis.call('lindex', KEYS[1], index)), index + 1}
end
return {acquired}
"""
)
# The same, and then the counters named by the other keys (a counter not there is started at
# its seed, ARGV[2 + i] for KEYS[i], as RedisCounters.read starts one): see hit_and_read.
ACQUIRE_WINDOW_AND_READ = (
    _WINDOW
    + """
local answer = {acquired, false, false}
if index then
    answer[2] = tostring(redis.call('lindex', KEYS[1], index))
    answer[3] = index + 1
end
for i = 2, #KEYS do
    local value = redis.call('get', KEYS[i])
    if not value then
        redis.call('set', KEYS[i], ARGV[2 + i], 'NX')
        value = redis.call('get', KEYS[i])
    end
    answer[#answer + 1] = value
end
return answer
"""
)
_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_read_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hit_moving_window(
    strategy: object, item: RateLimitItem, *identifiers: str
) -> tuple[bool, float, int]:
    """Count one request against ``item``; return whether it is allowed, when the window's
    oldest request leaves it (epoch seconds) and how many requests the window has left — what
    ``strategy.hit`` then ``strategy.get_window_stats`` answer, in one storage call."""
    storage = getattr(strategy, "storage", None)
    if isinstance(strategy, MovingWindowRateLimiter):
        key, amount, expiry = item.key_for(*identifiers), item.amount, item.get_expiry()
        if type(storage) is MemoryStorage and isinstance(storage.timer, _Sweeper):
            return _hit_in_memory(storage, key, amount, expiry)
        if isinstance(storage, RedisStorage):
            return _hit_in_redis(storage, key, amount, expiry)
    allowed = strategy.hit(item, *identifiers)
    reset_at, remaining = strategy.get_window_stats(item, *identifiers)
    return allowed, reset_at, remaining


def _hit_in_memory(
    storage: MemoryStorage, key: str, amount: int, expiry: int
) -> tuple[bool, float, int]:
    # MemoryStorage.acquire_entry then get_moving_window, under the key's lock. Expired entries
    # are dropped by the storage's sweeper (sweep_from_one_thread), which this path relies on.
    with storage.locks[key]:
        events = storage.events.setdefault(key, [])
        now = time.time()
        allowed = not (len(events) >= amount and events[amount - 1].atime >= now - expiry)
        if allowed:
            events.insert(0, Entry(expiry))
        if events and events[-1].atime > now - expiry:  # the sweeper keeps this the usual case
            count = len(events)  # newest first: the oldest is in the window, so all of them are
        else:
            count = bisect.bisect_left(events, -(now - expiry), key=lambda entry: -entry.atime)
        if count:
            return allowed, events[count - 1].atime + expiry, amount - count
        return allowed, (events[-1].atime if events else now) + expiry, amount


def _hit_in_redis(
    storage: RedisStorage, key: str, amount: int, expiry: int
) -> tuple[bool, float, int]:
    script = _scripts.get(storage)
    if script is None:
        script = _scripts[storage] = storage.get_connection().register_script(ACQUIRE_AND_WINDOW)
    timestamp = time.time()
    answer = script([storage.prefixed_key(key)], [timestamp, amount, expiry])
    if len(answer) == 3:
        return bool(answer[0]), float(answer[1]) + expiry, amount - int(answer[2])
    return bool(answer[0]), timestamp + expiry, amount


def hit_and_read(
    strategy: object, item: RateLimitItem, identifiers: tuple[str, ...], counters: list[str]
) -> tuple[tuple[bool, float, int], list[int]] | None:
    """On Redis, count one request as :func:`hit_moving_window` does and read the named
    counters (full Redis keys, as ``RedisCounters`` names them; each is started as
    ``RedisCounters.read`` starts one) in the same round trip: the window and the counters'
    values, in order. ``None`` where the storage is not Redis. Raises the storage's errors."""
    storage = getattr(strategy, "storage", None)
    if not (isinstance(strategy, MovingWindowRateLimiter) and isinstance(storage, RedisStorage)):
        return None
    key, amount, expiry = item.key_for(*identifiers), item.amount, item.get_expiry()
    script = _read_scripts.get(storage)
    if script is None:
        script = _read_scripts[storage] = storage.get_connection().register_script(
            ACQUIRE_WINDOW_AND_READ
        )
    timestamp = time.time()
    seeds = [secrets.randbits(48) for _ in counters]
    acquired, oldest, index, *values = script(
        [storage.prefixed_key(key), *counters], [timestamp, amount, expiry, *seeds]
    )
    if index is None:
        window = (bool(acquired), timestamp + expiry, amount)
    else:
        window = (bool(acquired), float(oldest) + expiry, amount - int(index))
    return window, [int(value) for value in values]


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

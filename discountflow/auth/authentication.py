"""Authenticating an API request: from the ``Authorization`` header to the key's row, with bcrypt
run at most once per valid key per process.

After a key passes its bcrypt check, this process remembers it under an HMAC of the key (with a
secret that never leaves the process) and trusts what it read only while the *key revision* is
unchanged: a counter every process shares, which every generate, roll and revoke (and an
organization's rename) advances right after its commit. So a remembered key costs no database
read, and a revoked key is refused on the next request in every process. The revision lives

* in the rate-limit storage when that is shared (Redis: every process on every host);
* else in a small file beside an SQLite database (every process on the box);
* else nowhere (PostgreSQL with ``process://``): the key's row is read on every request.

Should a process die between a commit and its bump, what others remember is read again after
``MAX_AGE`` seconds in any case. Keys that fail bcrypt are remembered too, so the same bad key
never costs a second check, and each client address has a budget of failed checks
(``AUTH_FAILURE_LIMIT``): while it is spent, every request from it gets the same 429 whatever is
wrong or right with its key — except a key this process has already verified. While the shared
rate-limit storage (Redis) does not answer, that budget is counted in each process instead:
the per-key quota fails open, but bcrypt checks keep a ceiling (found by the fault run: 30
wrong secrets at once, with Redis away, each got its bcrypt check).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from flask import Flask, current_app
from sqlalchemy import or_, select, update

from ..config import IN_PROCESS_STORAGES
from ..database import begin_write, utcnow
from ..errors import InvalidApiKey, TooManyFailedAuthentications
from ..extensions import db, limiter
from ..hashing import check_secret
from ..organizations.models import Organization
from ..ratelimit import (
    STORAGE_ERRORS,
    AttemptBudget,
    OverBudget,
    ProcessStorage,
    storage_unavailable,
)
from .keys import MAX_KEY_BYTES, parse_key
from .models import ApiKey

MAX_AGE = 10.0  # seconds a remembered key is trusted without reading its row again
MAX_REMEMBERED = 10_000  # keys remembered per process (verified, rejected, uses recorded)


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """The caller of an authenticated API request: an API key acting for its organization."""

    key_id: str
    organization_id: str
    organization_name: str
    organization_slug: str
    environment: str
    read_only: bool


class _Known(NamedTuple):
    """What this process remembers of a verified key."""

    principal: ApiKeyPrincipal
    expires_at: datetime | None
    last_used_at: datetime | None
    revision: int | None
    read_at: float  # monotonic


class _Bounded(OrderedDict):
    """A dict that forgets its oldest entries beyond ``MAX_REMEMBERED``."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


class KeyRevision:
    """The counter whose change tells every process to read keys again (see the module)."""

    STORAGE_KEY = "discountflow/key-revision"
    STORAGE_EXPIRY = 30 * 24 * 3600  # a lost or expired counter reads 0: nothing is trusted

    def __init__(self, storage_uri: str, database_path: str | None) -> None:
        self.shared_storage = not storage_uri.startswith(IN_PROCESS_STORAGES)
        self.path = None if self.shared_storage else database_path and database_path + "-keyrev"
        self._fd: int | None = None

    def current(self) -> int | None:
        """The revision now, or ``None`` where there is none (read the row every time)."""
        if self.shared_storage:
            try:
                return limiter.storage.get(self.STORAGE_KEY) or self._advance()
            except STORAGE_ERRORS as error:
                storage_unavailable(error)
                return None
        if self.path is None:
            return None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return int.from_bytes(os.pread(self._fd, 8, 0), "little")

    def bump(self) -> None:
        """Advance the revision; call right after committing a change to API keys."""
        if self.shared_storage:
            try:
                self._advance()
            except STORAGE_ERRORS as error:  # what was remembered still runs out (MAX_AGE)
                storage_unavailable(error)
        elif self.path is not None:
            counter = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(counter, fcntl.LOCK_EX)  # one bump at a time across processes
                value = int.from_bytes(os.pread(counter, 8, 0), "little") + 1
                os.pwrite(counter, value.to_bytes(8, "little"), 0)  # (readers: old or new)
            finally:
                os.close(counter)  # (and the lock with it)

    def _advance(self) -> int:
        # By a random step: a counter Redis lost and started again never comes back to a value
        # a process may still remember.
        step = secrets.randbits(32) + 1
        return limiter.storage.incr(self.STORAGE_KEY, self.STORAGE_EXPIRY, amount=step)


class RememberedKeys:
    """This process's memory of keys: verified ones (with what was read), rejected ones, and
    when each key's use was last recorded. Bounded, and safe to share between threads."""

    def __init__(self, revision: KeyRevision) -> None:
        self.revision = revision
        self._secret = secrets.token_bytes(32)
        self._verified: _Bounded = _Bounded()
        self._rejected: _Bounded = _Bounded()
        self._use_recorded: _Bounded = _Bounded()
        self._lock = threading.Lock()

    def digest(self, key: str) -> bytes:
        """This process's HMAC of a presented key (nothing sent can aim at a remembered one)."""
        return hmac.digest(self._secret, key.encode(), hashlib.sha256)

    def was_verified(self, digest: bytes) -> bool:
        """Whether this exact key passed its bcrypt check in this process."""
        return digest in self._verified

    def was_rejected(self, digest: bytes) -> bool:
        """Whether this exact key failed its bcrypt check in this process."""
        return digest in self._rejected

    def fresh(self, digest: bytes, revision: int | None) -> _Known | None:
        """What was read of a verified key, if it was read under the current revision."""
        known = self._verified.get(digest)
        if (
            known is None
            or revision is None
            or known.revision != revision
            or time.monotonic() - known.read_at > MAX_AGE
        ):
            return None
        return known

    def remember(self, digest: bytes, known: _Known | None) -> None:
        with self._lock:
            if known is None:
                self._rejected[digest] = None
            else:
                self._verified[digest] = known

    def use_is_due(self, key_id: str, stored: datetime | None, now: datetime) -> bool:
        """Whether to record a use of the key now: at most once per
        ``LAST_USED_RESOLUTION_SECONDS`` per process, and not if the row says another did."""
        every = timedelta(seconds=current_app.config["LAST_USED_RESOLUTION_SECONDS"])
        recorded = self._use_recorded.get(key_id)
        latest = max(filter(None, (recorded, stored)), default=None)
        if latest is not None and now - latest < every:
            return False
        with self._lock:
            self._use_recorded[key_id] = now
        return True


_MEMORY = "discountflow.remembered_keys"
_FAILURES_IN_PROCESS = "discountflow.auth_failures_in_process"


def init_app(app: Flask) -> None:
    """Give the app its memory of keys and the key revision it shares with other processes."""
    with app.app_context():
        url = db.engine.url
    database = url.database if url.get_backend_name() == "sqlite" else None
    revision = KeyRevision(
        app.config["RATELIMIT_STORAGE_URI"], database if database not in ("", ":memory:") else None
    )
    app.extensions[_MEMORY] = RememberedKeys(revision)
    # Where failed checks are counted while the shared storage does not answer.
    app.extensions[_FAILURES_IN_PROCESS] = ProcessStorage()


def remembered_keys() -> RememberedKeys:
    """The current app's memory of keys."""
    return current_app.extensions[_MEMORY]


def announce_key_change() -> None:
    """Make every process read keys again on its next request; call after the commit."""
    remembered_keys().revision.bump()


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_BYTES:
        return None
    return token


def authenticate(authorization: str | None, client_address: str) -> ApiKeyPrincipal:
    """Return the key an ``Authorization`` header names, or raise ``InvalidApiKey`` — one
    answer for every failure. Keys refused for their format, checksum, environment, or an id
    with no usable key cost nothing and count nothing against the address."""
    memory = remembered_keys()
    presented = bearer_token(authorization)
    digest = memory.digest(presented) if presented is not None else None
    if digest is None or not memory.was_verified(digest):
        _refuse_while_locked_out(client_address)
    if presented is None:
        raise InvalidApiKey()
    revision = memory.revision.current()
    known = memory.fresh(digest, revision) or _read_key(presented, digest, revision, client_address)
    now = utcnow()
    if known.expires_at is not None and known.expires_at <= now:
        raise InvalidApiKey()
    if memory.use_is_due(known.principal.key_id, known.last_used_at, now):
        _record_use(known.principal.key_id, now)
    return known.principal


def _read_key(presented: str, digest: bytes, revision: int | None, client_address: str) -> _Known:
    """Check a key this process does not trust now: format, row, then (once) bcrypt."""
    parsed = parse_key(presented)
    if parsed is None or parsed.environment != current_app.config["DISCOUNTFLOW_ENV"]:
        raise InvalidApiKey()
    row = db.session.execute(
        select(ApiKey, Organization.name, Organization.slug)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .where(ApiKey.id == parsed.key_id)
    ).one_or_none()
    key = row[0] if row is not None else None
    if (
        key is None
        or key.revoked_at is not None
        or (key.expires_at is not None and key.expires_at <= utcnow())
        or key.environment != parsed.environment
        or key.read_only != parsed.read_only
    ):
        raise InvalidApiKey()
    memory = remembered_keys()
    if not memory.was_verified(digest):
        if memory.was_rejected(digest):
            raise InvalidApiKey()
        reserved = _reserve_a_check(client_address)
        if not check_secret(presented, key.key_hash, "api_key"):
            memory.remember(digest, None)
            raise InvalidApiKey()  # the reserved attempt stays counted: it failed
        _give_back(reserved)
    known = _Known(
        principal=ApiKeyPrincipal(
            key_id=key.id,
            organization_id=key.organization_id,
            organization_name=row.name,
            organization_slug=row.slug,
            environment=key.environment,
            read_only=key.read_only,
        ),
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revision=revision,
        read_at=time.monotonic(),
    )
    memory.remember(digest, known)
    return known


def _record_use(key_id: str, now: datetime) -> None:
    """Record that a key was used, unless another process did within the resolution."""
    since = now - timedelta(seconds=current_app.config["LAST_USED_RESOLUTION_SECONDS"])
    begin_write()  # after the key was read: a deferred read cannot become a write on SQLite
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= since)
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


# --- the failed-authentication budget of a client address ------------------------------------


def _failure_budget() -> AttemptBudget | None:
    """The budget of failed checks (``AUTH_FAILURE_LIMIT``), unless limits are off."""
    return _budget(current_app.config["AUTH_FAILURE_LIMIT"]) if limiter.enabled else None


@lru_cache(maxsize=8)
def _budget(limit: str) -> AttemptBudget:
    return AttemptBudget("auth-failures", limit)


def _in_process(budget: AttemptBudget) -> AttemptBudget:
    """The budget counted in this process, while the shared storage does not answer."""
    return budget.counted_in(current_app.extensions[_FAILURES_IN_PROCESS])


def _refuse_while_locked_out(client_address: str) -> None:
    budget = _failure_budget()
    if budget is None:
        return
    try:
        retry_after = budget.spent(client_address)
    except STORAGE_ERRORS as error:  # the per-key quota fails open; this budget does not
        storage_unavailable(error)
        retry_after = _in_process(budget).spent(client_address)
    if retry_after is not None:
        raise TooManyFailedAuthentications(retry_after=retry_after)


# What a reserved check was counted in, and its counters (``_give_back`` returns them).
Reservation = tuple[AttemptBudget, list[tuple[str, int]]]


def _reserve_a_check(client_address: str) -> Reservation | None:
    """Count a bcrypt check before it runs (refused with 429 once the budget is spent); in
    this process while the shared storage does not answer."""
    budget = _failure_budget()
    if budget is None:
        return None
    try:
        try:
            return budget, budget.reserve(client_address)
        except STORAGE_ERRORS as error:
            storage_unavailable(error)
            local = _in_process(budget)
            return local, local.reserve(client_address)
    except OverBudget as spent:
        raise TooManyFailedAuthentications(retry_after=spent.retry_after) from None


def _give_back(reservation: Reservation | None) -> None:
    """A check that succeeded does not count against the address."""
    if reservation is None:
        return
    budget, reserved = reservation
    try:
        budget.release(reserved)
    except STORAGE_ERRORS as error:
        storage_unavailable(error)

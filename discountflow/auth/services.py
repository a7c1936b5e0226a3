"""API keys and dashboard sign-in: the rules every surface (API, dashboard, CLI) shares.

Key management takes an explicit :class:`~discountflow.actors.Actor` (only the organization's
owner, in the dashboard or through the CLI, manages keys; an API key never manages keys),
owns its transaction, records an audit event beside every change (the key's public id, never
its text) and raises :class:`~discountflow.errors.DomainError` subclasses on refusal.
Authentication turns an ``Authorization`` header into the key it names, or refuses it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import bcrypt
from flask import current_app
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..actors import Actor, writing
from ..audit.services import EventLog
from ..database import begin_write, rfc3339, utcnow
from ..errors import (
    Conflict,
    InvalidApiKey,
    InvalidParameter,
    NotFound,
    RateLimited,
    TooManyFailedAuthentications,
)
from ..extensions import db, limiter
from ..hashing import MAX_SECRET_BYTES, hash_secret
from ..organizations.models import Organization, User
from ..ratelimit import STORAGE_ERRORS, AttemptBudget, OverBudget, storage_unavailable
from .keys import MAX_KEY_BYTES, build_key, parse_key
from .models import ApiKey, DashboardSession
from .verification import KeyCache, announce_key_change, key_cache, key_revision

log = logging.getLogger(__name__)

MAX_GRACE = timedelta(days=30)
MAX_EXPIRY_DAYS = 3650


# --- signing in to the dashboard ---------------------------------------------------------------

# A hash to check passwords against when no member has the email, so an unknown email costs
# the same bcrypt work as a wrong password and the response time tells nothing.
_UNKNOWN_MEMBER_HASH: dict[int, bytes] = {}


def _checkpw(secret: bytes, stored: bytes, kind: str) -> bool:
    """bcrypt's verification, counted (``discountflow_bcrypt_verifications_total``)."""
    metrics.count_bcrypt(kind)
    return bcrypt.checkpw(secret, stored)


class TooManySignIns(RateLimited):
    message = "Too many attempts. Wait a moment, then try again."
    limit = "sign_in"


def organizations_to_choose_from() -> bool:
    """Whether signing in needs an organization: this box hosts more than one."""
    return db.session.execute(select(func.count()).select_from(Organization)).scalar_one() > 1


@lru_cache(maxsize=16)
def _sign_in_budget(name: str, limit: str) -> AttemptBudget:
    return AttemptBudget(name, limit)


def _account(organization: str | None, email: str) -> User | None:
    """The member with this email in this organization (the only one, when there is one)."""
    if len(email) > 254 or (organization is not None and len(organization) > 64):
        return None
    statement = select(User).where(User.email == email.strip().lower())
    if organization:
        statement = statement.join(Organization).where(
            or_(Organization.slug == organization, Organization.id == organization)
        )
    elif organizations_to_choose_from():
        return None
    return db.session.execute(statement.limit(1)).scalar_one_or_none()


def sign_in(
    email: str, password: str, *, organization: str | None, client_address: str
) -> tuple[User, str] | None:
    """Check a member's email and password; return the member and a new session's id, or
    ``None`` — one answer for every failure (unknown organization or email, wrong password).

    Failed attempts are limited per client address and per account, counted before the
    password is checked (so attempts at the same moment cannot go beyond the limits) and given
    back when one succeeds: ``TooManySignIns`` (429) once either is spent. The limits are kept
    in the limiter's storage and must be checked: should it be away, sign-in fails (503).
    """
    config = current_app.config
    budgets = [
        (_sign_in_budget("sign-in-address", config["SIGN_IN_LIMIT_PER_ADDRESS"]), client_address),
        (
            _sign_in_budget("sign-in-account", config["SIGN_IN_LIMIT_PER_ACCOUNT"]),
            f"{(organization or '*').lower()}:{email.strip().lower()}"[:320],
        ),
    ]
    reservations = []
    if limiter.enabled:
        try:
            for budget, key in budgets:
                reservations.append((budget, budget.reserve(key)))
        except OverBudget as spent:
            for budget, reservation in reservations:
                budget.release(reservation)
            raise TooManySignIns(retry_after=spent.retry_after) from None
    rounds = config["BCRYPT_ROUNDS"]
    if rounds not in _UNKNOWN_MEMBER_HASH:
        _UNKNOWN_MEMBER_HASH[rounds] = bcrypt.hashpw(
            secrets.token_bytes(16), bcrypt.gensalt(rounds)
        )
    secret = password.encode()[: MAX_SECRET_BYTES + 1]
    user = _account(organization, email)
    stored = user.password_hash.encode() if user is not None else _UNKNOWN_MEMBER_HASH[rounds]
    matches = len(secret) <= MAX_SECRET_BYTES and _checkpw(secret, stored, "sign_in")
    if user is None or not matches:
        metrics.count_auth_failure("sign_in")
        return None  # the reserved attempts stay counted: they failed
    for budget, reservation in reservations:
        budget.release(reservation)
    return user, start_session(user)


# --- dashboard sessions ------------------------------------------------------------------------

SESSION_ID = "sid"  # where the signed session cookie keeps the dashboard session's id


def start_session(user: User) -> str:
    """Open a dashboard session for a member who just signed in; return its id."""
    begin_write(user.organization_id)
    session_id = f"ses_{secrets.token_urlsafe(32)}"
    db.session.add(DashboardSession(id=session_id, user_id=user.id, created_at=utcnow()))
    db.session.commit()
    return session_id


def session_member(user_id: str, session_id: str | None, lifetime: timedelta) -> User | None:
    """The member a session cookie names, while that session is open and not too old."""
    if not session_id or not isinstance(session_id, str):
        return None
    return db.session.execute(
        select(User)
        .join(DashboardSession, DashboardSession.user_id == User.id)
        .where(
            DashboardSession.id == session_id,
            DashboardSession.user_id == user_id,
            DashboardSession.ended_at.is_(None),
            DashboardSession.created_at > utcnow() - lifetime,
        )
    ).scalar_one_or_none()


def end_session(session_id: str | None) -> None:
    """End one dashboard session (signing out)."""
    if not session_id:
        return
    begin_write()
    db.session.execute(
        update(DashboardSession)
        .where(DashboardSession.id == session_id, DashboardSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    db.session.commit()


def end_every_session(user_id: str) -> None:
    """End every dashboard session of a member, in the caller's transaction (no commit)."""
    db.session.execute(
        update(DashboardSession)
        .where(DashboardSession.user_id == user_id, DashboardSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def sign_out_everywhere(actor: Actor) -> None:
    """End every dashboard session of the signed-in member, on every device."""
    begin_write(actor.organization_id)
    end_every_session(actor.user.id)
    EventLog(actor, utcnow()).add("member.signed_out_everywhere", member=actor.user.id)
    db.session.commit()


# --- API keys: management (owner only) -------------------------------------------------------


@dataclass(frozen=True)
class KeySlot:
    """What the API Keys tab shows for one slot (full access or read-only)."""

    read_only: bool
    status: str  # "Active" or "No API key generated"
    current: ApiKey | None
    expiring: list[ApiKey]  # rolled keys still inside their grace period


MANAGE_KEYS = "manage API keys"


def _environment() -> str:
    return current_app.config["DISCOUNTFLOW_ENV"]


def _slot_keys(organization_id: str, read_only: bool):
    """The condition for the keys of a slot in this deployment's environment."""
    return (
        ApiKey.organization_id == organization_id,
        ApiKey.environment == _environment(),
        ApiKey.read_only == read_only,
    )


def _live_keys(organization_id: str, read_only: bool, now: datetime) -> list[ApiKey]:
    """Return the slot's keys that still authenticate, current first."""
    keys = db.session.execute(
        select(ApiKey)
        .where(
            *_slot_keys(organization_id, read_only),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
        .order_by(ApiKey.created_at.desc())
    ).scalars()
    return sorted(keys, key=lambda key: key.replaced_at is not None)


def _issue_key(
    actor: Actor,
    read_only: bool,
    now: datetime,
    expires_at: datetime | None,
    event: str,
    **data: Any,
) -> tuple[ApiKey, str]:
    """Add a new key to the slot, record ``event`` beside it, commit, and announce the change."""
    key_id, key = build_key(_environment(), read_only)
    api_key = ApiKey(
        id=key_id,
        organization_id=actor.organization_id,
        environment=_environment(),
        read_only=read_only,
        key_hash=hash_secret(key),
        last_four=key[-4:],
        created_at=now,
        created_by_id=actor.person_id,
        expires_at=expires_at,
    )
    db.session.add(api_key)
    EventLog(actor, now).add(
        event, api_key=key_id, scope=_scope(read_only), environment=api_key.environment, **data
    )
    _commit_key_change()
    log.info("%s: %s (organization %s)", event, key_id, actor.organization_id)
    return api_key, key


def _commit_key_change() -> None:
    try:
        db.session.commit()
    except IntegrityError as error:
        # Another request changed this slot at the same moment; the index kept one current key.
        db.session.rollback()
        raise Conflict("The key was changed by another request at the same time. Retry.") from error
    announce_key_change()


def _scope(read_only: bool) -> str:
    return "read_only" if read_only else "full_access"


def generate_key(
    actor: Actor, *, read_only: bool = False, expires_in_days: int | None = None
) -> tuple[ApiKey, str]:
    """Issue a new key for a slot, ending the slot's previous keys at once; return it once."""
    writing(actor)
    actor.require_owner(MANAGE_KEYS)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise InvalidParameter(
            f"A key expires in 1 to {MAX_EXPIRY_DAYS} days.", param="expires_in_days"
        )
    now = utcnow()
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    # Generating invalidates every key of the slot, including rolled keys still in grace.
    ended = [key.id for key in _live_keys(actor.organization_id, read_only, now)]
    db.session.execute(
        update(ApiKey)
        .where(*_slot_keys(actor.organization_id, read_only), ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return _issue_key(
        actor,
        read_only,
        now,
        expires_at,
        "api_key.generated",
        expires=rfc3339(expires_at),
        invalidated=ended,
    )


def roll_key(actor: Actor, *, read_only: bool = False, grace: timedelta) -> tuple[ApiKey, str]:
    """Issue a new key and let the slot's current key keep working for ``grace``."""
    writing(actor)
    actor.require_owner(MANAGE_KEYS)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidParameter("The grace period is between 0 and 30 days.", param="grace")
    now = utcnow()
    live = _live_keys(actor.organization_id, read_only, now)
    current = next((key for key in live if key.replaced_at is None), None)
    if current is None:
        raise Conflict("This slot has no active key to roll. Generate one instead.")
    ends_at = now + grace
    if current.expires_at is not None and current.expires_at < ends_at:
        ends_at = current.expires_at
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == current.id, ApiKey.replaced_at.is_(None))
        .values(replaced_at=now, expires_at=ends_at)
        .execution_options(synchronize_session=False)
    )
    return _issue_key(
        actor,
        read_only,
        now,
        None,
        "api_key.rolled",
        replaces=current.id,
        replaced_key_expires=rfc3339(ends_at),
    )


def revoke_key(actor: Actor, *, read_only: bool = False) -> list[str]:
    """Revoke every key of a slot at once, permanently; return the revoked key ids."""
    writing(actor)
    actor.require_owner(MANAGE_KEYS)
    now = utcnow()
    revoked = [key.id for key in _live_keys(actor.organization_id, read_only, now)]
    if not revoked:
        raise NotFound("This slot has no API key to revoke.")
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id.in_(revoked), ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    events = EventLog(actor, now)
    for key_id in revoked:
        events.add("api_key.revoked", api_key=key_id, scope=_scope(read_only))
    _commit_key_change()
    log.info("api keys revoked: %s", ", ".join(revoked))
    return revoked


def key_slots(actor: Actor) -> list[KeySlot]:
    """Return the status of both slots, full access first, for the owner."""
    actor.require_owner(MANAGE_KEYS)
    now = utcnow()
    slots = []
    for read_only in (False, True):
        live = _live_keys(actor.organization_id, read_only, now)
        current = next((key for key in live if key.replaced_at is None), None)
        slots.append(
            KeySlot(
                read_only=read_only,
                status="Active" if current is not None else "No API key generated",
                current=current,
                expiring=[key for key in live if key.replaced_at is not None],
            )
        )
    return slots


# --- API keys: authentication (every /v2 request) --------------------------------------------


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """The caller of an authenticated API request: an API key acting for its organization."""

    key_id: str
    organization_id: str
    organization_name: str
    organization_slug: str
    environment: str
    read_only: bool


# Built once: the statement is the same on every request, only the key id changes.
_KEY_QUERY = (
    select(
        ApiKey.id,
        ApiKey.organization_id,
        ApiKey.environment,
        ApiKey.read_only,
        ApiKey.key_hash,
        ApiKey.last_used_at,
        ApiKey.expires_at,
        ApiKey.revoked_at,
        Organization.name.label("organization_name"),
        Organization.slug.label("organization_slug"),
    )
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where(ApiKey.id == bindparam("key_id"))
)


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_BYTES:
        return None
    return token


class _KnownKey(NamedTuple):
    """What a process remembers of a verified key between requests."""

    principal: ApiKeyPrincipal
    expires_at: datetime | None
    last_used_at: datetime | None


def authenticate(
    authorization: str | None,
    *,
    client_ip: str,
    read_revision: Callable[[ApiKeyPrincipal], int | None] | None = None,
) -> ApiKeyPrincipal:
    """Return who an ``Authorization`` header authenticates, or raise ``InvalidApiKey``.

    bcrypt runs at most once per valid key per process and never twice for the same bad key.
    Each client address has a budget of bcrypt checks that fail (``AUTH_FAILURE_LIMIT``),
    reserved before each check; while it is spent, every request from the address gets the same
    429, whatever is wrong or right with its key — except a key this process has already
    verified, which keeps working. Keys refused for their format, checksum, environment, or an
    id with no usable key cost nothing and count nothing.

    ``read_revision``, given what this process remembers of the presented key, reads the key
    revision in a round trip of the caller's own (the API counts the key's request and reads
    its organization's revision in the same one); without it, or for a key not remembered,
    the revision is read here.
    """
    presented = bearer_token(authorization)
    app = current_app._get_current_object()  # once: each read through the proxy costs ~1 µs
    cache = key_cache(app)
    digest = cache.digest(presented) if presented is not None else None
    if digest is None or not cache.was_verified(digest):
        _refuse_while_locked_out(client_ip)
    if presented is None:
        raise InvalidApiKey()
    remembered = cache.remembered(digest) if read_revision is not None else None
    if remembered is not None:  # the caller reads the revision with its own round trip
        revision = read_revision(remembered.principal)
    else:
        revision = key_revision(app).current()
    known = cache.fresh(digest, revision) or _read_key(presented, digest, revision, client_ip)
    now = utcnow()
    if known.expires_at is not None and known.expires_at <= now:
        raise InvalidApiKey()
    principal = known.principal
    resolution = _seconds(app.config["LAST_USED_RESOLUTION_SECONDS"])
    if cache.use_is_due(principal.key_id, known.last_used_at, now, resolution):
        _record_use(principal.key_id, now, resolution)
    return principal


@lru_cache(maxsize=8)
def _seconds(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


def _read_key(presented: str, digest: bytes, revision: int | None, client_ip: str) -> _KnownKey:
    """Check a key this process does not trust yet: format, row, then (once) bcrypt."""
    parsed = parse_key(presented)
    if parsed is None or parsed.environment != _environment():
        raise InvalidApiKey()
    cache: KeyCache = key_cache()
    row = db.session.execute(_KEY_QUERY, {"key_id": parsed.key_id}).one_or_none()
    if (
        row is None
        or not _usable(row, utcnow())
        or row.environment != parsed.environment
        or row.read_only != parsed.read_only
    ):
        raise InvalidApiKey()
    if not cache.was_verified(digest):
        if cache.is_rejected(digest):
            raise InvalidApiKey()
        reservation = _reserve_a_check(client_ip)
        if not _checkpw(presented.encode(), row.key_hash.encode(), "api_key"):
            cache.remember_rejected(digest)
            raise InvalidApiKey()  # the reserved attempt stays counted: it failed
        _give_back(reservation)
    known = _KnownKey(
        principal=ApiKeyPrincipal(
            key_id=row.id,
            organization_id=row.organization_id,
            organization_name=row.organization_name,
            organization_slug=row.organization_slug,
            environment=row.environment,
            read_only=row.read_only,
        ),
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )
    cache.remember_verified(digest, revision, known)
    return known


def _usable(row, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


@lru_cache(maxsize=8)
def _budget(limit: str) -> AttemptBudget:
    return AttemptBudget("auth-failures", limit)


def _failure_budget() -> AttemptBudget | None:
    """The failed-authentication budget, unless limits are off (``RATELIMIT_ENABLED``)."""
    return _budget(current_app.config["AUTH_FAILURE_LIMIT"]) if limiter.enabled else None


def _refuse_while_locked_out(client_ip: str) -> None:
    budget = _failure_budget()
    try:
        retry_after = budget.spent(client_ip) if budget else None
    except STORAGE_ERRORS as error:  # fail open (see ratelimit.py)
        storage_unavailable(error)
        return
    if retry_after is not None:
        raise TooManyFailedAuthentications(retry_after=retry_after)


def _reserve_a_check(client_ip: str) -> str | None:
    """Count a bcrypt check before it runs (refused with 429 once the budget is spent)."""
    budget = _failure_budget()
    if budget is None:
        return None
    try:
        return budget.reserve(client_ip)
    except OverBudget as spent:
        raise TooManyFailedAuthentications(retry_after=spent.retry_after) from None
    except STORAGE_ERRORS as error:  # fail open (see ratelimit.py)
        storage_unavailable(error)
        return None


def _give_back(reservation: str | None) -> None:
    """A check that succeeded does not count against the address."""
    budget = _failure_budget()
    if budget is None or reservation is None:
        return
    try:
        budget.release(reservation)
    except STORAGE_ERRORS as error:
        storage_unavailable(error)


def _record_use(key_id: str, now: datetime, resolution: timedelta) -> None:
    """Record that a key was used, unless another process did within the resolution."""
    begin_write()  # after the key was read: a deferred read cannot become a write on SQLite
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - resolution),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()

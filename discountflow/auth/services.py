"""API keys and dashboard sign-in: the rules every surface (API, dashboard, CLI) shares.

Key management takes an explicit :class:`~discountflow.actors.Actor` (only the organization's
owner, in the dashboard or through the CLI, manages keys; an API key never manages keys),
owns its transaction, records an audit event beside every change (the key's public id, never
its text) and raises :class:`~discountflow.errors.DomainError` subclasses on refusal.
Authenticating an API request is ``authentication.py``'s.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import bcrypt
from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..actors import Actor, writing
from ..audit.services import EventLog
from ..database import begin_write, rfc3339, utcnow
from ..errors import Conflict, InvalidParameter, NotFound, RateLimited
from ..extensions import db, limiter
from ..hashing import MAX_SECRET_BYTES, check_secret, hash_secret
from ..organizations.models import Organization, User
from ..ratelimit import AttemptBudget, OverBudget
from .authentication import announce_key_change
from .keys import build_key
from .models import ApiKey, DashboardSession

log = logging.getLogger(__name__)

MAX_GRACE = timedelta(days=30)
MAX_EXPIRY_DAYS = 3650


# --- signing in to the dashboard ---------------------------------------------------------------

# A hash to check passwords against when no member has the email, so an unknown email costs
# the same bcrypt work as a wrong password and the response time tells nothing.
_UNKNOWN_MEMBER_HASH: dict[int, bytes] = {}


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
    """The member with this email in this organization (the only one, when there is one);
    none for a member who was removed, who is answered as anyone unknown."""
    if len(email) > 254 or (organization is not None and len(organization) > 64):
        return None
    statement = select(User).where(User.email == email.strip().lower(), User.removed_at.is_(None))
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
    matches = len(secret) <= MAX_SECRET_BYTES and check_secret(secret, stored, "sign_in")
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
    begin_write()
    session_id = f"ses_{secrets.token_urlsafe(32)}"
    db.session.add(DashboardSession(id=session_id, user_id=user.id, created_at=utcnow()))
    db.session.commit()
    return session_id


def session_member(user_id: str, session_id: str | None, lifetime: timedelta) -> User | None:
    """The member a session cookie names, while that session is open and not too old, and
    the member was not removed (a sign-in that raced the removal opened a session too late
    for it to end)."""
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
            User.removed_at.is_(None),
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


def end_every_session(user_id: str) -> int:
    """End every dashboard session of a member, in the caller's transaction (no commit);
    return how many were open."""
    return db.session.execute(
        update(DashboardSession)
        .where(DashboardSession.user_id == user_id, DashboardSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    ).rowcount


def sign_out_everywhere(actor: Actor) -> None:
    """End every dashboard session of the signed-in member, on every device."""
    begin_write()
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

"""Organizations, members and API keys: the rules every surface (API, dashboard, CLI) shares.

Services take an explicit actor, decide whether it may act, own the transaction and raise
:class:`~discountflow.errors.DomainError` subclasses on refusal.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple, NoReturn

import bcrypt
from flask import current_app, g
from limits import parse as parse_limit
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..database import begin_write, mark_changed, utcnow
from ..errors import (
    Conflict,
    InvalidApiKey,
    InvalidParameter,
    NotFound,
    PermissionDenied,
    TooManyFailedAuthentications,
)
from ..extensions import db, limiter
from ..pagination import PageRequest, paginate
from ..ratelimit import STORAGE_ERRORS, storage_unavailable
from .keys import MAX_KEY_BYTES, build_key, parse_key
from .models import ApiKey, Organization, Role, User
from .verification import KeyCache

log = logging.getLogger(__name__)

MAX_PASSWORD_BYTES = 72  # bcrypt's limit
MIN_PASSWORD_LENGTH = 8
MAX_GRACE = timedelta(days=30)
MAX_EXPIRY_DAYS = 3650
SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# --- passwords -------------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """Return a bcrypt hash of a password or key at the configured cost."""
    rounds = current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()


def _check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidParameter(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters.", param="password"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidParameter(
            f"The password must be at most {MAX_PASSWORD_BYTES} bytes.", param="password"
        )


# --- organizations and members ---------------------------------------------------------------


def slugify(name: str) -> str:
    """Return a URL-safe slug for an organization name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")


def _normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise InvalidParameter("Enter a valid email address.", param="email")
    return email


def create_organization(
    name: str, *, owner_email: str, owner_password: str, owner_name: str = "", slug: str = ""
) -> Organization:
    """Create an organization together with its one owner."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidParameter(
            "The organization needs a name of 1 to 200 characters.", param="name"
        )
    slug = slug or slugify(name)
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidParameter(
            "The slug may hold lowercase letters, digits and dashes.", param="slug"
        )
    email = _normalize_email(owner_email)
    _check_password_rules(owner_password)
    organization = Organization(name=name, slug=slug)
    owner = User(
        organization=organization,
        email=email,
        name=owner_name.strip(),
        password_hash=hash_secret(owner_password),
        role=Role.OWNER.value,
    )
    db.session.add_all([organization, owner])
    _commit_or_conflict("An organization with this slug, or a user with this email, exists.")
    return organization


def add_member(
    actor: User, *, email: str, password: str, role: str = Role.MEMBER.value, name: str = ""
) -> User:
    """Add a member to the actor's organization; owners and admins may."""
    if actor.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise PermissionDenied("Only the owner and admins may add members.")
    if role not in (Role.ADMIN.value, Role.MEMBER.value):
        raise InvalidParameter("A member's role is admin or member.", param="role")
    _check_password_rules(password)
    member = User(
        organization_id=actor.organization_id,
        email=_normalize_email(email),
        name=name.strip(),
        password_hash=hash_secret(password),
        role=role,
    )
    db.session.add(member)
    mark_changed(actor.organization_id)
    _commit_or_conflict("A user with this email exists.")
    return member


def set_member_role(actor: Actor, member_id: str, role: str) -> User:
    """Make a member an admin or a plain member; owners and admins may, never to the owner."""
    actor.require_manager("change roles")
    if role not in (Role.ADMIN.value, Role.MEMBER.value):
        raise InvalidParameter("A member's role is admin or member.", param="role")
    begin_write(actor.organization_id)
    member = get_member(actor, member_id)
    if member.is_owner:
        raise PermissionDenied("The owner's role cannot be changed.")
    member.role = role
    db.session.commit()
    log.info("member %s is now %s (by %s)", member.id, role, actor.user.id)
    return member


# A hash to check passwords against when no member has the email, so an unknown email costs
# the same bcrypt work as a wrong password and the response time tells nothing.
_UNKNOWN_MEMBER_HASH: dict[int, bytes] = {}


def check_sign_in(email: str, password: str) -> User | None:
    """Return the member with this email and password, or ``None`` (one answer for every
    failure: unknown email, wrong password, a password too long to be one)."""
    rounds = current_app.config["BCRYPT_ROUNDS"]
    if rounds not in _UNKNOWN_MEMBER_HASH:
        _UNKNOWN_MEMBER_HASH[rounds] = bcrypt.hashpw(
            secrets.token_bytes(16), bcrypt.gensalt(rounds)
        )
    secret = password.encode()[: MAX_PASSWORD_BYTES + 1]
    user = None
    if len(email) <= 254:
        user = db.session.execute(
            select(User).where(User.email == email.strip().lower())
        ).scalar_one_or_none()
    stored = user.password_hash.encode() if user is not None else _UNKNOWN_MEMBER_HASH[rounds]
    matches = len(secret) <= MAX_PASSWORD_BYTES and bcrypt.checkpw(secret, stored)
    if user is None or not matches:
        return None
    return user


def find_organization(reference: str) -> Organization:
    """Return the organization with this id or slug."""
    organization = db.session.execute(
        select(Organization).where(
            or_(Organization.id == reference, Organization.slug == reference)
        )
    ).scalar_one_or_none()
    if organization is None:
        raise NotFound(f"No organization with id or slug {reference!r}.")
    return organization


def owner_of(organization: Organization) -> User:
    """Return the organization's owner."""
    return db.session.execute(
        select(User).where(User.organization_id == organization.id, User.role == Role.OWNER.value)
    ).scalar_one()


def _commit_or_conflict(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise Conflict(message) from error


# --- actors: who is acting, with whose authority ---------------------------------------------


class Surface(enum.StrEnum):
    API = "api"
    DASHBOARD = "dashboard"
    CLI = "cli"
    SYSTEM = "system"


class Actor:
    """Who performs an action: a member, or an API key acting with the owner's authority.

    Services decide permissions from this and record it (user, key, surface) on every write.
    The member is loaded only when a rule needs it, so a key's plain reads cost no query.
    """

    def __init__(
        self,
        organization_id: str,
        *,
        surface: str,
        user: User | None = None,
        api_key_id: str | None = None,
    ) -> None:
        if user is None and api_key_id is None:
            raise ValueError("an actor is a member or an API key")
        self.organization_id = organization_id
        self.surface = surface
        self.api_key_id = api_key_id
        if user is not None:
            self.__dict__["user"] = user

    @classmethod
    def for_api_key(cls, principal: ApiKeyPrincipal) -> Actor:
        return cls(principal.organization_id, surface=Surface.API, api_key_id=principal.key_id)

    @classmethod
    def for_user(cls, user: User, surface: str) -> Actor:
        return cls(user.organization_id, surface=surface, user=user)

    @cached_property
    def user(self) -> User:
        """The member whose authority this is: the owner, for an API key."""
        return db.session.execute(
            select(User).where(
                User.organization_id == self.organization_id, User.role == Role.OWNER.value
            )
        ).scalar_one()

    @property
    def type(self) -> str:
        return "api_key" if self.api_key_id is not None else "user"

    @property
    def role(self) -> str:
        return Role.OWNER.value if self.api_key_id is not None else self.user.role

    @property
    def manages_organization(self) -> bool:
        return self.role in (Role.OWNER.value, Role.ADMIN.value)

    @property
    def sees_all_approvals(self) -> bool:
        """Approvers, admins and the owner see every approval of the organization."""
        return self.manages_organization or self.user.approval_level_id is not None

    def require_manager(self, what: str) -> None:
        if not self.manages_organization:
            raise PermissionDenied(f"Only the owner and admins may {what}.")

    def recorded_as(self) -> dict[str, str | None]:
        """The columns every decision, comment and event stores about its actor."""
        return {
            "actor_type": self.type,
            "actor_user_id": self.user.id,
            "api_key_id": self.api_key_id,
            "surface": str(self.surface),
        }


# --- API keys: management (owner only) -------------------------------------------------------


@dataclass(frozen=True)
class KeySlot:
    """What the API Keys tab shows for one slot (full access or read-only)."""

    read_only: bool
    status: str  # "Active" or "No API key generated"
    current: ApiKey | None
    expiring: list[ApiKey]  # rolled keys still inside their grace period


def _require_owner(actor: object) -> User:
    if not isinstance(actor, User) or not actor.is_owner:
        raise PermissionDenied("Only the organization owner may manage API keys.")
    return actor


def _environment() -> str:
    return current_app.config["DISCOUNTFLOW_ENV"]


def _live_keys(organization_id: str, read_only: bool, now: datetime) -> list[ApiKey]:
    """Return the slot's keys that still authenticate, current first."""
    keys = db.session.execute(
        select(ApiKey)
        .where(
            ApiKey.organization_id == organization_id,
            ApiKey.environment == _environment(),
            ApiKey.read_only == read_only,
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
        .order_by(ApiKey.created_at.desc())
    ).scalars()
    return sorted(keys, key=lambda key: key.replaced_at is not None)


def _end_current_key(organization_id: str, read_only: bool, now: datetime, **values) -> None:
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.organization_id == organization_id,
            ApiKey.environment == _environment(),
            ApiKey.read_only == read_only,
            ApiKey.revoked_at.is_(None),
            ApiKey.replaced_at.is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _issue_key(actor: User, read_only: bool, now: datetime, expires_at: datetime | None):
    key_id, key = build_key(_environment(), read_only)
    api_key = ApiKey(
        id=key_id,
        organization_id=actor.organization_id,
        environment=_environment(),
        read_only=read_only,
        key_hash=hash_secret(key),
        last_four=key[-4:],
        created_at=now,
        created_by_id=actor.id,
        expires_at=expires_at,
    )
    db.session.add(api_key)
    return api_key, key


def _commit_key_change() -> None:
    try:
        db.session.commit()
    except IntegrityError as error:
        # Another request changed this slot at the same moment; the index kept one current key.
        db.session.rollback()
        raise Conflict("The key was changed by another request at the same time. Retry.") from error
    _announce_key_change()


def _announce_key_change() -> None:
    """Make every process read keys again on its next request (after the commit)."""
    current_app.extensions["discountflow.key_revision"].bump()


def generate_key(
    actor: object, *, read_only: bool = False, expires_in_days: int | None = None
) -> tuple[ApiKey, str]:
    """Issue a new key for a slot, ending the slot's previous keys at once; return it once."""
    owner = _require_owner(actor)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise InvalidParameter(
            f"A key expires in 1 to {MAX_EXPIRY_DAYS} days.", param="expires_in_days"
        )
    begin_write()
    now = utcnow()
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    # Generating invalidates every key of the slot, including rolled keys still in grace.
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.organization_id == owner.organization_id,
            ApiKey.environment == _environment(),
            ApiKey.read_only == read_only,
            ApiKey.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    api_key, key = _issue_key(owner, read_only, now, expires_at)
    _commit_key_change()
    log.info("api key generated: %s (organization %s)", api_key.id, owner.organization_id)
    return api_key, key


def roll_key(actor: object, *, read_only: bool = False, grace: timedelta) -> tuple[ApiKey, str]:
    """Issue a new key and let the slot's current key keep working for ``grace``."""
    owner = _require_owner(actor)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidParameter("The grace period is between 0 and 30 days.", param="grace")
    begin_write()
    now = utcnow()
    live = _live_keys(owner.organization_id, read_only, now)
    current = next((key for key in live if key.replaced_at is None), None)
    if current is None:
        raise Conflict("This slot has no active key to roll. Generate one instead.")
    ends_at = now + grace
    if current.expires_at is not None and current.expires_at < ends_at:
        ends_at = current.expires_at
    _end_current_key(owner.organization_id, read_only, now, replaced_at=now, expires_at=ends_at)
    api_key, key = _issue_key(owner, read_only, now, None)
    _commit_key_change()
    log.info("api key rolled: %s replaces %s until %s", api_key.id, current.id, ends_at)
    return api_key, key


def revoke_key(actor: object, *, read_only: bool = False) -> list[str]:
    """Revoke every key of a slot at once, permanently; return the revoked key ids."""
    owner = _require_owner(actor)
    begin_write()
    now = utcnow()
    revoked = [key.id for key in _live_keys(owner.organization_id, read_only, now)]
    if not revoked:
        raise NotFound("This slot has no API key to revoke.")
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id.in_(revoked), ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    _announce_key_change()
    log.info("api keys revoked: %s", ", ".join(revoked))
    return revoked


def key_slots(actor: object) -> list[KeySlot]:
    """Return the status of both slots, full access first, for the owner."""
    owner = _require_owner(actor)
    now = utcnow()
    slots = []
    for read_only in (False, True):
        live = _live_keys(owner.organization_id, read_only, now)
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


def current_api_key() -> ApiKeyPrincipal:
    """Return the API key that authenticated the current request."""
    return g.api_key


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


def authenticate(authorization: str | None, *, client_ip: str) -> ApiKeyPrincipal:
    """Return who an ``Authorization`` header authenticates, or raise ``InvalidApiKey``.

    bcrypt runs at most once per valid key per process, never twice for the same bad key,
    and never for a client address over its failed-authentication limit.
    """
    presented = bearer_token(authorization)
    if presented is None:
        _refuse(client_ip)
    cache: KeyCache = current_app.extensions["discountflow.key_cache"]
    digest = cache.digest(presented)
    revision = current_app.extensions["discountflow.key_revision"].current()
    known = cache.fresh(digest, revision) or _read_key(presented, digest, revision, client_ip)
    now = utcnow()
    if known.expires_at is not None and known.expires_at <= now:
        _refuse(client_ip)
    principal = known.principal
    resolution = timedelta(seconds=current_app.config["LAST_USED_RESOLUTION_SECONDS"])
    if cache.use_is_due(principal.key_id, known.last_used_at, now, resolution):
        _record_use(principal.key_id, now, resolution)
    return principal


def _read_key(presented: str, digest: bytes, revision: int | None, client_ip: str) -> _KnownKey:
    """Check a key this process does not trust yet: format, row, then (once) bcrypt."""
    parsed = parse_key(presented)
    if parsed is None or parsed.environment != _environment():
        _refuse(client_ip)
    cache: KeyCache = current_app.extensions["discountflow.key_cache"]
    row = db.session.execute(_KEY_QUERY, {"key_id": parsed.key_id}).one_or_none()
    if (
        row is None
        or not _usable(row, utcnow())
        or row.environment != parsed.environment
        or row.read_only != parsed.read_only
    ):
        _refuse(client_ip)
    if not cache.was_verified(digest):
        if cache.is_rejected(digest):
            _refuse(client_ip)
        _check_failure_budget(client_ip)
        if not bcrypt.checkpw(presented.encode(), row.key_hash.encode()):
            cache.remember_rejected(digest)
            _refuse(client_ip)
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


def _failure_limit():
    return parse_limit(current_app.config["AUTH_FAILURE_LIMIT"])


def _check_failure_budget(client_ip: str) -> None:
    """Refuse bcrypt work for an address that has failed too often (shared limiter storage)."""
    if not limiter.enabled:  # RATELIMIT_ENABLED = False turns every limit off
        return
    item = _failure_limit()
    try:
        if limiter.limiter.test(item, "auth-failures", client_ip):
            return
        reset_at, _ = limiter.limiter.get_window_stats(item, "auth-failures", client_ip)
    except STORAGE_ERRORS as error:  # fail open (see ratelimit.py)
        storage_unavailable(error)
        return
    raise TooManyFailedAuthentications(retry_after=int(reset_at - time.time()))


def _refuse(client_ip: str) -> NoReturn:
    if limiter.enabled:
        try:
            limiter.limiter.hit(_failure_limit(), "auth-failures", client_ip)
        except STORAGE_ERRORS as error:  # fail open (see ratelimit.py)
            storage_unavailable(error)
    raise InvalidApiKey()


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


# --- members -----------------------------------------------------------------------------------


def list_members(actor: Actor, page: PageRequest) -> tuple[list[User], bool]:
    """Return one page of the organization's members, newest first."""
    scope = User.organization_id == actor.organization_id
    rows, has_more = paginate(select(User).where(scope), User, page, scope=scope)
    return [row[0] for row in rows], has_more


def get_member(actor: Actor, member_id: str) -> User:
    """Return one member of the actor's organization."""
    member = db.session.execute(
        select(User).where(User.id == member_id, User.organization_id == actor.organization_id)
    ).scalar_one_or_none()
    if member is None:
        raise NotFound(f"No such member: {member_id!r}.", param="id")
    return member


def get_organization(actor: Actor) -> Organization:
    """Return the actor's organization with its settings."""
    return db.session.get(Organization, actor.organization_id)


def member_names(actor: Actor, member_ids: Iterable[str | None]) -> dict[str, str]:
    """Return how each of these members of the actor's organization is shown: name, or email."""
    wanted = {member_id for member_id in member_ids if member_id}
    if not wanted:
        return {}
    rows = db.session.execute(
        select(User.id, User.name, User.email).where(
            User.organization_id == actor.organization_id, User.id.in_(wanted)
        )
    )
    return {row.id: row.name or row.email for row in rows}

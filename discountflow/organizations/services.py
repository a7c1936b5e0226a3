"""Organizations, their settings and their members: the rules every surface shares.

Services take an explicit :class:`~discountflow.actors.Actor`, decide whether it may act, own
the transaction, record an audit event beside every change and raise
:class:`~discountflow.errors.DomainError` subclasses on refusal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ..actors import Actor, Surface, fetch, writing
from ..approvals.models import Approval, ApprovalLevel, ApprovalStatus
from ..audit.services import EventLog
from ..auth.authentication import announce_key_change
from ..auth.services import end_every_session
from ..database import begin_write, new_id, require_usable_id, utcnow
from ..errors import (
    Conflict,
    InvalidParameter,
    InvalidStateTransition,
    NotFound,
    PermissionDenied,
)
from ..extensions import db
from ..hashing import MAX_SECRET_BYTES, hash_secret
from ..pagination import PageRequest, page_of
from ..schemas import to_bps
from .models import Organization, Role, User
from .schemas import MemberUpdate, OrganizationUpdate

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# No control characters (PostgreSQL refuses NUL outright: a query naming one failed there
# where SQLite found nobody) nor lone surrogates, which no driver can encode.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f\ud800-\udfff]+"
EMAIL_PATTERN = re.compile(rf"{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}")
MEMBER_ROLES = (Role.ADMIN.value, Role.MEMBER.value)  # the owner is made with the organization
REMOVED = "This member was removed."


def check_password_rules(password: str) -> None:
    """Refuse a password too short to be one, or too long for bcrypt."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidParameter(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters.", param="password"
        )
    if len(password.encode()) > MAX_SECRET_BYTES:
        raise InvalidParameter(
            f"The password must be at most {MAX_SECRET_BYTES} bytes.", param="password"
        )


def slugify(name: str) -> str:
    """Return a URL-safe slug for an organization name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")


def normalize_email(email: str) -> str:
    """Return an email address as it is stored (trimmed, lowercase), or refuse it."""
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise InvalidParameter("Enter a valid email address.", param="email")
    return email


def _commit_or_conflict(message: str, *, flush_only: bool = False) -> None:
    try:
        db.session.flush() if flush_only else db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise Conflict(message) from error


# --- organizations -----------------------------------------------------------------------------


def create_organization(
    name: str,
    *,
    owner_email: str,
    owner_password: str,
    owner_name: str = "",
    slug: str = "",
    surface: Surface = Surface.CLI,
) -> Organization:
    """Create an organization together with its one owner (who is recorded as creating it)."""
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
    email = normalize_email(owner_email)
    check_password_rules(owner_password)
    begin_write()
    now = utcnow()
    organization = Organization(
        id=new_id("org"), name=name, slug=slug, created_at=now, updated_at=now
    )
    owner = User(
        id=new_id("usr"),
        organization_id=organization.id,
        email=email,
        name=owner_name.strip(),
        password_hash=hash_secret(owner_password),
        role=Role.OWNER.value,
        created_at=now,
    )
    db.session.add_all([organization, owner])
    taken = "An organization with this slug exists."
    _commit_or_conflict(taken, flush_only=True)  # the organization first: events refer to it
    events = EventLog(Actor.for_user(owner, surface), now)
    events.add("organization.created", name=name, slug=slug)
    events.add("member.added", member=owner.id, email=email, role=owner.role)
    db.session.commit()
    log.info("organization created: %s (%s)", organization.id, slug)
    return organization


def find_organization(reference: str) -> Organization:
    """Return the organization with this id or slug (a reference no id or slug can be, too
    long or with control characters, is answered as missing on every database)."""
    try:
        require_usable_id(reference)
    except InvalidParameter:
        shown = reference if len(reference) <= 64 else f"{reference[:64]}..."
        raise NotFound(f"No organization with id or slug {shown!r}.") from None
    organization = db.session.execute(
        select(Organization).where(
            or_(Organization.id == reference, Organization.slug == reference)
        )
    ).scalar_one_or_none()
    if organization is None:
        raise NotFound(f"No organization with id or slug {reference!r}.")
    return organization


def get_organization(actor: Actor) -> Organization:
    """Return the actor's organization with its settings."""
    return db.session.get(Organization, actor.organization_id)


def update_organization(actor: Actor, data: OrganizationUpdate) -> Organization:
    """Change the organization's name, auto-approve threshold, default validity, reminder
    interval or whether custom line items are allowed."""
    writing(actor)
    actor.require_manager("change the organization's settings")
    now = utcnow()
    organization = get_organization(actor)
    changed = sorted(data.model_fields_set)
    renamed = "name" in changed and data.name != organization.name
    if "name" in changed:
        organization.name = data.name
    if "auto_approve_threshold_percent" in changed:
        organization.auto_approve_threshold_bps = to_bps(data.auto_approve_threshold_percent)
    if "default_validity_days" in changed:
        organization.default_validity_days = data.default_validity_days
    if "reminder_interval_hours" in changed:
        organization.reminder_interval_hours = data.reminder_interval_hours
    if "custom_line_items" in changed:
        organization.custom_line_items = data.custom_line_items
    organization.updated_at = now
    EventLog(actor, now).add("organization.updated", fields=changed)
    db.session.commit()
    if renamed:
        # Processes remember each verified key with its organization's name (GET /v2/me):
        # make them read it again on their next request.
        announce_key_change()
    return organization


# --- members -----------------------------------------------------------------------------------


def add_member(
    actor: Actor, *, email: str, password: str, role: str = Role.MEMBER.value, name: str = ""
) -> User:
    """Add a member to the actor's organization; owners and admins may. A member who was
    removed comes back with their email: the same member, with this password, role and name."""
    writing(actor)
    actor.require_manager("add members")
    if role not in MEMBER_ROLES:
        raise InvalidParameter("A member's role is admin or member.", param="role")
    check_password_rules(password)
    email = normalize_email(email)
    now = utcnow()
    member = db.session.execute(
        select(User)
        .where(
            User.organization_id == actor.organization_id,
            User.email == email,
            User.removed_at.is_not(None),
        )
        .with_for_update()
    ).scalar_one_or_none()
    if member is None:
        member = User(id=new_id("usr"), organization_id=actor.organization_id, created_at=now)
        db.session.add(member)
    member.email = email
    member.name = name.strip()
    member.password_hash = hash_secret(password)
    member.role = role
    member.approval_level_id = None
    member.removed_at = None
    EventLog(actor, now).add("member.added", member=member.id, email=member.email, role=role)
    _commit_or_conflict("A member of this organization has this email.")
    return member


def update_member(actor: Actor, member_id: str, data: MemberUpdate) -> User:
    """Change a member's role or approval level; owners and admins (never the owner's role)."""
    writing(actor)
    actor.require_manager("change members")
    now = utcnow()
    member = _present_member(actor, member_id)
    events = EventLog(actor, now)
    changed = data.model_fields_set
    if "role" in changed and data.role != member.role:
        if member.is_owner:
            raise PermissionDenied("The owner's role cannot be changed.")
        events.add("member.role_changed", member=member.id, previous=member.role, role=data.role)
        member.role = data.role
        end_every_session(member.id)  # a new role: signed in afresh, with it
    if "approval_level" in changed and data.approval_level != member.approval_level_id:
        if data.approval_level is not None:
            _require_level(actor, data.approval_level)
        events.add(
            "member.level_changed",
            member=member.id,
            previous=member.approval_level_id,
            approval_level=data.approval_level,
        )
        member.approval_level_id = data.approval_level
    db.session.commit()
    return member


def find_member(actor: Actor, email: str) -> User:
    """Return the member of the actor's organization with this email."""
    email = normalize_email(email)
    member = db.session.execute(
        select(User).where(User.organization_id == actor.organization_id, User.email == email)
    ).scalar_one_or_none()
    if member is None:
        slug = get_organization(actor).slug
        raise NotFound(f"No member of {slug} has the email {email!r}.", param="email")
    return member


def reset_password(actor: Actor, member_id: str, password: str) -> int:
    """Give a member a new password and end every dashboard session of theirs (they sign in
    again with it); the owner only. Return how many sessions ended."""
    actor.require_write()
    actor.require_owner("reset a member's password")
    check_password_rules(password)
    password_hash = hash_secret(password)  # before the write transaction: bcrypt is slow
    begin_write()
    member = _present_member(actor, member_id)
    member.password_hash = password_hash
    ended = end_every_session(member.id)
    EventLog(actor, utcnow()).add("member.password_reset", member=member.id, email=member.email)
    db.session.commit()
    return ended


def remove_member(actor: Actor, member_id: str) -> User:
    """Remove a member who left (owners and admins; never the owner, nobody themselves): they
    no longer sign in, decide or hear of anything, and history still names them."""
    writing(actor)
    actor.require_manager("remove members")
    member = _present_member(actor, member_id)
    refusal = removal_refused(actor, member)
    if refusal:
        raise PermissionDenied(refusal)
    now = utcnow()
    events = EventLog(actor, now)
    events.add(
        "member.removed",
        member=member.id,
        email=member.email,
        role=member.role,
        approval_level=member.approval_level_id,
    )
    member.removed_at = now
    member.approval_level_id = None  # an approver no more: no step waits for them
    end_every_session(member.id)  # a copy of their cookie opens nothing from now on
    db.session.commit()
    return member


def removal_refused(actor: Actor, member: User) -> str | None:
    """Why the actor may not remove this member, or ``None`` (the service's rule, and the
    dashboard's Remove buttons); who manages members at all is ``require_manager``'s."""
    if member.removed_at is not None:
        return REMOVED
    if member.is_owner:
        return "The owner cannot be removed."
    if actor.api_key_id is None and member.id == actor.user.id:
        return "You cannot remove yourself: ask another admin or the owner."
    return None


@dataclass(frozen=True)
class LastApprover:
    """A level that only one member holds, and the requests waiting at it now."""

    level: str
    waiting: int


def last_approver_at(actor: Actor, member: User) -> LastApprover | None:
    """The level ``member`` is the only present approver at, with how many of the
    organization's requests wait there now (removing them leaves those to nobody: the
    confirmation says so); ``None`` when they hold no level or share it."""
    level_id = member.approval_level_id  # none once removed
    if level_id is None:
        return None
    others = db.session.execute(
        select(func.count())
        .select_from(User)
        .where(
            User.organization_id == actor.organization_id,
            User.approval_level_id == level_id,
            User.removed_at.is_(None),
            User.id != member.id,
        )
    ).scalar_one()
    if others:
        return None
    waiting = db.session.execute(
        select(func.count())
        .select_from(Approval)
        .where(
            Approval.organization_id == actor.organization_id,
            Approval.status == ApprovalStatus.PENDING,
            Approval.awaiting_level_id == level_id,
        )
    ).scalar_one()
    level = db.session.get(ApprovalLevel, level_id)
    return LastApprover(level.name, waiting)


def _present_member(actor: Actor, member_id: str) -> User:
    """A member of the actor's organization who was not removed, locked until the commit (so
    that a change and a removal at the same moment run one after the other)."""
    member = fetch(actor, User, member_id, "member", for_update=True)
    if member.removed_at is not None:
        raise InvalidStateTransition(REMOVED)
    return member


def _require_level(actor: Actor, level_id: str) -> None:
    try:
        fetch(actor, ApprovalLevel, level_id, "approval level")
    except NotFound as error:
        raise InvalidParameter(error.message, param="approval_level") from error


def list_members(
    actor: Actor, page: PageRequest, *, with_removed: bool = False
) -> tuple[list[User], bool]:
    """Return one page of the organization's members, newest first; those who were removed
    only ``with_removed``."""
    # A removed member's id stays a cursor: a page may end with someone removed meanwhile.
    present = () if with_removed else (User.removed_at.is_(None),)
    return page_of(User, page, User.organization_id == actor.organization_id, *present)


def get_member(actor: Actor, member_id: str) -> User:
    """Return one member of the actor's organization (one who was removed too, so that
    history's links still lead somewhere)."""
    return fetch(actor, User, member_id, "member")


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

"""Who is told what: the recipients of each approval event, computed from the database as the
event's transaction leaves it (never from input), and the test email of the CLI.

- submitted, or moved to the next level: every member who may decide the active step now
  (``approvals.queries.decidable_by``, four eyes included);
- approved, rejected, sent back for changes: the requester;
- a comment: the request's participants (the requester, whoever created, edited, submitted,
  decided or commented on it) but the comment's author.

Only members of the approval's organization who were not removed, and never whoever made the
change itself; and each member's preferences (which kinds of email they want), read when an
email is sent (when a member removed meanwhile is told nothing either).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, union, update
from sqlalchemy.orm import Session

from ..actors import Actor, writing
from ..approvals.models import Approval, Comment, Decision, Participant
from ..approvals.queries import deciders
from ..audit.services import EventLog
from ..database import utcnow
from ..extensions import db
from ..organizations.models import User
from .mail import transport_for
from .messages import one_line, public_url, trial_message
from .models import (
    DIGEST_HOUR,
    Notification,
    NotificationKind,
    NotificationPreferences,
    NotificationStatus,
)
from .schemas import NotificationPreferencesUpdate

# The approval events that tell someone, and what they are told.
KINDS = {
    "approval.submitted": NotificationKind.DECISION_REQUESTED,
    "approval.step_approved": NotificationKind.DECISION_REQUESTED,
    "approval.approved": NotificationKind.APPROVED,
    "approval.rejected": NotificationKind.REJECTED,
    "approval.changes_requested": NotificationKind.CHANGES_REQUESTED,
    "comment.created": NotificationKind.COMMENTED,
}


def participants(session: Session, approval: Approval) -> list[str]:
    """The members who took part in the request: its requester, and whoever created, edited,
    submitted (this round), decided or commented on it."""
    taken_part = union(
        select(Participant.user_id.label("id")).where(Participant.approval_id == approval.id),
        select(Decision.actor_user_id).where(Decision.approval_id == approval.id),
        select(Comment.actor_user_id).where(Comment.approval_id == approval.id),
    ).subquery()
    found = set(
        session.execute(
            select(User.id).where(
                User.organization_id == approval.organization_id,
                User.id.in_(select(taken_part.c.id)),
            )
        ).scalars()
    )
    return sorted(found | {approval.requested_by_id})


def recipients(
    session: Session, event_type: str, approval: Approval, acting: Collection[str]
) -> list[str]:
    """The members an event about ``approval`` tells, but those ``acting`` in it."""
    kind = KINDS[event_type]
    if kind is NotificationKind.DECISION_REQUESTED:
        told = deciders(session, approval)
    elif kind is NotificationKind.COMMENTED:
        told = participants(session, approval)
    else:
        told = [approval.requested_by_id]
    told = [member for member in told if member not in acting]
    if not told:
        return []
    present = session.execute(
        select(User.id).where(User.id.in_(told), User.removed_at.is_(None))
    ).scalars()
    return sorted(set(present))


def skip_unsent_emails(session: Session, member_id: str) -> int:
    """Settle every email not sent yet to a member who is being removed (waiting for its turn,
    or held for their digest) as skipped, in the removal's transaction; return how many.

    The worker looks again when it sends, but a member added back before its turn would be
    sent what was written before they left (found by tests/test_members_remove_attacks.py).
    One a worker is sending at this moment is recorded as that worker finds (its claim holds);
    one whose worker died stays skipped."""
    return session.execute(
        update(Notification)
        .where(
            Notification.recipient_id == member_id,
            Notification.status.in_(
                [NotificationStatus.PENDING.value, NotificationStatus.DIGEST.value]
            ),
        )
        .values(
            status=NotificationStatus.SKIPPED.value,
            last_error="the member was removed",
            next_attempt_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount


def approval_of(session: Session, event: Any) -> Approval | None:
    """The approval an event is about, as the transaction leaves it (of its organization)."""
    if event.approval_id is None:
        return None
    approval = session.get(Approval, event.approval_id)
    if approval is None or approval.organization_id != event.organization_id:
        return None
    return approval


# --- the test email ----------------------------------------------------------------------------


class EmailNotSent(Exception):
    """The test email could not be sent (the message says why, never the password)."""


def send_test_email(recipient: str) -> str:
    """Send the test email at once (not through the outbox); return where it went."""
    if one_line(recipient) != recipient or "@" not in recipient:
        raise EmailNotSent(f"{recipient!r} is not an email address.")
    transport = transport_for(current_app.config)
    base = public_url(current_app.config["PUBLIC_URL"])
    message = trial_message(recipient, transport.sender, base)
    (sent,) = transport.send_each([(recipient, message)])
    if not sent.ok:
        raise EmailNotSent(f"The test email to {recipient} was not sent: {sent.error}")
    return transport.shown


# --- a member's preferences --------------------------------------------------------------------


def get_preferences(actor: Actor) -> NotificationPreferences:
    """Return the actor's email preferences (a key: the owner it acts for)."""
    found = db.session.get(NotificationPreferences, actor.person_id)
    return found or NotificationPreferences.every_kind(actor.person_id, actor.organization_id)


def update_preferences(
    actor: Actor, data: NotificationPreferencesUpdate
) -> NotificationPreferences:
    """Turn kinds of email on or off for the actor (``member.notification_preferences_changed``,
    with the fields that changed; nothing changed, nothing recorded)."""
    writing(actor)
    now = utcnow()
    preferences = db.session.get(NotificationPreferences, actor.person_id)
    if preferences is None:
        preferences = NotificationPreferences.every_kind(actor.person_id, actor.organization_id)
    changed = sorted(
        kind for kind in data.model_fields_set if getattr(data, kind) != getattr(preferences, kind)
    )
    if changed:
        db.session.add(preferences)
        for kind in changed:
            setattr(preferences, kind, getattr(data, kind))
        preferences.updated_at = now
        EventLog(actor, now).add(
            "member.notification_preferences_changed", member=actor.person_id, fields=changed
        )
        if {"digest", "digest_hour"} & set(changed):
            _reschedule_digest(preferences, now)
    db.session.commit()
    return preferences


def next_digest(now: datetime, hour: int = DIGEST_HOUR) -> datetime:
    """When the daily digest after ``now`` is sent, at ``hour`` o'clock UTC."""
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def _reschedule_digest(preferences: NotificationPreferences, now: datetime) -> None:
    """The emails a member's digest holds go with it at its new hour; with the digest turned
    off, at once (still together, in one email)."""
    when = next_digest(now, preferences.digest_hour) if preferences.digest else now
    db.session.execute(
        update(Notification)
        .where(
            Notification.recipient_id == preferences.user_id,
            Notification.status == NotificationStatus.DIGEST.value,
            Notification.claim.is_(None),  # one being sent now goes as it is
        )
        .values(next_attempt_at=when)
    )


def wants_email(member_id: str, kind: str) -> bool:
    """Whether the member wants emails of this kind (a member who changed nothing: yes)."""
    found = db.session.get(NotificationPreferences, member_id)
    return found is None or found.wants(kind)

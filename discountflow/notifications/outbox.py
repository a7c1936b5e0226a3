"""Notifications join the transactional outbox: the events a transaction adds become, just
before it commits, one pending notification per (event, recipient, channel).

They commit with the change and its events, or roll back with them: a change that is undone
tells nobody. The idempotency key (``<event>:<recipient>:<channel>``) is unique, so one event
never becomes two messages to one member. The worker (``worker.py``) sends them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from ..audit.models import Event
from ..database import new_id
from .models import Channel, Notification, NotificationStatus
from .services import KINDS, approval_of, recipients

_EVENTS = "discountflow.notification_events"


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    """Before each flush: remember the events the transaction adds that may tell someone."""
    added = [each for each in session.new if isinstance(each, Event) and each.type in KINDS]
    if added:
        session.info.setdefault(_EVENTS, []).extend(added)


def _write_notifications(session: Session) -> None:
    """Before the commit: the notifications of the transaction's events."""
    collected = session.info.pop(_EVENTS, [])
    collected += [each for each in session.new if isinstance(each, Event) and each.type in KINDS]
    if not collected:
        return
    events = list({id(each): each for each in collected}.values())
    for each in events:
        if each.id is None:
            each.id = new_id("evt")
    session.flush()  # the change as the transaction leaves it, for the recipients' queries
    session.info.pop(_EVENTS, None)
    rows = []
    for each in events:
        approval = approval_of(session, each)
        if approval is None:
            continue
        # Whoever made the change is not told of it (a submit auto-approved by the system:
        # the submitter); an API key counts as the owner it acts for.
        acting = {
            other.actor_user_id
            for other in events
            if other.approval_id == each.approval_id and other.actor_user_id
        }
        channel = Channel.EMAIL.value
        for member_id in recipients(session, each.type, approval, acting):
            rows.append(
                {
                    "id": new_id("ntf"),
                    "organization_id": each.organization_id,
                    "idempotency_key": f"{each.id}:{member_id}:{channel}",
                    "event_id": each.id,
                    "event_type": each.type,
                    "approval_id": approval.id,
                    "recipient_id": member_id,
                    "kind": KINDS[each.type].value,
                    "channel": channel,
                    "status": NotificationStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": each.created_at,
                    "last_error": "",
                    "created_at": each.created_at,
                }
            )
    if rows:
        session.connection().execute(Notification.__table__.insert(), rows)


def _forget(session: Session, *args: Any) -> None:
    """A rollback: the events are gone, and so are their notifications."""
    session.info.pop(_EVENTS, None)


def install() -> None:
    """Listen on every session (once per process)."""
    if not event.contains(Session, "before_flush", _collect):
        event.listen(Session, "before_flush", _collect)
        event.listen(Session, "before_commit", _write_notifications)
        event.listen(Session, "after_rollback", _forget)
        event.listen(Session, "after_soft_rollback", _forget)

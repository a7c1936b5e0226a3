"""Notifications join the transactional outbox (``discountflow.outbox``): the events a
transaction adds become, just before it commits, one pending notification per (event,
recipient, channel).

They commit with the change and its events, or roll back with them: a change that is undone
tells nobody. The idempotency key (``<event>:<recipient>:<channel>``) is unique, so one event
never becomes two messages to one member. The worker (``worker.py``) sends them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..audit.models import Event
from ..database import new_id
from ..outbox import listen
from .models import Channel, Notification, NotificationStatus
from .services import KINDS, approval_of, recipients


def write_notifications(session: Session, events: list[Event]) -> None:
    """Before the commit: the notifications of the transaction's events."""
    events = [each for each in events if each.type in KINDS]
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


def install() -> None:
    """Hand every transaction's events to :func:`write_notifications`."""
    listen(write_notifications)

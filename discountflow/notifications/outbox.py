"""Notifications join the transactional outbox (``discountflow.outbox``): the events a
transaction adds become, just before it commits, one pending notification per (event,
recipient, channel): an email to each member told, a chat message to each of the
organization's enabled destinations that hear of that kind.

They commit with the change and its events, or roll back with them: a change that is undone
tells nobody. The idempotency key (``<event>:<recipient>:<channel>``) is unique, so one event
never becomes two messages to one member. The worker (``worker.py``) sends them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..approvals.models import ApprovalStatus
from ..audit.models import Event
from ..database import new_id
from ..outbox import listen
from .destinations import Listeners
from .models import Channel, Notification, NotificationStatus
from .services import KINDS, approval_of, recipients, skip_unsent_emails


def row(event: Event, kind: str, channel: Channel, to: str, **values) -> dict:
    """One pending notification of ``event`` to a member or a destination (``to``)."""
    return {
        "id": new_id("ntf"),
        "organization_id": event.organization_id,
        "idempotency_key": f"{event.id}:{to}:{channel.value}",
        "event_id": event.id,
        "event_type": event.type,
        "approval_id": event.approval_id,
        "recipient_id": to if channel is Channel.EMAIL else None,
        "destination_id": to if channel is Channel.CHAT else None,
        "kind": kind,
        "channel": channel.value,
        "status": NotificationStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": event.created_at,
        "last_error": "",
        "created_at": event.created_at,
    } | values


def write_notifications(session: Session, events: list[Event]) -> None:
    """Before the commit: the notifications of the transaction's events; and a member removed
    is sent nothing more of what was written for them (``skip_unsent_emails``)."""
    for each in events:
        if each.type == "member.removed":
            skip_unsent_emails(session, each.data["member"])
    events = [each for each in events if each.type in KINDS]
    rows: list[dict] = []
    listeners = Listeners(session)
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
        kind = KINDS[each.type].value
        for member_id in recipients(session, each.type, approval, acting):
            rows.append(row(each, kind, Channel.EMAIL, member_id))
        # "Waits for a decision" only while it does (approved at once on submission: nobody).
        if kind != KINDS["approval.submitted"] or approval.status == ApprovalStatus.PENDING:
            for destination_id in listeners.of(each.organization_id, kind):
                rows.append(row(each, kind, Channel.CHAT, destination_id))
    if rows:
        session.connection().execute(Notification.__table__.insert(), rows)


def install() -> None:
    """Hand every transaction's events to :func:`write_notifications`."""
    listen(write_notifications)

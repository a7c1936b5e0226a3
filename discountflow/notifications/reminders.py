"""Reminders: a request that has waited at one step longer than its organization's reminder
interval is brought again to that step's deciders, once per step per interval.

The worker runs this pass beside its sending (at most once a minute). The idempotency key
``reminder:<step>:<interval number>:<recipient>:<channel>`` is unique, so a step that waits
five intervals reminds each decider (and each destination that hears of reminders) at most once
per interval, however often the pass runs or however many workers run it; a step decided
meanwhile is not reminded of (the worker also skips a reminder whose step was decided before it
was sent).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..approvals.models import Approval, ApprovalStatus, StepStatus
from ..audit.models import Event
from ..database import begin_write
from ..extensions import db
from ..organizations.models import Organization
from .destinations import Listeners
from .models import Channel, Notification, NotificationKind
from .outbox import row
from .services import deciders

log = logging.getLogger("discountflow.notifications")

# The events that open a step: the first at submit, the next when one is approved.
OPENING = ("approval.submitted", "approval.step_approved")


def step_opened(approval: Approval) -> Event | None:
    """The event that opened the approval's active step (the latest submit or step approval)."""
    return db.session.execute(
        select(Event)
        .where(Event.approval_id == approval.id, Event.type.in_(OPENING))
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def write_reminders(now: datetime) -> int:
    """Write the reminders due at ``now``; return how many were written. The waiting requests
    are read without holding SQLite's write lock (a scan of every pending request under it made
    the web's writes wait past their busy timeout); only the insert takes it."""
    waiting = db.session.execute(
        select(Approval, Organization.reminder_interval_hours)
        .join(Organization, Organization.id == Approval.organization_id)
        .where(
            Approval.status == ApprovalStatus.PENDING.value,
            Organization.reminder_interval_hours > 0,
        )
        .order_by(Approval.id)
    ).all()
    rows = []
    kind = NotificationKind.REMINDER.value
    listeners = Listeners(db.session)
    for approval, hours in waiting:
        step = next((s for s in approval.current_steps() if s.status == StepStatus.PENDING), None)
        opened = step_opened(approval)
        if step is None or opened is None:
            continue
        number = int((now - opened.created_at) / timedelta(hours=hours))
        if number < 1:
            continue
        told = [(Channel.EMAIL, member_id) for member_id in deciders(db.session, approval)]
        told += [(Channel.CHAT, each) for each in listeners.of(approval.organization_id, kind)]
        for channel, to in told:
            key = f"reminder:{step.id}:{number}:{to}:{channel.value}"
            values = {"idempotency_key": key, "next_attempt_at": now, "created_at": now}
            rows.append(row(opened, kind, channel, to, **values))
    db.session.rollback()  # the read ends here
    if rows:
        begin_write()
        keys = [row["idempotency_key"] for row in rows]
        written = set(
            db.session.execute(
                select(Notification.idempotency_key).where(Notification.idempotency_key.in_(keys))
            ).scalars()
        )
        rows = [row for row in rows if row["idempotency_key"] not in written]
    if not rows:
        db.session.rollback()
        return 0
    try:
        db.session.execute(Notification.__table__.insert(), rows)
        db.session.commit()
    except IntegrityError:  # another worker wrote them first (PostgreSQL, several workers)
        db.session.rollback()
        log.info("notification reminders: written by another worker meanwhile")
        return 0
    log.info("notification reminders: %d written", len(rows))
    return len(rows)

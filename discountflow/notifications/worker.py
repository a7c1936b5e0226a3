"""The notification worker: sends pending notifications, at least once, on the webhooks'
retry schedule, in the webhook worker's process (``flask --app app webhooks work``), beside it.

1. **Claim**, in a short transaction, a batch of due notifications (``FOR UPDATE SKIP LOCKED``
   on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), each due again only when the lease
   (``WEBHOOK_LEASE_SECONDS``) ends, and write each email from the database as it is now. One
   whose news is no longer true (the step was decided, the member lost the authority or left)
   is skipped.
2. **Send** the batch outside any transaction, over one SMTP connection (or to the log).
3. **Record**, if the claim is still ours: sent; or tried again — at once, then 5 s, 5 min,
   30 min, 2 h, 5 h, 10 h, then every 12 h, each ±10 % — until 3 days after the event, or at
   once for a refusal for good (a 5xx about the message), when it fails.

A worker killed mid-send leaves its claims to run out: the rest are sent after a restart (and
an email the server had accepted just before the kill goes again, with the same Message-ID).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from email.message import EmailMessage

from flask import Flask, current_app
from sqlalchemy import select

from .. import attempts, metrics
from ..approvals.models import Approval, Comment, Decision, StepStatus
from ..approvals.queries import may_decide
from ..audit.models import Event
from ..database import begin_write, utcnow
from ..extensions import db
from ..organizations.models import Organization, User
from .mail import Sent, Transport, transport_for
from .messages import Content, approval_link, compose, message_id, public_url
from .models import Notification, NotificationKind, NotificationStatus
from .reminders import step_opened, write_reminders
from .services import wants_email

log = logging.getLogger("discountflow.notifications")

BATCH = 20  # notifications claimed, and sent over one connection, at a time
REMINDER_PASS = timedelta(minutes=1)  # how often the worker looks for requests to remind of


@dataclass(frozen=True)
class Claimed:
    """A notification this worker holds, with its email written."""

    notification_id: str
    claim: str
    attempt: int
    created_at: datetime
    recipient: str
    message: EmailMessage


def _hours(waited: timedelta) -> str:
    hours = int(waited / timedelta(hours=1))
    return "1 hour" if hours == 1 else f"{hours} hours"


def _name(user: User | None) -> str:
    if user is None:
        return "DiscountFlow"
    return user.name or user.email


class Mailer:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        transport: Transport | None = None,
        batch: int = BATCH,
    ) -> None:
        config = current_app.config
        self.clock = clock
        self.rng = rng or random.Random()
        self.lease = timedelta(seconds=float(config["WEBHOOK_LEASE_SECONDS"]))
        self.transport = transport or transport_for(config)
        self.base = public_url(config["PUBLIC_URL"])
        self.batch = batch
        self.reminded_at: datetime | None = None

    def run_once(self) -> int:
        """Claim a batch, send it, record it; return how many notifications it settled
        (sent, failed, skipped or scheduled again). Once a minute it writes the reminders due
        first."""
        self.remind()
        claimed, settled = self.claim()
        if claimed:
            outcomes = self.transport.send_all([(c.recipient, c.message) for c in claimed])
            self.record(list(zip(claimed, outcomes, strict=True)))
        return len(claimed) + settled

    def remind(self) -> int:
        """Write the reminders due now, if the last pass is a minute old; return how many."""
        now = self.clock()
        if self.reminded_at is not None and now - self.reminded_at < REMINDER_PASS:
            return 0
        self.reminded_at = now
        return write_reminders(now)

    def claim(self) -> tuple[list[Claimed], int]:
        """Claim the due notifications; return those to send and how many were settled at
        once (skipped, or an email that could not be written)."""
        now = self.clock()
        begin_write()
        due = (
            select(Notification.id)
            .where(
                Notification.status == NotificationStatus.PENDING.value,
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(self.batch)
        )
        ids = list(db.session.execute(attempts.skipping_locked(due)).scalars())
        if not ids:
            db.session.rollback()
            return [], 0
        claim = attempts.claim(Notification, ids, now, self.lease)
        # The claim is held: write the emails after its commit, not under SQLite's write lock
        # (reading every approval of a batch under it made the web's writes wait).
        db.session.commit()
        rows = db.session.execute(
            select(Notification)
            .where(Notification.id.in_(ids))
            .order_by(Notification.created_at, Notification.id)
            .execution_options(populate_existing=True)
        ).scalars()
        claimed: list[Claimed] = []
        settled: list[tuple[str, str, NotificationStatus, str]] = []
        for notification in rows:
            try:
                content = self._content(notification)
                message = None
                if content is not None:
                    message = compose(
                        content, self.transport.sender, message_id(notification.id, self.base)
                    )
            except (ValueError, HeaderParseError) as error:  # a header value it refuses
                status, reason = NotificationStatus.FAILED, f"refused: {error}"
                settled.append((notification.id, notification.channel, status, reason))
                continue
            if message is None:
                status, reason = NotificationStatus.SKIPPED, "no longer true for this member"
                settled.append((notification.id, notification.channel, status, reason))
                continue
            claimed.append(
                Claimed(
                    notification_id=notification.id,
                    claim=claim,
                    attempt=notification.attempts + 1,
                    created_at=notification.created_at,
                    recipient=content.recipient_email,
                    message=message,
                )
            )
        db.session.rollback()  # the read ends here
        if settled:
            begin_write()
            for notification_id, _, status, reason in settled:
                values = {"status": status.value, "claim": None, "next_attempt_at": None}
                values["last_error"] = reason[:500]
                attempts.record_if_claimed(Notification, notification_id, claim, values)
            db.session.commit()
        for notification_id, channel, status, reason in settled:
            metrics.count_notification(channel, status.value)
            log.info("notification %s %s: %s", notification_id, status.value, reason)
        return claimed, len(settled)

    def _content(self, notification: Notification) -> Content | None:
        """What the email says, read now; ``None`` if it is no longer true for its member."""
        recipient = db.session.get(User, notification.recipient_id)
        approval = db.session.get(Approval, notification.approval_id)
        event = db.session.get(Event, notification.event_id)
        if (
            recipient is None
            or approval is None
            or event is None
            or recipient.organization_id != notification.organization_id
            or approval.organization_id != notification.organization_id
        ):
            return None
        kind = notification.kind
        if not wants_email(recipient.id, kind):
            return None  # the member turned this kind of email off
        level_name, comment = "", ""
        waited = ""
        if kind in (NotificationKind.DECISION_REQUESTED, NotificationKind.REMINDER):
            if not may_decide(recipient, approval.id):
                return None  # decided meanwhile, or the member lost the authority
            if kind == NotificationKind.REMINDER:
                opened = step_opened(approval)
                if opened is None or opened.id != event.id:
                    return None  # its step was decided; another one waits now
                organization = db.session.get(Organization, approval.organization_id)
                if organization is None or organization.reminder_interval_hours == 0:
                    return None  # reminders turned off since
                waited = _hours(self.clock() - event.created_at)
            steps = approval.current_steps()
            step = next((s for s in steps if s.status == StepStatus.PENDING), None)
            level_name = step.level_name if step is not None else ""
        elif kind == NotificationKind.COMMENTED:
            found = db.session.get(Comment, event.data.get("comment", ""))
            comment = found.body if found is not None else ""
        elif kind in (NotificationKind.REJECTED, NotificationKind.CHANGES_REQUESTED):
            comment = (
                db.session.execute(
                    select(Decision.comment).where(
                        Decision.approval_id == approval.id,
                        Decision.step_id == event.data.get("step"),
                    )
                ).scalar_one_or_none()
                or ""
            )
        actor = db.session.get(User, event.actor_user_id) if event.actor_user_id else None
        return Content(
            kind=kind,
            recipient_name=_name(recipient),
            recipient_email=recipient.email,
            approval=approval,
            requester_name=_name(db.session.get(User, approval.requested_by_id)),
            actor_name=_name(actor) if actor is not None else "",
            comment=comment,
            level_name=level_name,
            link=approval_link(self.base, approval.id),
            auto=bool(event.data.get("auto")),
            waited=waited,
        )

    def record(self, done: list[tuple[Claimed, Sent]]) -> None:
        """Record the attempts (only where the claim is still ours)."""
        now = self.clock()
        begin_write()
        lines = []
        for each, sent in done:
            values: dict = {"attempts": each.attempt, "claim": None, "last_attempt_at": now}
            values["last_error"] = sent.error[:500]
            if sent.ok:
                values |= {"status": NotificationStatus.SENT.value, "sent_at": now}
                values["next_attempt_at"] = None
                result = "sent"
            else:
                again = attempts.retry_at(each.attempt, each.created_at, now, self.rng)
                if sent.permanent or again is None:
                    values |= {"status": NotificationStatus.FAILED.value, "next_attempt_at": None}
                    result = "failed"
                else:
                    values["next_attempt_at"] = again
                    result = "retrying"
            written = attempts.record_if_claimed(
                Notification, each.notification_id, each.claim, values
            )
            lines.append((each, result if written else "claim_lost", sent.error))
        db.session.commit()
        for each, result, error in lines:
            metrics.count_notification("email", result)
            log.info(
                "notification %s email %s (attempt %d)%s",
                each.notification_id,
                result,
                each.attempt,
                f": {error}" if error else "",
            )

    def run(self, stop: threading.Event, *, poll: float, burst: bool = False) -> int:
        """Work until ``stop`` is set (or, with ``burst``, until nothing is due); return how
        many notifications were settled."""
        total = 0
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                log.exception("notification worker: a batch failed; trying again")
                db.session.rollback()
                if burst:
                    raise
                done = 0
            total += done
            if not done:
                if burst:
                    break
                stop.wait(poll)
        return total


def start_beside(
    app: Flask, stop: threading.Event, *, poll: float, burst: bool = False
) -> threading.Thread:
    """Run a :class:`Mailer` on a thread of its own (its own app context and database
    session), beside the webhook worker, until ``stop``."""

    def work() -> None:
        with app.app_context():
            try:
                Mailer().run(stop, poll=poll, burst=burst)
            except Exception:  # noqa: BLE001 - logged; the webhook worker goes on
                log.exception("notification worker stopped")

    thread = threading.Thread(target=work, name="notifications", daemon=True)
    thread.start()
    return thread

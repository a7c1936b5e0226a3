"""The notification worker: sends pending notifications, at least once, on the webhooks'
retry schedule, in the webhook worker's process (``flask --app app webhooks work``), beside it.

1. **Claim**, in a short transaction, a batch of due notifications (``FOR UPDATE SKIP LOCKED``
   on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), each due again only when the lease
   (``WEBHOOK_LEASE_SECONDS``) ends, and write each message from the database as it is now.
   One whose news is no longer true (the step was decided, the member lost the authority or
   left, the destination was disabled or stopped hearing of that kind) is skipped; an email to
   a member who chose the daily digest is held for it (at the hour they chose).
2. **Send** the batch outside any transaction: the emails over one SMTP connection (or to the
   log), each chat message by Apprise. What is not begun within half the lease is released, not
   attempted, so a slow mail server or chat service cannot outlive the claim. Each outcome is
   recorded as soon as it is known, so a worker killed mid-batch sends again only the message
   it was sending.
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from email.message import EmailMessage

from flask import Flask, current_app
from sqlalchemy import select

from .. import attempts, metrics
from ..approvals.models import Approval, ApprovalStatus, Comment, Decision, StepStatus
from ..approvals.queries import may_decide
from ..audit.models import Event
from ..database import begin_write, utcnow
from ..extensions import db
from ..organizations.models import Organization, User
from ..sealing import UnreadableSecret
from ..webhooks.services import destination_rules
from . import chat
from .destinations import TEST
from .mail import Sent, Transport, transport_for
from .messages import (
    Content,
    approval_link,
    chat_message,
    compose,
    digest,
    message_id,
    public_url,
    trial_chat,
)
from .models import (
    Channel,
    Notification,
    NotificationDestination,
    NotificationKind,
    NotificationPreferences,
    NotificationStatus,
)
from .reminders import step_opened, write_reminders
from .services import next_digest, wants_email

log = logging.getLogger("discountflow.notifications")

BATCH = 20  # notifications claimed, and sent over one connection, at a time
REMINDER_PASS = timedelta(minutes=1)  # how often the worker looks for requests to remind of


@dataclass(frozen=True)
class Claimed:
    """A notification this worker holds, with its message written: an email to a member's
    address, or a chat message (title, body) to a destination's URL."""

    notification_id: str
    claim: str
    attempt: int
    created_at: datetime
    channel: str
    recipient: str  # the email address, or the destination's id
    message: EmailMessage | tuple[str, str]
    url: str = ""  # a destination's URL (unsealed only here, in memory)
    unreadable: str = ""  # why the URL could not be unsealed (a failed attempt, not a send)
    ids: tuple[str, ...] = ()  # a digest: every notification it holds


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
        self.rules = destination_rules()
        self.batch = batch
        self.reminded_at: datetime | None = None

    def run_once(self) -> int:
        """Claim a batch, send it, record it; return how many notifications it settled
        (sent, failed, skipped, held for a digest or scheduled again). Once a minute it writes
        the reminders due first; then it sends one member's digest, if one is due."""
        self.remind()
        done = self.send_digest()
        claimed, settled = self.claim()
        # A batch ends well within its claim: what is not begun by half the lease is released
        # (due again at once), not attempted, so no other worker can take a message while this
        # one is still sending it.
        deadline = time.monotonic() + self.lease.total_seconds() / 2
        emails = [each for each in claimed if each.channel == Channel.EMAIL]
        chats = [each for each in claimed if each.channel == Channel.CHAT]
        released: list[tuple[Claimed, Sent | None]] = []
        outcomes = self.transport.send_each([(each.recipient, each.message) for each in emails])
        try:
            for each in emails:
                if time.monotonic() > deadline:
                    released.append((each, None))
                    continue
                self.record([(each, next(outcomes))])  # at once: a kill later does not resend it
        finally:
            outcomes.close()  # the connection is closed (politely) whatever happened
        for each in chats:
            if time.monotonic() > deadline:
                released.append((each, None))
                continue
            title, body = each.message
            if each.unreadable:
                ok, error = False, each.unreadable
            else:
                ok, error = chat.send(each.url, chat.ChatMessage(title, body), self.rules)
            self.record([(each, Sent(ok, error))])
        if released:
            self.record(released)
        return done + len(claimed) + settled

    def remind(self) -> int:
        """Write the reminders due now, if the last pass is a minute old; return how many."""
        now = self.clock()
        if self.reminded_at is not None and now - self.reminded_at < REMINDER_PASS:
            return 0
        self.reminded_at = now
        return write_reminders(now)

    def _due(self, status: NotificationStatus, now: datetime, *where) -> list[str]:
        due = (
            select(Notification.id)
            .where(Notification.status == status.value, Notification.next_attempt_at <= now, *where)
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(self.batch)
        )
        return list(db.session.execute(attempts.skipping_locked(due)).scalars())

    def _claimed_rows(self, ids: list[str]) -> list[Notification]:
        return list(
            db.session.execute(
                select(Notification)
                .where(Notification.id.in_(ids))
                .order_by(Notification.created_at, Notification.id)
                .execution_options(populate_existing=True)
            ).scalars()
        )

    def _settle(self, claim: str, settled: list[tuple[Notification, dict, str]]) -> int:
        """Record what was decided without sending (skipped, failed, held for a digest)."""
        if not settled:
            return 0
        begin_write()
        for notification, values, _ in settled:
            values = {"claim": None, "next_attempt_at": None} | values
            attempts.record_if_claimed(Notification, notification.id, claim, values)
        db.session.commit()
        for notification, values, reason in settled:
            metrics.count_notification(notification.channel, values["status"])
            log.info("notification %s %s: %s", notification.id, values["status"], reason)
        return len(settled)

    def claim(self) -> tuple[list[Claimed], int]:
        """Claim the due notifications; return those to send and how many were settled at
        once (skipped, a message that could not be written, or held for a digest)."""
        now = self.clock()
        begin_write()
        ids = self._due(NotificationStatus.PENDING, now)
        if not ids:
            db.session.rollback()
            return [], 0
        claim = attempts.claim(Notification, ids, now, self.lease)
        # The claim is held: write the messages after its commit, not under SQLite's write
        # lock (reading every approval of a batch under it made the web's writes wait).
        db.session.commit()
        claimed: list[Claimed] = []
        settled: list[tuple[Notification, dict, str]] = []
        for notification in self._claimed_rows(ids):
            try:
                each = self._written(notification, claim, now)
            except (ValueError, HeaderParseError) as error:  # a header value it refuses
                values = {
                    "status": NotificationStatus.FAILED.value,
                    "last_error": f"refused: {error}"[:500],
                }
                settled.append((notification, values, values["last_error"]))
                continue
            if isinstance(each, Claimed):
                claimed.append(each)
            elif each is not None:  # held for its member's digest, sent then
                values = {
                    "status": NotificationStatus.DIGEST.value,
                    "next_attempt_at": each,
                    "last_error": "",
                }
                settled.append((notification, values, "held for the member's daily digest"))
            else:
                reason = "no longer true for its recipient"
                values = {"status": NotificationStatus.SKIPPED.value, "last_error": reason}
                settled.append((notification, values, reason))
        db.session.rollback()  # the read ends here
        return claimed, self._settle(claim, settled)

    def _written(
        self, notification: Notification, claim: str, now: datetime
    ) -> Claimed | datetime | None:
        """The notification's message, ready to send; or when the daily digest that holds it
        is sent (an email its member wants in their digest); or ``None``: no longer true."""
        if notification.channel == Channel.CHAT:
            destination = self._destination(notification)
            if destination is None:
                return None
            if notification.kind == TEST:
                message = trial_chat(self.base)
            else:
                content = self._content(notification, None)
                if content is None:
                    return None
                message = chat_message(content)
            try:
                url, unreadable = chat.unseal(destination.url), ""
            except UnreadableSecret as error:  # SECRET_KEY changed: this message fails, not all
                url, unreadable = "", str(error)
            return Claimed(
                notification_id=notification.id,
                claim=claim,
                attempt=notification.attempts + 1,
                created_at=notification.created_at,
                channel=Channel.CHAT.value,
                recipient=destination.id,
                message=message,
                url=url,
                unreadable=unreadable,
            )
        recipient = db.session.get(User, notification.recipient_id)
        content = self._content(notification, recipient)
        if content is None:
            return None
        preferences = db.session.get(NotificationPreferences, recipient.id)
        if preferences is not None and preferences.digest:
            return next_digest(now, preferences.digest_hour)
        message = compose(content, self.transport.sender, message_id(notification.id, self.base))
        return Claimed(
            notification_id=notification.id,
            claim=claim,
            attempt=notification.attempts + 1,
            created_at=notification.created_at,
            channel=Channel.EMAIL.value,
            recipient=content.recipient_email,
            message=message,
        )

    def _destination(self, notification: Notification) -> NotificationDestination | None:
        """The chat notification's destination, if it still hears of its kind."""
        destination = db.session.get(NotificationDestination, notification.destination_id)
        if (
            destination is None
            or destination.organization_id != notification.organization_id
            or not destination.enabled
            or (notification.kind != TEST and notification.kind not in destination.events)
        ):
            return None
        return destination

    def _content(self, notification: Notification, recipient: User | None) -> Content | None:
        """What the message says, read now; ``None`` if it is no longer true for its member
        (an email) or for the organization (a chat message, ``recipient`` None)."""
        approval = db.session.get(Approval, notification.approval_id)
        event = db.session.get(Event, notification.event_id)
        if (
            approval is None
            or event is None
            or approval.organization_id != notification.organization_id
        ):
            return None
        kind = notification.kind
        if notification.channel == Channel.EMAIL:
            if (
                recipient is None
                or recipient.organization_id != notification.organization_id
                or recipient.removed_at is not None
            ):
                return None  # gone, or removed since: a member who left is told nothing
            if not wants_email(recipient.id, kind):
                return None  # the member turned this kind of email off
        level_name, comment = "", ""
        waited = ""
        if kind in (NotificationKind.DECISION_REQUESTED, NotificationKind.REMINDER):
            if recipient is not None and not may_decide(recipient, approval.id):
                return None  # decided meanwhile, or the member lost the authority
            opened = step_opened(approval)
            if approval.status != ApprovalStatus.PENDING or opened is None:
                return None  # decided meanwhile
            if kind == NotificationKind.REMINDER or recipient is None:
                if opened.id != event.id:
                    return None  # its step was decided; another one waits now
            if kind == NotificationKind.REMINDER:
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
            recipient_name=_name(recipient) if recipient is not None else "",
            recipient_email=recipient.email if recipient is not None else "",
            approval=approval,
            requester_name=_name(db.session.get(User, approval.requested_by_id)),
            actor_name=_name(actor) if actor is not None else "",
            comment=comment,
            level_name=level_name,
            link=approval_link(self.base, approval.id),
            auto=bool(event.data.get("auto")),
            waited=waited,
        )

    def send_digest(self) -> int:
        """Send one member's daily digest, if one is due: every email held for it, in one
        message; return how many notifications it settled."""
        now = self.clock()
        due_digest = (
            select(Notification.recipient_id)
            .where(
                Notification.status == NotificationStatus.DIGEST.value,
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(1)
        )
        # Looked for without SQLite's write lock first: nearly every pass finds none.
        if db.session.execute(due_digest).scalar_one_or_none() is None:
            db.session.rollback()
            return 0
        begin_write()
        first = db.session.execute(attempts.skipping_locked(due_digest)).scalar_one_or_none()
        ids = (
            []
            if first is None
            else self._due(NotificationStatus.DIGEST, now, Notification.recipient_id == first)
        )
        if not ids:
            db.session.rollback()
            return 0
        claim = attempts.claim(Notification, ids, now, self.lease)
        db.session.commit()
        recipient = db.session.get(User, first)
        held, gone = [], []
        for notification in self._claimed_rows(ids):
            content = self._content(notification, recipient)
            (held if content is not None else gone).append((notification, content))
        reason = "no longer true for its recipient"
        skipped = {"status": NotificationStatus.SKIPPED.value, "last_error": reason}
        db.session.rollback()
        settled = self._settle(claim, [(each, dict(skipped), reason) for each, _ in gone])
        if not held:
            return settled
        rows = [each for each, _ in held]
        message = digest(
            _name(recipient),
            recipient.email,
            [content for _, content in held],
            self.transport.sender,
            self.base,
            message_id(f"digest-{rows[0].id}", self.base),
        )
        one = Claimed(
            notification_id=rows[0].id,
            claim=claim,
            attempt=max(each.attempts for each in rows) + 1,
            created_at=min(each.created_at for each in rows),
            channel=Channel.EMAIL.value,
            recipient=recipient.email,
            message=message,
            ids=tuple(each.id for each in rows),
        )
        (outcome,) = self.transport.send_each([(one.recipient, message)])
        self.record([(one, outcome)], waiting=NotificationStatus.DIGEST)
        return settled + len(rows)

    def record(
        self,
        done: list[tuple[Claimed, Sent | None]],
        waiting: NotificationStatus = NotificationStatus.PENDING,
    ) -> None:
        """Record the attempts (only where the claim is still ours); ``None``: not attempted,
        released at once. A failed attempt leaves the row ``waiting`` for its next one."""
        now = self.clock()
        begin_write()
        lines = []
        for each, sent in done:
            if sent is None:
                values: dict = {"claim": None, "next_attempt_at": now}
                result = "released"
            else:
                values = {"attempts": each.attempt, "claim": None, "last_attempt_at": now}
                values["last_error"] = sent.error[:500]
                if sent.ok:
                    values |= {"status": NotificationStatus.SENT.value, "sent_at": now}
                    values["next_attempt_at"] = None
                    result = "sent"
                else:
                    again = attempts.retry_at(each.attempt, each.created_at, now, self.rng)
                    if sent.permanent or again is None:
                        values |= {"status": NotificationStatus.FAILED.value}
                        values["next_attempt_at"] = None
                        result = "failed"
                    else:
                        values |= {"status": waiting.value, "next_attempt_at": again}
                        result = "retrying"
            written = False
            for row_id in each.ids or (each.notification_id,):
                written |= attempts.record_if_claimed(Notification, row_id, each.claim, values)
            if written and sent is not None and each.channel == Channel.CHAT:
                destination = db.session.get(NotificationDestination, each.recipient)
                if destination is not None:
                    destination.last_attempt_at = now
                    destination.last_error = values["last_error"]
            lines.append((each, result if written else "claim_lost", sent.error if sent else ""))
        db.session.commit()
        for each, result, error in lines:
            metrics.count_notification(each.channel, result)
            log.info(
                "notification %s %s %s (attempt %d)%s",
                each.notification_id,
                each.channel,
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

"""The daily digest: a member who chose it gets their emails once a day, together, at 08:00
UTC — what is no longer true left out, each kind they turned off left out, sent once — and a
reminder reaches the destinations that hear of reminders."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy import select

from discountflow.extensions import db
from discountflow.notifications.models import Notification
from discountflow.notifications.worker import Mailer, next_digest

from .approvals_world import create
from .conftest import Clock, bearer, mailing_app
from .receiver import Receiver
from .test_notifications import PUBLIC, services_act


@pytest.fixture
def app(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox)


def deliver(app, clock: Clock) -> int:
    total = 0
    with app.app_context():
        mailer = Mailer(clock=clock.now)
        while done := mailer.run_once():
            total += done
    return total


def statuses(app, recipient: str) -> list[tuple[str, str]]:
    with app.app_context():
        found = db.session.execute(
            select(Notification.kind, Notification.status)
            .where(Notification.recipient_id == recipient)
            .order_by(Notification.created_at)
        ).all()
        return [tuple(each) for each in found]


def choose(world, who: str, **preferences) -> None:
    """Set a member's preferences through the service the API and the dashboard share."""
    from discountflow.notifications import services
    from discountflow.notifications.schemas import NotificationPreferencesUpdate

    with world.app.app_context():
        data = NotificationPreferencesUpdate.model_validate(preferences)
        services.update_preferences(world.actor(who), data)


def test_the_next_digest_is_at_8_utc():
    from datetime import datetime

    at = datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    assert next_digest(at) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert next_digest(at.replace(hour=8)) == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    assert next_digest(at.replace(hour=23)) == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)


def test_a_member_who_chose_the_digest_gets_one_email_a_day(app, world, mailbox):
    cfo = world.people["cfo"]
    choose(world, "cfo", digest=True)
    # Two requests come to the CFO's step; one is decided before the digest.
    first = create(world, "rep", 40, submit=True)
    second = create(world, "rep", 45, submit=True)
    for approval_id in (first, second):
        for who in ("manager", "vp"):
            services_act(world, who, "approve", approval_id)
    clock = Clock()
    deliver(app, clock)
    assert mailbox.to("cfo@acme.example") == []  # held for the digest
    held = statuses(app, cfo)
    assert held == [("decision_requested", "digest")] * 2
    services_act(world, "admin", "cancel", second)  # no longer waits, before the digest
    clock.offset = next_digest(clock.now()) - clock.now() + timedelta(minutes=1)
    deliver(app, clock)
    (email,) = mailbox.to("cfo@acme.example")
    assert email.message["Subject"] == "DiscountFlow: 1 update from the last day"
    assert "Approve 40 % on Deal — 120.00 USD" in email.text
    assert f"{PUBLIC}/approvals/{first}" in email.text
    assert f'<a href="{PUBLIC}/approvals/{first}">' in email.html
    assert "45 %" not in email.text
    assert statuses(app, cfo) == [
        ("decision_requested", "sent"),
        ("decision_requested", "skipped"),
    ]
    deliver(app, clock)
    assert len(mailbox.to("cfo@acme.example")) == 1  # once


def test_a_kind_turned_off_is_not_in_the_digest_and_one_by_one_is_back_at_once(app, world, mailbox):
    choose(world, "cfo", digest=True, decision_requested=False)
    approval_id = create(world, "rep", 40, submit=True)
    for who in ("manager", "vp"):
        services_act(world, who, "approve", approval_id)
    clock = Clock()
    deliver(app, clock)
    assert statuses(app, world.people["cfo"]) == [("decision_requested", "skipped")]
    choose(world, "cfo", digest=False, decision_requested=True)
    again = create(world, "rep", 41, submit=True)
    for who in ("manager", "vp"):
        services_act(world, who, "approve", again)
    deliver(app, clock)
    (email,) = mailbox.to("cfo@acme.example")
    assert email.message["Subject"].startswith("Approve 41 % on Deal")


def test_a_reminder_reaches_the_destinations_that_hear_of_reminders(app, world):
    with Receiver() as receiver:
        url = f"json://127.0.0.1:{receiver.server.server_port}/chat"
        client = app.test_client()
        for events in (["reminder"], ["approved"]):
            made = client.post(
                "/v2/notification_destinations",
                json={"name": "Chat", "url": url, "events": events},
                headers=bearer(world.key),
            )
            assert made.status_code == 201
        create(world, "rep", 20, submit=True)
        clock = Clock()
        clock.advance(hours=25)
        deliver(app, clock)
        (posted,) = receiver.wait_for(1)
        assert posted.json["title"] == "Reminder: approve 20 % on Deal — 160.00 USD"
        assert "has waited 25 hours for Manager." in posted.json["message"]
        deliver(app, clock)
        assert len(receiver.received) == 1  # once per step per interval

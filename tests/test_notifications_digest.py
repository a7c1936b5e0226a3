"""The daily digest: a member who chose it gets their emails once a day, together, at 08:00
UTC or the hour they chose — what is no longer true left out, each kind they turned off left
out, sent once — and a reminder reaches the destinations that hear of reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.notifications.models import Notification
from discountflow.notifications.services import next_digest
from discountflow.notifications.worker import Mailer

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


def test_the_next_digest_is_at_8_utc_or_the_hour_chosen():
    at = datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    assert next_digest(at) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert next_digest(at.replace(hour=8)) == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    assert next_digest(at.replace(hour=23)) == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    assert next_digest(at, 0) == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert next_digest(at, 23) == datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


def held_until(app, recipient: str) -> list[datetime]:
    with app.app_context():
        return list(
            db.session.execute(
                select(Notification.next_attempt_at).where(
                    Notification.recipient_id == recipient, Notification.status == "digest"
                )
            ).scalars()
        )


def _to_the_cfo(world) -> str:
    approval_id = create(world, "rep", 40, submit=True)
    for who in ("manager", "vp"):
        services_act(world, who, "approve", approval_id)
    return approval_id


def test_the_digest_comes_at_the_hour_the_member_chose(app, world, mailbox):
    hour = (utcnow().hour + 3) % 24  # hours away, whenever the test runs
    choose(world, "cfo", digest=True, digest_hour=hour)
    _to_the_cfo(world)
    clock = Clock()
    deliver(app, clock)
    due = next_digest(clock.now(), hour)
    assert held_until(app, world.people["cfo"]) == [due]
    clock.offset = due - utcnow() - timedelta(minutes=1)  # a minute before: still held
    deliver(app, clock)
    assert mailbox.to("cfo@acme.example") == []
    clock.offset = due - utcnow() + timedelta(minutes=1)
    deliver(app, clock)
    (email,) = mailbox.to("cfo@acme.example")
    assert email.message["Subject"] == "DiscountFlow: 1 update from the last day"


def test_a_new_hour_moves_what_is_held_and_no_digest_sends_it_at_once(app, world, mailbox):
    cfo = world.people["cfo"]
    first, second = (utcnow().hour + 3) % 24, (utcnow().hour + 5) % 24
    choose(world, "cfo", digest=True, digest_hour=first)
    _to_the_cfo(world)
    clock = Clock()
    deliver(app, clock)
    assert held_until(app, cfo) == [next_digest(utcnow(), first)]
    choose(world, "cfo", digest_hour=second)
    assert held_until(app, cfo) == [next_digest(utcnow(), second)]
    choose(world, "cfo", digest=False)  # what was held goes now, together
    deliver(app, clock)
    (email,) = mailbox.to("cfo@acme.example")
    assert email.message["Subject"] == "DiscountFlow: 1 update from the last day"
    assert statuses(app, cfo) == [("decision_requested", "sent")]


@pytest.mark.parametrize(
    "value, message",
    [
        (24, "Invalid digest_hour: input should be less than or equal to 23."),
        (-1, "Invalid digest_hour: input should be greater than or equal to 0."),
        ("8", "Invalid digest_hour: must be a JSON number."),
        (True, "Invalid digest_hour: must be a JSON number."),
        (
            8.5,
            "Invalid digest_hour: input should be a valid integer, got a number with a "
            "fractional part.",
        ),
        (None, "Invalid digest_hour: input should be a valid integer."),
    ],
)
def test_an_hour_that_is_not_0_to_23_is_refused(app, world, value, message):
    client = app.test_client()
    path = "/v2/members/me/notification_preferences"
    refused = client.patch(path, json={"digest_hour": value}, headers=bearer(world.key))
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "parameter_invalid",
        "message": message,
        "param": "digest_hour",
    }
    assert client.get(path, headers=bearer(world.key)).get_json()["digest_hour"] == 8


def test_the_hour_over_graphql_and_in_my_notifications(app, world):
    from .dashboard import post_form, sign_in

    document = (
        "mutation($hour: Int) { updateNotificationPreferences(input: {digest: true, "
        "digestHour: $hour}) { digest digestHour } }"
    )

    def ask_with(hour: int):
        body = {"query": document, "variables": {"hour": hour}}
        return app.test_client().post("/v2/graphql", json=body, headers=bearer(world.key))

    answer = ask_with(17).get_json()["data"]
    assert answer == {"updateNotificationPreferences": {"digest": True, "digestHour": 17}}
    (error,) = ask_with(24).get_json()["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "input.digestHour"}

    rep = app.test_client()
    assert sign_in(rep, "rep@acme.example").status_code == 303
    page = rep.get("/settings/notifications").text
    assert '<option selected value="8">08:00 UTC</option>' in page
    form = {"mine-delivery": "digest", "mine-digest_hour": "6"}
    assert post_form(rep, "/settings/notifications", form).status_code == 303
    assert (
        '<option selected value="6">06:00 UTC</option>' in rep.get("/settings/notifications").text
    )
    forged = post_form(rep, "/settings/notifications", form | {"mine-digest_hour": "24"})
    assert forged.status_code == 400
    assert "The digest comes at: Not a valid choice." in forged.text
    with app.app_context():
        from discountflow.notifications.models import NotificationPreferences

        saved = db.session.get(NotificationPreferences, world.people["rep"])
        assert (saved.digest, saved.digest_hour) == (True, 6)


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
    # The hour they are held until (08:00 UTC), not one computed again later: run at 07:59:59
    # that is today's, and a minute after it is tomorrow's (the reminders come due meanwhile).
    (due, _) = held_until(app, cfo)
    clock.offset = due - utcnow() + timedelta(minutes=1)
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

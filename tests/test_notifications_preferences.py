"""Each member's email preferences: GET/PATCH /v2/members/me/notification_preferences, an audit
event for each change, and the worker sends a member only the kinds they want."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.notifications import services
from discountflow.notifications.models import Notification
from discountflow.notifications.schemas import NotificationPreferencesUpdate

from .approvals_world import create
from .conftest import bearer, mailing_app
from .test_notifications import deliver, services_act

PATH = "/v2/members/me/notification_preferences"


@pytest.fixture
def app(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox)


EVERY_KIND = {
    "decision_requested": True,
    "reminder": True,
    "approved": True,
    "rejected": True,
    "changes_requested": True,
    "commented": True,
}


def test_a_member_who_changed_nothing_wants_every_kind(app, world):
    response = app.test_client().get(PATH, headers=bearer(world.key))
    assert response.status_code == 200
    assert response.get_json() == {
        "object": "notification_preferences",
        "member": world.people["owner"],  # a key counts as the owner it acts for
        **EVERY_KIND,
        "digest": False,  # one email each, as they happen
        "digest_hour": 8,  # when they choose the digest: 08:00 UTC unless they choose another
        "updated": None,
    }


def test_a_member_turns_a_kind_off_and_the_audit_trail_says_so(app, world):
    client = app.test_client()
    response = client.patch(PATH, json={"decision_requested": False}, headers=bearer(world.key))
    assert response.status_code == 200
    body = response.get_json()
    assert body["decision_requested"] is False and body["reminder"] is True
    assert body["updated"] is not None
    assert client.get(PATH, headers=bearer(world.key)).get_json() == body
    with app.app_context():
        event = db.session.execute(
            select(Event).where(Event.type == "member.notification_preferences_changed")
        ).scalar_one()
        assert event.actor_user_id == world.people["owner"]
        assert event.data == {"member": world.people["owner"], "fields": ["decision_requested"]}


@pytest.mark.parametrize(
    "body", [{"decision_requested": "no"}, {"decision_requested": None}, {"weekly": True}]
)
def test_a_body_that_is_no_on_or_off_is_refused(app, world, body):
    response = app.test_client().patch(PATH, json=body, headers=bearer(world.key))
    assert response.status_code == 400


@pytest.mark.parametrize(
    "raw, answer",
    [
        ('{"commented": NaN}', "Invalid commented: input should be a valid boolean."),
        ('{"commented": 1e999999}', "Invalid commented: input should be a valid boolean."),
        ('{"digest_hour": NaN}', "Invalid digest_hour: input should be a finite number."),
        ('{"digest_hour": 1e999999}', "Invalid digest_hour: input should be a finite number."),
        ('{"digest_hour": true}', "Invalid digest_hour: must be a JSON number."),
        ('{"digest_hour": 24}', "Invalid digest_hour: input should be less than or equal to 23."),
        ("[" * 5000 + "]" * 5000, "The request body is nested too deeply."),
    ],
)
def test_odd_json_is_a_400_and_changes_nothing(app, world, raw, answer):
    """Tried from outside after the endpoint landed: each answered as here, nothing recorded."""
    client = app.test_client()
    response = client.patch(
        PATH, data=raw, content_type="application/json", headers=bearer(world.key)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    assert response.get_json()["message"] == answer
    with app.app_context():
        changed = db.session.execute(
            select(Event).where(Event.type == "member.notification_preferences_changed")
        ).first()
    assert changed is None


def test_a_read_only_key_reads_but_does_not_change(app, world):
    client = app.test_client()
    assert client.get(PATH, headers=bearer(world.read_only_key)).status_code == 200
    refused = client.patch(PATH, json={"approved": False}, headers=bearer(world.read_only_key))
    assert refused.status_code == 403


def test_each_member_has_their_own(app, world):
    with app.app_context():
        services.update_preferences(
            world.actor("manager"), NotificationPreferencesUpdate(commented=False)
        )
        assert services.get_preferences(world.actor("manager")).commented is False
        assert services.get_preferences(world.actor("manager2")).commented is True
    owner = app.test_client().get(PATH, headers=bearer(world.key)).get_json()
    assert owner["commented"] is True


def test_the_openapi_document_has_both_operations(app):
    paths = app.test_client().get("/v2/openapi.json").get_json()["paths"]
    assert set(paths[PATH]) >= {"get", "patch"}


def test_the_worker_sends_a_member_only_the_kinds_they_want(app, world, mailbox):
    with app.app_context():
        services.update_preferences(
            world.actor("manager"), NotificationPreferencesUpdate(decision_requested=False)
        )
    approval_id = create(world, "rep", 20, submit=True)
    deliver(app)
    assert mailbox.recipients == ["manager2@acme.example"]  # manager turned these off
    with app.app_context():
        skipped = db.session.execute(
            select(Notification.status).where(Notification.recipient_id == world.people["manager"])
        ).scalar_one()
        assert skipped == "skipped"
    mailbox.received.clear()
    services_act(world, "manager2", "approve", approval_id)
    deliver(app)
    assert mailbox.recipients == ["vp@acme.example"]

"""Reminders: a request that waits at one step longer than the organization's reminder
interval is brought again to that step's deciders — once per step per interval, none once the
step is decided, none when reminders are off — with a controllable clock and a real SMTP
server; and the setting on every surface (REST, GraphQL, the dashboard, the audit trail)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from discountflow.approvals import services
from discountflow.approvals.schemas import ApprovalCreate, ApprovalUpdate
from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.notifications.models import Notification
from discountflow.notifications.worker import Mailer
from discountflow.organizations.models import Organization

from .approvals_world import create, request_body, set_level
from .conftest import Clock, bearer, mailing_app
from .dashboard import post_form, sign_in
from .test_notifications import PUBLIC, services_act

SUBJECT = "Reminder: approve 20 % on Deal — 160.00 USD"


@pytest.fixture
def app(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox)


@pytest.fixture
def later():
    """The worker's clock, moved forward by the test (the services keep the wall clock)."""
    return Clock()


def deliver(app, clock: Clock) -> int:
    total = 0
    with app.app_context():
        mailer = Mailer(clock=clock.now)
        while done := mailer.run_once():
            total += done
    return total


def reminders(mailbox) -> list[str]:
    return sorted(
        address
        for each in mailbox.received
        if each.message["Subject"].startswith("Reminder:")
        for address in each.rcpt_tos
    )


def set_interval(app, world, hours: int) -> None:
    client = app.test_client()
    response = client.patch(
        "/v2/organization", json={"reminder_interval_hours": hours}, headers=bearer(world.key)
    )
    assert response.status_code == 200, response.get_json()


def test_a_request_waiting_past_the_interval_reminds_its_deciders_once_per_interval(
    app, world, mailbox, later
):
    approval_id = create(world, "rep", 20, submit=True)
    assert deliver(app, later) == 2  # the first emails: a decision is requested
    mailbox.received.clear()
    later.advance(hours=23, minutes=50)
    assert deliver(app, later) == 0 and mailbox.received == []
    later.advance(hours=1, minutes=10)  # 25 hours
    assert deliver(app, later) == 2
    assert reminders(mailbox) == ["manager2@acme.example", "manager@acme.example"]
    for each in mailbox.received:
        assert each.message["Subject"] == SUBJECT
        assert "request has waited 25 hours for your decision (Manager)" in each.text
        link = f"{PUBLIC}/approvals/{approval_id}"
        assert f"Sign in to approve, reject or ask for changes: {link}" in each.text
        assert f'<a href="{link}">' in each.html and "waited 25 hours" in each.html
    later.advance(hours=20)  # 45 hours: still the second interval
    assert deliver(app, later) == 0 and len(mailbox.received) == 2
    later.advance(hours=4)  # 49 hours: the third interval
    assert deliver(app, later) == 2
    assert len(reminders(mailbox)) == 4
    assert "waited 49 hours" in mailbox.received[-1].text


def test_a_worker_down_for_several_intervals_sends_one_reminder_not_one_per_interval(
    app, world, mailbox, later
):
    create(world, "rep", 20, submit=True)
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=24 * 5 + 1)
    assert deliver(app, later) == 2
    assert reminders(mailbox) == ["manager2@acme.example", "manager@acme.example"]


def test_four_eyes_a_reminder_asks_nobody_who_took_part_in_the_round(app, world, mailbox, later):
    """The requester, the admin who created the request on their behalf and the owner who
    edited it hold the step's level too, and are still never reminded to decide it."""
    set_level(world, world.people["admin"], world.levels["Manager"])
    set_level(world, world.people["rep"], world.levels["Manager"])
    set_level(world, world.people["owner"], world.levels["Manager"])
    with app.app_context():
        draft = services.create_approval(
            world.actor("admin"),
            ApprovalCreate.model_validate(request_body(20, requested_by=world.people["rep"])),
        )
        services.update_approval(
            world.actor("owner"), draft.approval.id, ApprovalUpdate(customer="Initech Ltd")
        )
    services_act(world, "rep", "submit", draft.approval.id)
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=25)
    assert deliver(app, later) == 2
    assert reminders(mailbox) == ["manager2@acme.example", "manager@acme.example"]


def test_a_decided_step_reminds_nobody_and_the_next_step_waits_its_own_interval(
    app, world, mailbox, later
):
    approval_id = create(world, "rep", 20, submit=True)
    services_act(world, "manager", "approve", approval_id)  # on to the VP
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=25)
    deliver(app, later)
    assert reminders(mailbox) == ["vp@acme.example"]  # not the managers: their step is done
    mailbox.received.clear()
    services_act(world, "vp", "approve", approval_id)  # approved: nothing waits any more
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=100)
    assert deliver(app, later) == 0 and mailbox.received == []


def test_a_reminder_whose_step_is_decided_before_it_is_sent_is_skipped(app, world, mailbox, later):
    approval_id = create(world, "rep", 20, submit=True)
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=25)
    with app.app_context():
        assert Mailer(clock=later.now).remind() == 2  # written, not sent yet
    services_act(world, "manager", "reject", approval_id, "No")
    deliver(app, later)
    assert reminders(mailbox) == []
    with app.app_context():
        statuses = db.session.execute(
            select(Notification.status).where(Notification.kind == "reminder")
        ).scalars()
        assert sorted(statuses) == ["skipped", "skipped"]


def test_the_interval_is_the_organizations_and_zero_turns_reminders_off(app, world, mailbox, later):
    set_interval(app, world, 2)
    create(world, "rep", 20, submit=True)
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=2, minutes=5)
    deliver(app, later)
    assert len(reminders(mailbox)) == 2
    set_interval(app, world, 0)
    later.advance(hours=100)
    assert deliver(app, later) == 0
    assert len(reminders(mailbox)) == 2


def test_a_reminder_written_before_reminders_were_turned_off_is_not_sent(
    app, world, mailbox, later
):
    create(world, "rep", 20, submit=True)
    deliver(app, later)
    mailbox.received.clear()
    later.advance(hours=25)
    with app.app_context():
        assert Mailer(clock=later.now).remind() == 2
    set_interval(app, world, 0)
    deliver(app, later)
    assert reminders(mailbox) == []


# --- the setting, on every surface -------------------------------------------------------------


def test_the_api_reads_and_changes_the_interval_and_the_audit_trail_says_so(app, world):
    client = app.test_client()
    shown = client.get("/v2/organization", headers=bearer(world.key)).get_json()
    assert shown["reminder_interval_hours"] == 24  # the default
    changed = client.patch(
        "/v2/organization", json={"reminder_interval_hours": 0}, headers=bearer(world.key)
    )
    assert changed.status_code == 200 and changed.get_json()["reminder_interval_hours"] == 0
    with app.app_context():
        event = db.session.execute(
            select(Event).where(Event.type == "organization.updated")
        ).scalar_one()
        assert event.data["fields"] == ["reminder_interval_hours"]


@pytest.mark.parametrize("hours", [-1, 721, 1.5, "24", None])
def test_the_api_refuses_an_interval_that_is_no_whole_number_of_hours_up_to_30_days(
    app, world, hours
):
    response = app.test_client().patch(
        "/v2/organization", json={"reminder_interval_hours": hours}, headers=bearer(world.key)
    )
    assert response.status_code == 400
    assert response.get_json()["param"] == "reminder_interval_hours"


def test_a_read_only_key_cannot_change_the_interval(app, world):
    response = app.test_client().patch(
        "/v2/organization",
        json={"reminder_interval_hours": 1},
        headers=bearer(world.read_only_key),
    )
    assert response.status_code == 403


def test_graphql_reads_and_changes_the_interval(app, world):
    client = app.test_client()
    mutation = (
        "mutation { updateOrganization(input: {reminderIntervalHours: 8}) "
        "{ reminderIntervalHours } }"
    )
    response = client.post("/v2/graphql", json={"query": mutation}, headers=bearer(world.key))
    assert response.get_json()["data"] == {"updateOrganization": {"reminderIntervalHours": 8}}
    query = "{ organization { reminderIntervalHours } }"
    response = client.post("/v2/graphql", json={"query": query}, headers=bearer(world.key))
    assert response.get_json()["data"]["organization"] == {"reminderIntervalHours": 8}


def test_settings_general_shows_and_saves_the_interval_zero_included(app, world):
    admin = app.test_client()
    assert sign_in(admin, "admin@acme.example").status_code == 303
    page = admin.get("/settings/organization")
    assert 'name="reminder_interval_hours"' in page.text and 'value="24"' in page.text
    form = {
        "name": "Acme",
        "auto_approve_threshold_percent": "5",
        "default_validity_days": "30",
        "custom_line_items": "allowed",
    }
    saved = post_form(admin, "/settings/organization", {**form, "reminder_interval_hours": "0"})
    assert saved.status_code == 303
    with app.app_context():
        organization = db.session.get(Organization, world.organization_id)
        assert organization.reminder_interval_hours == 0
    for bad in ("-1", "721", ""):
        refused = post_form(
            admin, "/settings/organization", {**form, "reminder_interval_hours": bad}
        )
        assert refused.status_code == 400, bad

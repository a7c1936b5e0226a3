"""Email notifications end to end: who is told what, written with the event that causes them,
sent by the worker to a real SMTP server (aiosmtpd on loopback), never twice."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from discountflow.approvals import services
from discountflow.approvals.models import Approval
from discountflow.approvals.schemas import ApprovalCreate, ApprovalUpdate
from discountflow.audit.services import EventLog
from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.notifications.models import Notification
from discountflow.notifications.worker import Mailer

from .approvals_world import build_world, create, request_body, set_level
from .conftest import MAIL_PUBLIC_URL, database_url_for, mailing_app, make_app

PUBLIC = MAIL_PUBLIC_URL


@pytest.fixture
def app(request, tmp_path, mailbox):
    """The app sending through the test's SMTP server, its links on PUBLIC."""
    return mailing_app(request, tmp_path, mailbox)


def deliver(app, **options) -> int:
    """Run the notification worker until nothing is due; return how many it settled."""
    total = 0
    with app.app_context():
        mailer = Mailer(**options)
        while done := mailer.run_once():
            total += done
    return total


def email_of(world, name: str) -> str:
    return f"{name}@acme.example"


def rows(app) -> list[tuple[str, str, str]]:
    """(recipient id, kind, status) of every notification, oldest first."""
    with app.app_context():
        found = db.session.execute(
            select(Notification).order_by(Notification.created_at, Notification.recipient_id)
        ).scalars()
        return [(each.recipient_id, each.kind, each.status) for each in found]


# --- who is told what --------------------------------------------------------------------------


def test_a_submitted_request_emails_the_deciders_of_its_first_step(app, world, mailbox):
    approval_id = create(world, "rep", 20, submit=True, deal_reference="D-<42>")
    assert deliver(app) == 2
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]
    for each in mailbox.received:
        message = each.message
        assert message["Subject"] == "Approve 20 % on Deal — 160.00 USD"
        assert message["From"] == "DiscountFlow <approvals@acme.example>"
        assert each.mail_from == "approvals@acme.example"
        assert message["To"].addresses[0].addr_spec == each.rcpt_tos[0]
        assert message["Message-ID"].endswith("@approvals.acme.example>")
        link = f"{PUBLIC}/approvals/{approval_id}"
        assert f"Sign in to approve, reject or ask for changes: {link}" in each.text
        assert "(Manager)" in each.text and "Deal: D-<42>" in each.text
        assert "Discount: 40.00 USD (20 %; largest line 20 %)" in each.text
        assert f'<a href="{link}">' in each.html
        assert "D-&lt;42&gt;" in each.html and "D-<42>" not in each.html
    assert sorted(rows(app)) == sorted(
        [(world.people[n], "decision_requested", "sent") for n in ("manager", "manager2")]
    )
    assert deliver(app) == 0  # sent once: nothing is due any more
    assert len(mailbox.received) == 2


def test_the_next_level_hears_when_a_step_is_approved_and_the_requester_the_decision(
    app, world, mailbox
):
    approval_id = create(world, "rep", 20, submit=True)
    deliver(app)
    mailbox.received.clear()
    services_act(world, "manager", "approve", approval_id)
    deliver(app)
    assert mailbox.recipients == ["vp@acme.example"]
    assert mailbox.received[0].message["Subject"] == "Approve 20 % on Deal — 160.00 USD"
    mailbox.received.clear()
    services_act(world, "vp", "approve", approval_id)
    deliver(app)
    assert mailbox.recipients == ["rep@acme.example"]
    (approved,) = mailbox.received
    assert approved.message["Subject"] == "Approved: 20 % on Deal — 160.00 USD"
    assert "approved your request" in approved.text and "The price holds until" in approved.text
    assert f"Open the request: {PUBLIC}/approvals/{approval_id}" in approved.text


@pytest.mark.parametrize(
    ("action", "subject", "said"),
    [
        ("reject", "Rejected", "rejected your request"),
        ("request_changes", "Changes requested", "asks for changes to your request"),
    ],
)
def test_a_refusal_tells_the_requester_with_the_comment_escaped(
    app, world, mailbox, action, subject, said
):
    approval_id = create(world, "rep", 20, submit=True)
    deliver(app)
    mailbox.received.clear()
    comment = "<b>Too deep</b> & <script>alert(1)</script>"
    services_act(world, "manager", action, approval_id, comment)
    deliver(app)
    assert mailbox.recipients == ["rep@acme.example"]
    (told,) = mailbox.received
    assert told.message["Subject"] == f"{subject}: 20 % on Deal — 160.00 USD"
    assert said in told.text and comment in told.text
    assert "&lt;b&gt;Too deep&lt;/b&gt; &amp; &lt;script&gt;" in told.html
    assert "<script>" not in told.html and "<b>" not in told.html


def test_an_auto_approval_tells_nobody_who_made_it(app, world, mailbox):
    create(world, "rep", 3, submit=True)  # within the 5 % threshold: approved at once
    assert deliver(app) == 0
    assert mailbox.received == [] and rows(app) == []


def test_an_auto_approval_on_a_members_behalf_tells_that_member(app, world, mailbox):
    create(world, "admin", 3, submit=True, requested_by=world.people["rep"])
    deliver(app)
    assert mailbox.recipients == ["rep@acme.example"]
    (told,) = mailbox.received
    assert told.message["Subject"] == "Approved: 3 % on Deal — 194.00 USD"
    assert "approved automatically" in told.text


def test_four_eyes_whoever_edited_or_submitted_the_round_is_not_asked(app, world, mailbox):
    set_level(world, world.people["admin"], world.levels["Manager"])
    with app.app_context():
        draft = services.create_approval(
            world.actor("admin"),
            ApprovalCreate.model_validate(request_body(20, requested_by=world.people["rep"])),
        )
        approval_id = draft.approval.id
    services_act(world, "rep", "submit", approval_id)
    deliver(app)
    # The admin is a Manager-level approver too, but created this round: not asked.
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]
    # A manager's own request goes to the other Manager-level approvers only.
    mailbox.received.clear()
    create(world, "manager", 20, submit=True)
    deliver(app)
    assert mailbox.recipients == ["admin@acme.example", "manager2@acme.example"]


def test_four_eyes_at_the_second_level_an_editor_is_not_asked(app, world, mailbox):
    """Someone who only edited the round (an admin who is a VP-level approver fixing the title)
    is not asked when the request reaches the VP level; the other VP is."""
    set_level(world, world.people["admin"], world.levels["VP"])
    approval_id = create(world, "rep", 20)
    with app.app_context():
        services.update_approval(
            world.actor("admin"), approval_id, ApprovalUpdate(title="Deal, corrected")
        )
    services_act(world, "rep", "submit", approval_id)
    deliver(app)
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]
    mailbox.received.clear()
    services_act(world, "manager", "approve", approval_id)
    deliver(app)
    # The VP step: the vp is asked, the admin (VP level, but an editor of this round) is not.
    asked = [each.rcpt_tos for each in mailbox.received if "Approve" in each.message["Subject"]]
    assert asked == [["vp@acme.example"]]
    assert mailbox.received[0].message["Subject"] == "Approve 20 % on Deal, corrected — 160.00 USD"


def test_a_member_who_lost_the_authority_before_the_send_is_not_told(app, world, mailbox):
    create(world, "rep", 20, submit=True)
    set_level(world, world.people["manager2"], None)
    deliver(app)
    assert mailbox.recipients == ["manager@acme.example"]
    statuses = {recipient: status for recipient, _, status in rows(app)}
    assert statuses[world.people["manager2"]] == "skipped"


def test_a_step_decided_before_the_send_is_not_announced_to_the_others(app, world, mailbox):
    approval_id = create(world, "rep", 20, submit=True)
    services_act(world, "manager", "approve", approval_id)
    deliver(app)
    assert mailbox.recipients == ["vp@acme.example"]  # manager2's news was stale by then


def test_another_organizations_members_are_never_told(app, world, mailbox):
    globex = build_world(app, "globex")
    create(world, "rep", 20, submit=True)
    create(globex, "rep", 20, submit=True)
    deliver(app)
    assert mailbox.recipients == [
        "manager2@acme.example",
        "manager2@globex.example",
        "manager@acme.example",
        "manager@globex.example",
    ]
    approval_ids = {}
    with app.app_context():
        for approval in db.session.execute(select(Approval)).scalars():
            approval_ids[approval.organization_id] = approval.id
    for each in mailbox.received:
        slug = each.rcpt_tos[0].split("@")[1].split(".")[0]
        organization = world.organization_id if slug == "acme" else globex.organization_id
        assert approval_ids[organization] in each.text


def test_a_comment_tells_the_participants_but_its_author(app, world, mailbox):
    approval_id = create(world, "rep", 20, submit=True)
    deliver(app)
    mailbox.received.clear()
    with app.app_context():
        services.add_comment(world.actor("manager"), approval_id, "Which term?\r\nBcc: x@evil")
    deliver(app)
    assert mailbox.recipients == ["rep@acme.example"]
    (told,) = mailbox.received
    assert told.message["Subject"] == "New comment on Deal from manager@acme.example"
    assert "Which term?" in told.text
    mailbox.received.clear()
    with app.app_context():
        services.add_comment(world.actor("rep"), approval_id, "Three years.")
    deliver(app)
    assert mailbox.recipients == ["manager@acme.example"]  # not manager2: no part taken


# --- never lost, never twice -------------------------------------------------------------------


def test_a_rolled_back_change_writes_and_sends_nothing(app, world, mailbox):
    approval_id = create(world, "rep", 20)
    with app.app_context():
        approval = db.session.get(Approval, approval_id)
        approval.status = "pending"
        approval.awaiting_level_id = world.levels["Manager"]
        EventLog(world.actor("rep"), utcnow()).add("approval.submitted", approval_id=approval_id)
        db.session.flush()  # the event reached the database, inside the transaction
        db.session.rollback()
        # The next transaction commits something else: the rolled-back event is not in it.
        services.update_approval(
            world.actor("rep"), approval_id, services.ApprovalUpdate(title="Renamed")
        )
    assert rows(app) == []
    assert deliver(app) == 0 and mailbox.received == []


def test_a_worker_killed_mid_send_leaves_the_rest_for_after_its_lease(app, world, mailbox):
    create(world, "rep", 20, submit=True)
    with app.app_context():
        killed = Mailer()
        claimed, _ = killed.claim()  # claimed, then the process died before sending
    assert len(claimed) == 2
    assert deliver(app) == 0  # its lease holds them: nobody else sends them meanwhile
    lease = app.config["WEBHOOK_LEASE_SECONDS"]
    later = utcnow() + timedelta(seconds=lease + 1)
    assert deliver(app, clock=lambda: later) == 2  # the restarted worker sends them
    assert len(mailbox.received) == 2
    with app.app_context():  # the dead worker's late record changes nothing
        killed.record([(each, _ok()) for each in claimed])
    assert {status for _, _, status in rows(app)} == {"sent"}
    assert deliver(app, clock=lambda: later + timedelta(hours=1)) == 0
    assert len(mailbox.received) == 2


def test_a_slow_mail_server_cannot_outlive_the_claim(app, world, mailbox):
    app.config["WEBHOOK_LEASE_SECONDS"] = 4.0  # half of it for the batch's emails
    mailbox.slow[1] = 2.5  # the first email is accepted after the batch's time is over
    create(world, "rep", 20, submit=True)  # two deciders: two emails in one batch
    with app.app_context():
        assert Mailer().run_once() == 2
    assert sorted(status for _, _, status in rows(app)) == ["pending", "sent"]  # released
    assert len(mailbox.received) == 1
    with app.app_context():
        assert db.session.execute(select(Notification.attempts)).scalars().all() in ([0, 1], [1, 0])
    assert deliver(app) == 1  # due again at once, not after the lease
    assert [status for _, _, status in rows(app)] == ["sent", "sent"]
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]  # each once


def test_one_event_never_notifies_one_member_twice(app, world):
    create(world, "rep", 20, submit=True)
    with app.app_context():
        keys = [each.idempotency_key for each in db.session.execute(select(Notification)).scalars()]
        assert len(keys) == 2 and len(set(keys)) == 2
        first = db.session.execute(select(Notification)).scalars().first()
        db.session.add(
            Notification(
                organization_id=first.organization_id,
                idempotency_key=first.idempotency_key,
                event_id=first.event_id,
                event_type=first.event_type,
                recipient_id=first.recipient_id,
                kind=first.kind,
            )
        )
        with pytest.raises(Exception, match="(?i)unique"):
            db.session.commit()
        db.session.rollback()


def test_a_server_that_says_later_is_tried_again_and_one_that_says_never_is_not(
    app, world, mailbox
):
    mailbox.refuse["manager@acme.example"] = "451 4.3.0 Try again later"
    mailbox.refuse["manager2@acme.example"] = "550 5.1.1 No such user"
    create(world, "rep", 20, submit=True)
    deliver(app)
    assert mailbox.received == []
    with app.app_context():
        found = {
            each.recipient_id: each for each in db.session.execute(select(Notification)).scalars()
        }
        retrying = found[world.people["manager"]]
        assert (retrying.status, retrying.attempts) == ("pending", 1)
        assert retrying.last_error.startswith("SMTP 451")
        assert retrying.next_attempt_at > utcnow()
        failed = found[world.people["manager2"]]
        assert (failed.status, failed.last_error) == ("failed", "SMTP 550: 5.1.1 No such user")
    del mailbox.refuse["manager@acme.example"]
    later = utcnow() + timedelta(minutes=1)
    assert deliver(app, clock=lambda: later) == 1
    assert mailbox.recipients == ["manager@acme.example"]


# --- safety ------------------------------------------------------------------------------------


def test_a_title_cannot_add_headers(app, world, mailbox):
    approval_id = create(world, "rep", 20)
    with app.app_context():
        db.session.get(Approval, approval_id).title = "Deal\r\nBcc: x@evil.example"
        db.session.commit()
    services_act(world, "rep", "submit", approval_id)
    deliver(app)
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]
    for each in mailbox.received:
        assert each.message["Bcc"] is None
        assert each.message["Subject"] == "Approve 20 % on Deal Bcc: x@evil.example — 160.00 USD"
        headers = each.message.as_string().split("\n\n", 1)[0]
        assert "\nBcc:" not in headers and "Bcc" not in each.message.keys()


# --- without MAIL_URL --------------------------------------------------------------------------


def test_without_mail_url_each_email_is_one_line_of_the_log(tmp_path, caplog):
    database_url_for(tmp_path, seed="world")
    app = make_app(tmp_path)
    world = build_world(app, "globex")  # (the template's acme is there too; globex is fresh)
    caplog.set_level(logging.INFO, logger="discountflow.notifications")
    create(world, "rep", 20, submit=True)
    assert deliver(app) == 2
    lines = [r.getMessage() for r in caplog.records if "MAIL_URL is not set" in r.getMessage()]
    assert sorted(lines) == [
        "email to manager2@globex.example: Approve 20 % on Deal — 160.00 USD "
        "(MAIL_URL is not set: written to the log, not sent)",
        "email to manager@globex.example: Approve 20 % on Deal — 160.00 USD "
        "(MAIL_URL is not set: written to the log, not sent)",
    ]
    assert "/approvals/" not in caplog.text  # never the body
    assert {status for _, _, status in rows(app)} == {"sent"}


# --- helpers -----------------------------------------------------------------------------------


def services_act(world, who: str, action: str, approval_id: str, *args) -> str:
    with world.app.app_context():
        return getattr(services, action)(world.actor(who), approval_id, *args).status


def _ok():
    from discountflow.notifications.mail import Sent

    return Sent(True)

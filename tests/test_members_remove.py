"""Removing a member who left: owners and admins remove anyone but the owner and themselves, on
every surface through one service; the member keeps their row (history names them) but signs
in to nothing, decides nothing and is told nothing, and comes back with their email."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from discountflow.approvals import queries
from discountflow.approvals import services as approvals
from discountflow.approvals.models import Approval
from discountflow.audit.models import Event
from discountflow.auth import services as auth
from discountflow.auth.models import DashboardSession
from discountflow.database import utcnow
from discountflow.errors import Conflict, InvalidStateTransition, PermissionDenied
from discountflow.extensions import db
from discountflow.notifications import reminders
from discountflow.notifications.models import Notification
from discountflow.notifications.services import deciders
from discountflow.organizations import services as organizations
from discountflow.organizations.models import User
from discountflow.webhooks.models import WebhookDelivery

from .approvals_world import act, create, set_level
from .conftest import PASSWORD, bearer, create_org, generate_key, mailing_app, owner_actor
from .dashboard import csrf_token, post_form, sign_in, without_csrf_tokens
from .test_notifications import deliver
from .test_notifications_digest import statuses

REMOVED = {"error": "invalid_state_transition", "message": "This member was removed."}
OWNER_REFUSED = {"error": "permission_denied", "message": "The owner cannot be removed."}
SELF_REFUSED = {
    "error": "permission_denied",
    "message": "You cannot remove yourself: ask another admin or the owner.",
}
READ_ONLY = {
    "error": "read_only_key",
    "message": "This API key is read-only: it can read, but not change anything.",
}
MEMBERS_ONLY = {
    "error": "permission_denied",
    "message": "Only the owner and admins may remove members.",
}


def missing(member_id: str) -> dict:
    return {
        "error": "resource_missing",
        "message": f"No such member: {member_id!r}.",
        "param": "id",
    }


def member_row(app, member_id: str) -> User:
    with app.app_context():
        member = db.session.get(User, member_id)
        db.session.expunge(member)
        return member


def added_events(app, member_id: str) -> list[dict]:
    """The data of every member.added event of this member, oldest first."""
    with app.app_context():
        rows = db.session.execute(
            select(Event.data).where(Event.type == "member.added").order_by(Event.created_at)
        ).scalars()
        return [dict(data) for data in rows if data["member"] == member_id]


def removed_events(app) -> list[tuple[str, dict, str, str | None]]:
    """(actor type, data, surface, acting member) of every member.removed event."""
    with app.app_context():
        rows = db.session.execute(
            select(Event).where(Event.type == "member.removed").order_by(Event.created_at)
        ).scalars()
        return [(e.actor_type, dict(e.data), e.surface, e.actor_user_id) for e in rows]


def listed_ids(api) -> list[str]:
    return [member["id"] for member in api("GET", "/v2/members?limit=100").get_json()["data"]]


def open_sessions(app, member_id: str) -> int:
    with app.app_context():
        return db.session.execute(
            select(func.count())
            .select_from(DashboardSession)
            .where(DashboardSession.user_id == member_id, DashboardSession.ended_at.is_(None))
        ).scalar_one()


# --- REST: who may remove whom -------------------------------------------------------------


def test_the_owners_key_removes_an_admin_and_the_answer_is_the_removed_member(api, world, app):
    admin = world.people["admin"]
    response = api("DELETE", f"/v2/members/{admin}")
    assert response.status_code == 200
    body = response.get_json()
    removed = member_row(app, admin)
    assert removed.removed_at is not None
    assert body == {
        "object": "member",
        "id": admin,
        "email": "admin@acme.example",
        "name": "",
        "role": "admin",
        "approval_level": None,
        "created": body["created"],
        "removed": body["removed"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["removed"])
    assert removed_events(app) == [
        (
            "api_key",
            {
                "member": admin,
                "email": "admin@acme.example",
                "role": "admin",
                "approval_level": None,
            },
            "api",
            world.people["owner"],
        )
    ]


def test_an_admin_removes_a_member_from_the_dashboard(client, world, app):
    manager = world.people["manager"]
    sign_in(client, "admin@acme.example")
    page = client.get("/settings/members")
    assert page.status_code == 200
    assert f'href="/settings/members/{manager}/remove"' in page.text
    confirm = client.get(f"/settings/members/{manager}/remove")
    assert confirm.status_code == 200
    assert "Remove manager@acme.example from the organization?" in confirm.text
    assert "They stop being an approver" in confirm.text  # the manager holds a level
    assert member_row(app, manager).removed_at is None  # asking removes nothing
    done = post_form(client, f"/settings/members/{manager}/remove", token_from="/settings/members")
    assert done.status_code == 303 and done.headers["Location"] == "/settings/members"
    after = client.get("/settings/members")
    assert "manager@acme.example was removed and signed out everywhere." in after.text
    assert ">manager@acme.example<" not in after.text  # gone from the list
    assert ">manager2@acme.example<" in after.text
    removed = member_row(app, manager)
    assert removed.removed_at is not None and removed.approval_level_id is None
    ((actor_type, data, surface, by),) = removed_events(app)
    assert (actor_type, surface, by) == ("user", "dashboard", world.people["admin"])
    assert data == {
        "member": manager,
        "email": "manager@acme.example",
        "role": "member",
        "approval_level": world.levels["Manager"],
    }


def test_the_confirmation_warns_when_the_member_is_the_last_approver_at_a_level(client, world, app):
    """The VP is the only one at their level, and two requests wait there: removed, they would
    wait for nobody. A Manager shares the level with another: no warning."""
    for _ in range(2):
        approval_id = create(world, "rep", 20, submit=True)
        act(world, "manager", "approve", approval_id)  # on to the VP
    create(world, "rep", 10, submit=True)  # waits at Manager, not at VP
    sign_in(client, "admin@acme.example")
    vp = client.get(f"/settings/members/{world.people['vp']}/remove")
    assert vp.status_code == 200
    assert (
        "vp@acme.example is the only approver at VP: 2 requests wait there now, and would "
        "wait for nobody. Give another member the VP level first." in vp.text
    )
    manager = client.get(f"/settings/members/{world.people['manager']}/remove")
    assert "is the only approver" not in manager.text
    set_level(world, world.people["manager2"], None)  # now the manager is alone at Manager
    manager = client.get(f"/settings/members/{world.people['manager']}/remove")
    assert "is the only approver at Manager: 1 request waits there now" in manager.text
    cfo = client.get(f"/settings/members/{world.people['cfo']}/remove")  # alone, nothing waits
    assert "cfo@acme.example is the only approver at CFO. Give another member" in cfo.text
    rep = client.get(f"/settings/members/{world.people['rep']}/remove")  # no level at all
    assert "is the only approver" not in rep.text


def test_a_request_left_to_nobody_says_so_on_its_page(client, world, app, api):
    """Removed anyway, the last VP leaves a request waiting at VP for nobody: its page tells
    the requester and the admins, until someone holds the level again."""
    approval_id = create(world, "rep", 20, submit=True)
    act(world, "manager", "approve", approval_id)  # on to the VP
    nobody = "Nobody can decide the VP step now: no member holds that level"
    sign_in(client, "admin@acme.example")
    assert nobody not in client.get(f"/approvals/{approval_id}").text
    assert api("DELETE", f"/v2/members/{world.people['vp']}").status_code == 200
    page = client.get(f"/approvals/{approval_id}").text
    assert nobody in page and "Give another member the VP level in Settings → Members." in page
    rep = app.test_client()
    sign_in(rep, "rep@acme.example")
    page = rep.get(f"/approvals/{approval_id}").text
    assert nobody in page and "An admin or the owner can give another member that level." in page
    set_level(world, world.people["cfo"], world.levels["VP"])
    assert nobody not in client.get(f"/approvals/{approval_id}").text


def test_the_remove_buttons_leave_out_the_owner_and_yourself(client, world):
    sign_in(client, "admin@acme.example")
    page = client.get("/settings/members").text
    buttons = set(re.findall(r'href="/settings/members/(usr_\w+)/remove"', page))
    everyone = set(world.people.values())
    assert buttons == everyone - {world.people["owner"], world.people["admin"]}
    for who in ("owner", "admin"):  # asked for anyway: the page says why not, with no form
        confirm = client.get(f"/settings/members/{world.people[who]}/remove")
        assert confirm.status_code == 200
        assert "Remove member</button>" not in confirm.text
    assert (
        "The owner cannot be removed."
        in client.get(f"/settings/members/{world.people['owner']}/remove").text
    )


def test_removing_without_the_forms_csrf_token_is_refused(client, world, app):
    rep = world.people["rep"]
    sign_in(client, "admin@acme.example")
    refused = client.post(f"/settings/members/{rep}/remove", data={})
    assert refused.status_code == 400
    forged = client.post(f"/settings/members/{rep}/remove", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert member_row(app, rep).removed_at is None


def test_a_member_may_not_remove_anyone(client, world, app):
    rep2 = world.people["rep2"]
    sign_in(client, "rep@acme.example")
    assert client.get(f"/settings/members/{rep2}/remove").status_code == 403
    forged = post_form(client, f"/settings/members/{rep2}/remove")
    assert forged.status_code == 403
    assert "Only the owner and admins may remove members." in forged.text
    assert member_row(app, rep2).removed_at is None
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            organizations.remove_member(world.actor("rep"), rep2)
        assert refused.value.message == MEMBERS_ONLY["message"]


def test_the_owner_and_yourself_are_refused_on_every_surface(client, api, world, app):
    owner, admin = world.people["owner"], world.people["admin"]
    by_key = api("DELETE", f"/v2/members/{owner}")
    assert by_key.status_code == 403 and by_key.get_json() == OWNER_REFUSED
    sign_in(client, "admin@acme.example")
    for who, refusal in ((owner, OWNER_REFUSED), (admin, SELF_REFUSED)):
        forged = post_form(client, f"/settings/members/{who}/remove")
        assert forged.status_code == 403 and refusal["message"] in forged.text
    assert client.get("/inbox").status_code == 200  # the admin is still signed in
    with app.app_context():
        with pytest.raises(PermissionDenied, match="ask another admin"):
            organizations.remove_member(world.actor("admin"), admin)
        with pytest.raises(PermissionDenied, match="owner cannot"):
            organizations.remove_member(owner_actor(world.organization_id), owner)
    assert removed_events(app) == []


def test_a_read_only_key_removes_nobody(client, world, app):
    rep = world.people["rep"]
    refused = client.delete(f"/v2/members/{rep}", headers=bearer(world.read_only_key))
    assert refused.status_code == 403 and refused.get_json() == READ_ONLY
    assert member_row(app, rep).removed_at is None and removed_events(app) == []


def test_another_organizations_member_is_as_missing_as_an_unknown_id(api, world, app):
    _, other_owner = create_org(app, "globex")
    with app.app_context():
        stranger = organizations.add_member(
            owner_actor(member_row(app, other_owner).organization_id),
            email="rep@globex.example",
            password=PASSWORD,
        ).id
    unknown = "usr_0000000000000000000000"
    for member_id in (stranger, unknown, other_owner):
        response = api("DELETE", f"/v2/members/{member_id}")
        assert response.status_code == 404
        assert response.get_json() == missing(member_id)
    assert member_row(app, stranger).removed_at is None
    globex_key = generate_key(app, other_owner)
    response = api("DELETE", f"/v2/members/{world.people['rep']}", headers=bearer(globex_key))
    assert response.status_code == 404 and response.get_json() == missing(world.people["rep"])
    assert removed_events(app) == []


NOT_AN_ID = {
    "error": "parameter_invalid",
    "message": "Invalid id: not an object id.",
    "param": "id",
}


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("x" * 65, 400, NOT_AN_ID),
        ("usr_%00", 400, NOT_AN_ID),
        ("usr_%0A", 400, NOT_AN_ID),
        ("%20", 404, missing(" ")),
        ("' OR 1=1 --", 404, missing("' OR 1=1 --")),
        (
            "usr_abc%2Fdef",
            404,
            {
                "error": "resource_missing",
                "message": "Unrecognized request URL (DELETE /v2/members/usr_abc/def).",
            },
        ),
    ],
)
def test_forged_ids_are_refused_without_removing_anyone(api, world, app, path, status, body):
    response = api("DELETE", f"/v2/members/{path}")
    assert response.status_code == status and response.get_json() == body
    with app.app_context():
        count = db.session.execute(
            select(func.count()).select_from(User).where(User.removed_at.is_not(None))
        ).scalar_one()
    assert count == 0


# --- after the removal: reads, lists, changes ------------------------------------------------


def test_a_removed_member_is_read_but_not_listed_and_changes_nothing(api, world, app):
    rep = world.people["rep"]
    assert rep in listed_ids(api)
    api("DELETE", f"/v2/members/{rep}")
    shown = api("GET", f"/v2/members/{rep}")
    assert shown.status_code == 200
    assert (
        shown.get_json()["removed"] is not None and shown.get_json()["email"] == "rep@acme.example"
    )
    assert rep not in listed_ids(api)
    present = api("GET", f"/v2/members/{world.people['rep2']}").get_json()
    assert present["removed"] is None
    for method, body in (("PATCH", {"role": "admin"}), ("DELETE", None)):
        response = api(method, f"/v2/members/{rep}", json=body)
        assert response.status_code == 409 and response.get_json() == REMOVED
    level = api("PATCH", f"/v2/members/{rep}", json={"approval_level": world.levels["CFO"]})
    assert level.status_code == 409 and level.get_json() == REMOVED
    with app.app_context():
        with pytest.raises(InvalidStateTransition, match="was removed"):
            organizations.reset_password(owner_actor(world.organization_id), rep, "a new one!")
    assert member_row(app, rep).approval_level_id is None
    assert len(removed_events(app)) == 1


def test_a_removed_members_id_is_still_a_cursor(api, world):
    page = api("GET", "/v2/members?limit=2").get_json()
    last = page["data"][-1]["id"]
    assert api("DELETE", f"/v2/members/{last}").status_code == 200
    following = api("GET", f"/v2/members?limit=100&starting_after={last}")
    assert following.status_code == 200
    ids = [member["id"] for member in following.get_json()["data"]]
    assert ids and last not in ids


def test_history_still_names_a_removed_member(api, world, app):
    approval_id = create(world, "rep", 20, submit=True)
    api("DELETE", f"/v2/members/{world.people['rep']}")
    approval = api("GET", f"/v2/approvals/{approval_id}").get_json()
    assert approval["requested_by"] == world.people["rep"]
    with app.app_context():
        owner = owner_actor(world.organization_id)
        names = organizations.member_names(owner, [world.people["rep"]])
    assert names == {world.people["rep"]: "rep@acme.example"}
    mine = api("GET", f"/v2/approvals?requested_by={world.people['rep']}").get_json()
    assert [each["id"] for each in mine["data"]] == [approval_id]


def test_nobody_asks_on_a_removed_members_behalf(api, world):
    rep = world.people["rep"]
    api("DELETE", f"/v2/members/{rep}")
    body = {"title": "Deal", "customer": "Initech", "currency": "USD", "requested_by": rep}
    response = api("POST", "/v2/approvals", json=body)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "parameter_invalid",
        "message": "This member was removed.",
        "param": "requested_by",
    }


# --- signing in, sessions --------------------------------------------------------------------


def test_a_removed_member_signs_in_as_a_wrong_password_does(app, world, api):
    wrong = sign_in(app.test_client(), "rep@acme.example", "not the password")
    api("DELETE", f"/v2/members/{world.people['rep']}")
    removed = sign_in(app.test_client(), "rep@acme.example", PASSWORD)
    assert removed.status_code == wrong.status_code == 401
    assert without_csrf_tokens(removed.text) == without_csrf_tokens(wrong.text)
    assert "The email or password is incorrect." in removed.text
    with app.app_context():  # the service itself answers as for anyone unknown
        assert (
            auth.sign_in("rep@acme.example", PASSWORD, organization=None, client_address="") is None
        )


def test_a_removed_members_session_is_signed_out_on_its_next_request(app, world, api):
    browser = app.test_client()
    assert sign_in(browser, "rep@acme.example").status_code == 303
    assert browser.get("/inbox").status_code == 200
    other_device = app.test_client()
    sign_in(other_device, "rep@acme.example")
    assert open_sessions(app, world.people["rep"]) == 2
    api("DELETE", f"/v2/members/{world.people['rep']}")
    assert open_sessions(app, world.people["rep"]) == 0
    for client in (browser, other_device):
        response = client.get("/inbox")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in")


def test_a_copied_cookie_opens_nothing_even_after_the_member_comes_back(app, world, api):
    browser = app.test_client()
    sign_in(browser, "rep@acme.example")
    cookie = browser.get_cookie("discountflow_session").value
    copy = app.test_client()
    copy.set_cookie("discountflow_session", cookie)
    assert copy.get("/inbox").status_code == 200  # a copy works while the member is there
    api("DELETE", f"/v2/members/{world.people['rep']}")
    with app.app_context():
        organizations.add_member(
            owner_actor(world.organization_id), email="rep@acme.example", password="new password!"
        )
    replayed = app.test_client()
    replayed.set_cookie("discountflow_session", cookie)
    response = replayed.get("/inbox")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


def test_a_session_opened_as_the_member_was_removed_opens_nothing(app, world, api):
    """A sign-in that checked the password just before the removal and opened its session
    just after it: the session exists, but names a removed member."""
    rep = world.people["rep"]
    api("DELETE", f"/v2/members/{rep}")
    with app.app_context():
        late = auth.start_session(db.session.get(User, rep))
    browser = app.test_client()
    with browser.session_transaction() as session:
        session["_user_id"] = rep
        session["_fresh"] = True
        session[auth.SESSION_ID] = late
    response = browser.get("/inbox")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


# --- deciding and being told ------------------------------------------------------------------


def test_a_removed_approver_decides_nothing_and_leaves_the_inbox(api, world, app):
    manager = world.people["manager"]
    approval_id = create(world, "rep", 10, submit=True)  # waits at Manager
    awaiting = f"/v2/approvals?awaiting_decision_by={manager}"
    assert [each["id"] for each in api("GET", awaiting).get_json()["data"]] == [approval_id]
    api("DELETE", f"/v2/members/{manager}")
    assert api("GET", awaiting).get_json()["data"] == []
    with app.app_context():
        removed = db.session.get(User, manager)
        assert not queries.may_decide(removed, approval_id)
        approval = db.session.get(Approval, approval_id)
        assert deciders(db.session, approval) == [world.people["manager2"]]
    assert act(world, "manager2", "approve", approval_id) == "approved"


@pytest.fixture
def mailing(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox)


def test_an_email_queued_before_the_removal_is_not_sent(mailing, world, mailbox):
    manager = world.people["manager"]
    create(world, "rep", 10, submit=True)  # queues an email to each manager
    assert statuses(mailing, manager) == [("decision_requested", "pending")]
    client = mailing.test_client()
    assert client.delete(f"/v2/members/{manager}", headers=bearer(world.key)).status_code == 200
    deliver(mailing)
    assert mailbox.recipients == ["manager2@acme.example"]
    assert statuses(mailing, manager) == [("decision_requested", "skipped")]


def test_a_removed_requester_hears_of_no_decision_queued_before_or_after(mailing, world, mailbox):
    rep = world.people["rep"]
    first = create(world, "rep", 10, submit=True)
    second = create(world, "rep", 10, submit=True)
    deliver(mailing)
    mailbox.received.clear()
    act(world, "manager", "approve", first)  # the decision's email waits for the worker
    assert statuses(mailing, rep) == [("approved", "pending")]
    with mailing.app_context():
        organizations.remove_member(world.actor("admin"), rep)
    act(world, "manager", "reject", second, "No")  # after the removal: not even queued
    deliver(mailing)
    assert mailbox.received == []
    assert statuses(mailing, rep) == [("approved", "skipped")]


def test_a_removed_participant_is_not_told_of_comments(mailing, world, mailbox):
    approval_id = create(world, "rep", 10, submit=True)
    with mailing.app_context():
        approvals.add_comment(world.actor("manager"), approval_id, "Looking at it")
        organizations.remove_member(world.actor("admin"), world.people["manager"])
        approvals.add_comment(world.actor("admin"), approval_id, "The manager left: VP?")
    deliver(mailing)
    commented = [each.rcpt_tos for each in mailbox.received if "The manager left" in each.text]
    assert commented == [["rep@acme.example"]]
    told = statuses(mailing, world.people["manager"])
    assert [kind for kind, _ in told if kind == "commented"] == []


def test_a_removed_approver_gets_no_reminder(mailing, world):
    create(world, "rep", 10, submit=True)
    with mailing.app_context():
        organizations.remove_member(world.actor("admin"), world.people["manager"])
        assert reminders.write_reminders(utcnow() + timedelta(hours=25)) == 1
        reminded = db.session.execute(
            select(Notification.recipient_id).where(Notification.kind == "reminder")
        ).scalars()
        assert list(reminded) == [world.people["manager2"]]


# --- adding them back --------------------------------------------------------------------------


def test_adding_a_removed_members_email_brings_the_same_member_back(api, world, app, client):
    rep = world.people["rep"]
    set_level(world, rep, world.levels["Manager"])
    api("DELETE", f"/v2/members/{rep}")
    with app.app_context():
        back = organizations.add_member(
            world.actor("admin"),
            email=" REP@acme.example ",
            password="a fresh password",
            role="admin",
            name="Rep Again",
        )
        assert back.id == rep
    shown = api("GET", f"/v2/members/{rep}").get_json()
    assert (shown["removed"], shown["role"], shown["name"]) == (None, "admin", "Rep Again")
    assert shown["approval_level"] is None  # a level is given again, not kept
    assert rep in listed_ids(api)
    assert added_events(app, rep) == [
        {"member": rep, "email": "rep@acme.example", "role": "member"},
        {"member": rep, "email": "rep@acme.example", "role": "admin"},
    ]
    assert sign_in(client, "rep@acme.example", PASSWORD).status_code == 401  # the old one
    assert sign_in(client, "rep@acme.example", "a fresh password").status_code == 303
    with app.app_context():
        assert (
            db.session.execute(
                select(func.count()).select_from(User).where(User.email == "rep@acme.example")
            ).scalar_one()
            == 1
        )


def test_an_active_members_email_is_still_a_conflict(world, app):
    with app.app_context():
        with pytest.raises(Conflict, match="A member of this organization"):
            organizations.add_member(
                world.actor("admin"), email="rep@acme.example", password=PASSWORD
            )


def test_the_dashboard_adds_a_removed_member_back(client, world, api):
    rep = world.people["rep"]
    api("DELETE", f"/v2/members/{rep}")
    sign_in(client, "admin@acme.example")
    token = csrf_token(client, "/settings/members")
    response = client.post(
        "/settings/members",
        data={
            "csrf_token": token,
            "email": "rep@acme.example",
            "name": "",
            "role": "member",
            "password": "back again 123",
        },
    )
    assert response.status_code == 303
    assert api("GET", f"/v2/members/{rep}").get_json()["removed"] is None


# --- GraphQL ---------------------------------------------------------------------------------

REMOVE = "mutation($id: ID!) { removeMember(id: $id) { id email role approvalLevel removed } }"


def _gql(client, key, query, **variables):
    body = {"query": query, "variables": variables}
    return client.post("/v2/graphql", json=body, headers=bearer(key))


def test_graphql_removes_a_member_with_the_same_rules(client, world, app):
    vp = world.people["vp"]
    answer = _gql(client, world.key, REMOVE, id=vp).get_json()
    removed = answer["data"]["removeMember"]
    assert (removed["id"], removed["email"], removed["role"]) == (vp, "vp@acme.example", "MEMBER")
    assert removed["approvalLevel"] is None and removed["removed"] is not None
    ((actor_type, data, surface, _),) = removed_events(app)
    assert (actor_type, surface, data["approval_level"]) == (
        "api_key",
        "graphql",
        world.levels["VP"],
    )
    listed = client.post(
        "/v2/graphql",
        json={"query": "{ members(first: 100) { edges { node { id } } } }"},
        headers=bearer(world.key),
    ).get_json()["data"]["members"]["edges"]
    assert vp not in [edge["node"]["id"] for edge in listed]
    one = client.post(
        "/v2/graphql",
        json={
            "query": "query($id: ID!) { member(id: $id) { id removed } }",
            "variables": {"id": vp},
        },
        headers=bearer(world.key),
    ).get_json()["data"]["member"]
    assert one["id"] == vp and one["removed"] == removed["removed"]
    for member_id, code, message in (
        (vp, "invalid_state_transition", "This member was removed."),
        (world.people["owner"], "permission_denied", "The owner cannot be removed."),
        ("usr_0000000000000000000000", "resource_missing", "No such member"),
    ):
        refused = _gql(client, world.key, REMOVE, id=member_id).get_json()
        assert refused["data"] == {"removeMember": None}
        assert refused["errors"][0]["extensions"]["code"] == code
        assert refused["errors"][0]["message"].startswith(message)
    read_only = _gql(client, world.read_only_key, REMOVE, id=world.people["rep"])
    assert read_only.status_code == 403 and read_only.get_json() == READ_ONLY
    assert member_row(app, world.people["rep"]).removed_at is None


def test_graphql_cannot_reach_another_organizations_member(client, world, app):
    _, other_owner = create_org(app, "globex")
    globex_key = generate_key(app, other_owner)
    refused = _gql(client, globex_key, REMOVE, id=world.people["rep"]).get_json()
    assert refused["errors"][0]["extensions"]["code"] == "resource_missing"
    assert member_row(app, world.people["rep"]).removed_at is None


# --- the CLI -------------------------------------------------------------------------------------


def test_the_cli_removes_a_member_through_the_same_service(world, app):
    runner = app.test_cli_runner()
    done = runner.invoke(args=["users", "remove", "rep@acme.example", "--org", "acme"])
    assert done.exit_code == 0, done.output
    assert done.output == (
        f"Removed rep@acme.example ({world.people['rep']}); they can no longer sign in.\n"
    )
    ((actor_type, _, surface, _),) = removed_events(app)
    assert (actor_type, surface) == ("user", "cli")
    for email, said in (
        ("rep@acme.example", "Error: This member was removed."),
        ("owner@acme.example", "Error: The owner cannot be removed."),
        ("who@acme.example", "Error: No member of acme has the email 'who@acme.example'."),
    ):
        refused = runner.invoke(args=["users", "remove", email, "--org", "acme"])
        assert refused.exit_code == 1 and said in refused.output
    again = runner.invoke(
        args=["users", "reset-password", "rep@acme.example", "--org", "acme", "--password-stdin"],
        input="a new password\n",
    )
    assert again.exit_code == 1 and "Error: This member was removed." in again.output


# --- webhooks ----------------------------------------------------------------------------------


def test_webhook_endpoints_may_subscribe_to_removals(api, world, app):
    endpoint = api(
        "POST",
        "/v2/webhook_endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["member.removed"]},
    )
    assert endpoint.status_code == 201, endpoint.get_json()
    api("PATCH", f"/v2/members/{world.people['rep']}", json={"role": "admin"})
    api("DELETE", f"/v2/members/{world.people['rep']}")
    with app.app_context():
        kinds = db.session.execute(select(WebhookDelivery.event_type)).scalars().all()
    assert kinds == ["member.removed"]


# --- at the same moment ------------------------------------------------------------------------


def _at_once(app, *calls) -> list[int]:
    """Send the requests at the same moment from threads; return their statuses, in order."""
    start, answers = threading.Barrier(len(calls)), {}

    def send(number: int, method: str, path: str, key: str, body) -> None:
        client = app.test_client()
        start.wait()
        answers[number] = client.open(path, method=method, json=body, headers=bearer(key))

    threads = [threading.Thread(target=send, args=(n, *call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return [answers[n].status_code for n in range(len(calls))]


def test_two_removals_at_once_remove_once(app, world):
    path = f"/v2/members/{world.people['rep']}"
    statuses = _at_once(app, *[("DELETE", path, world.key, None)] * 4)
    assert sorted(statuses) == [200, 409, 409, 409]
    assert len(removed_events(app)) == 1


def test_a_level_given_as_the_member_is_removed_is_not_kept(app, world):
    path = f"/v2/members/{world.people['rep']}"
    level = {"approval_level": world.levels["CFO"]}
    statuses = _at_once(app, ("DELETE", path, world.key, None), ("PATCH", path, world.key, level))
    assert statuses[0] == 200 and statuses[1] in (200, 409)
    removed = member_row(app, world.people["rep"])
    assert removed.removed_at is not None and removed.approval_level_id is None

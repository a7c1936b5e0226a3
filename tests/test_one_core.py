"""One core for every surface: one Actor, the rules in the services, four eyes, members over the
API, an audit event for every change, and a key cache that never shows an old name."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from discountflow.actors import Actor, Surface
from discountflow.approvals import levels, queries, services
from discountflow.approvals.schemas import (
    ApprovalCreate,
    ApprovalUpdate,
    LevelCreate,
    LevelUpdate,
)
from discountflow.audit.models import Event
from discountflow.auth import services as keys
from discountflow.errors import PermissionDenied, ReadOnlyKey
from discountflow.extensions import db
from discountflow.organizations import services as organizations
from discountflow.organizations.schemas import MemberUpdate, OrganizationUpdate
from discountflow.products import csv_files
from discountflow.products import services as products
from discountflow.products.schemas import ProductCreate, ProductUpdate
from discountflow.webhooks import services as webhooks
from discountflow.webhooks.schemas import EndpointCreate, EndpointUpdate

from .approvals_world import act, create, request_body, set_level
from .conftest import PASSWORD, bearer, make_app
from .dashboard import post_form, sign_in

# --- read-only keys: refused by the services themselves, whatever surface calls them ----------


def _read_only_actor(world) -> Actor:
    return Actor.for_api_key(world.organization_id, "key_readonly0000", read_only=True)


def _hook(world) -> tuple[str, str]:
    """A webhook endpoint of the world and a delivery of it (made once, by the owner)."""
    if not hasattr(world, "hook"):
        owner = world.actor("owner")
        endpoint, _ = webhooks.create_endpoint(owner, EndpointCreate(url="http://127.0.0.1:9/x"))
        world.hook = (endpoint.id, webhooks.send_test(owner, endpoint.id).id)
    return world.hook


WRITE_SERVICES = {
    "create_approval": lambda a, w, ids: services.create_approval(
        a, ApprovalCreate.model_validate(request_body(10))
    ),
    "update_approval": lambda a, w, ids: services.update_approval(
        a, ids["draft"], ApprovalUpdate(title="x")
    ),
    "update_and_submit": lambda a, w, ids: services.update_and_submit(
        a, ids["draft"], ApprovalUpdate(title="x")
    ),
    "delete_approval": lambda a, w, ids: services.delete_approval(a, ids["draft"]),
    "submit": lambda a, w, ids: services.submit(a, ids["draft"]),
    "approve": lambda a, w, ids: services.approve(a, ids["pending"]),
    "reject": lambda a, w, ids: services.reject(a, ids["pending"], "no"),
    "request_changes": lambda a, w, ids: services.request_changes(a, ids["pending"], "no"),
    "recall": lambda a, w, ids: services.recall(a, ids["pending"]),
    "cancel": lambda a, w, ids: services.cancel(a, ids["pending"]),
    "add_comment": lambda a, w, ids: services.add_comment(a, ids["pending"], "hi"),
    "create_level": lambda a, w, ids: levels.create_level(
        a, LevelCreate(name="X", rank=9, max_discount_percent=60)
    ),
    "update_level": lambda a, w, ids: levels.update_level(
        a, w.levels["CFO"], LevelUpdate(name="Chief")
    ),
    "delete_level": lambda a, w, ids: levels.delete_level(a, w.levels["CFO"]),
    "update_organization": lambda a, w, ids: organizations.update_organization(
        a, OrganizationUpdate(name="Renamed")
    ),
    "add_member": lambda a, w, ids: organizations.add_member(
        a, email="new@acme.example", password=PASSWORD
    ),
    "update_member": lambda a, w, ids: organizations.update_member(
        a, w.people["rep"], MemberUpdate(role="admin")
    ),
    "remove_member": lambda a, w, ids: organizations.remove_member(a, w.people["rep"]),
    "generate_key": lambda a, w, ids: keys.generate_key(a),
    "roll_key": lambda a, w, ids: keys.roll_key(a, grace=timedelta(hours=1)),
    "revoke_key": lambda a, w, ids: keys.revoke_key(a),
    "create_product": lambda a, w, ids: products.create_product(
        a, ProductCreate(sku="NEW", name="New")
    ),
    "update_product": lambda a, w, ids: products.update_product(
        a, w.products["LICENSE"], ProductUpdate(name="Renamed")
    ),
    "delete_product": lambda a, w, ids: products.delete_product(a, w.products["LICENSE"]),
    "create_endpoint": lambda a, w, ids: webhooks.create_endpoint(
        a, EndpointCreate(url="http://127.0.0.1:9/x")
    ),
    "update_endpoint": lambda a, w, ids: webhooks.update_endpoint(
        a, _hook(w)[0], EndpointUpdate(enabled=False)
    ),
    "delete_endpoint": lambda a, w, ids: webhooks.delete_endpoint(a, _hook(w)[0]),
    "rotate_secret": lambda a, w, ids: webhooks.rotate_secret(a, _hook(w)[0]),
    "send_test": lambda a, w, ids: webhooks.send_test(a, _hook(w)[0]),
    "retry_delivery": lambda a, w, ids: webhooks.retry_delivery(a, *_hook(w)),
    "import_products": lambda a, w, ids: csv_files.import_products(
        a, io.StringIO(f"{','.join(csv_files.COLUMNS)}\nNEW,New,,USD,1.00,true\n")
    ),
}


def _counts(app) -> tuple[int, ...]:
    from discountflow.approvals.models import Approval, ApprovalLevel, Comment, Decision
    from discountflow.auth.models import ApiKey
    from discountflow.organizations.models import User
    from discountflow.products.models import Product

    with app.app_context():
        return tuple(
            db.session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Approval, ApprovalLevel, Comment, Decision, Event, ApiKey, User, Product)
        )


@pytest.mark.parametrize("name", sorted(WRITE_SERVICES))
def test_every_write_service_refuses_a_read_only_actor(world, name):
    ids = {"draft": create(world, "rep", 10), "pending": create(world, "rep", 10, submit=True)}
    with world.app.app_context():
        _hook(world)
    before = _counts(world.app)
    with world.app.app_context():
        with pytest.raises(ReadOnlyKey) as refused:
            WRITE_SERVICES[name](_read_only_actor(world), world, ids)
        assert refused.value.status == 403 and refused.value.code == "read_only_key"
        db.session.rollback()
    assert _counts(world.app) == before


def test_every_write_service_is_in_the_matrix():
    """A new write service must join the read-only matrix above."""
    import inspect
    import re

    from discountflow.actors import writing

    writers = set()
    for module in (services, levels, organizations, keys, products, csv_files, webhooks):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                source = inspect.getsource(function)
                calls = re.findall(r"(?<![\w.])(writing\(actor\)|_change\(actor|_decide\()", source)
                if calls:
                    writers.add(name)
    assert writing.__name__ == "writing"
    assert writers == set(WRITE_SERVICES)


def test_a_read_only_actor_is_offered_no_action(world):
    pending = create(world, "rep", 10, submit=True)
    set_level(world, world.people["owner"], world.levels["Manager"])
    with world.app.app_context():
        view = queries.get_approval(_read_only_actor(world), pending)
        assert services.allowed_actions(_read_only_actor(world), view) == frozenset()


# --- four eyes ---------------------------------------------------------------------------------


def test_an_admin_who_edited_and_submitted_a_draft_cannot_approve_it(world, client):
    """Reproduction (a): a member's 10 % draft, edited to 50 % and submitted by an admin who
    holds level 1, must not be approved by that admin."""
    set_level(world, world.people["admin"], world.levels["Manager"])
    draft = create(world, "rep", 10)
    with world.app.app_context():
        admin = world.actor("admin")
        services.update_approval(admin, draft, ApprovalUpdate.model_validate(request_body(50)))
        services.submit(admin, draft)
        view = queries.get_approval(admin, draft)
        assert view.steps[0].level_name == "Manager" and view.status == "pending"
        assert "approve" not in services.allowed_actions(admin, view)
        with pytest.raises(PermissionDenied, match="Four eyes"):
            services.approve(admin, draft)
    # Through the dashboard too: no button, and a forged post is refused.
    sign_in(client, "admin@acme.example")
    page = client.get(f"/approvals/{draft}")
    assert ">Approve</button>" not in page.text
    forged = post_form(client, f"/approvals/{draft}/actions/approve")
    assert forged.status_code == 403 and "Four eyes" in forged.text
    # Someone else at the level decides it.
    assert act(world, "manager", "approve", draft) == "pending"  # on to VP


def test_a_key_that_created_and_submitted_on_a_members_behalf_cannot_approve(world, api):
    """Reproduction (b): the owner's key asks on a member's behalf, submits, then approves."""
    set_level(world, world.people["owner"], world.levels["Manager"])
    body = request_body(10, submit=True, requested_by=world.people["rep"])
    created = api("POST", "/v2/approvals", json=body)
    assert created.status_code == 201 and created.get_json()["status"] == "pending"
    approval_id = created.get_json()["id"]
    refused = api("POST", f"/v2/approvals/{approval_id}/approve", json={})
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "permission_denied"
    assert "Four eyes" in refused.get_json()["message"]
    assert api("GET", f"/v2/approvals/{approval_id}").get_json()["status"] == "pending"


def test_the_owner_cannot_decide_what_a_key_submitted(world, api, client):
    """A key counts as the owner it acts for: the owner in person is refused as well."""
    set_level(world, world.people["owner"], world.levels["Manager"])
    body = request_body(10, submit=True, requested_by=world.people["rep"])
    approval_id = api("POST", "/v2/approvals", json=body).get_json()["id"]
    with pytest.raises(PermissionDenied, match="Four eyes"):
        act(world, "owner", "approve", approval_id)
    sign_in(client, "owner@acme.example")
    forged = post_form(client, f"/approvals/{approval_id}/actions/reject", {"comment": "no"})
    assert forged.status_code == 403
    assert act(world, "manager", "approve", approval_id) == "approved"


def test_a_new_round_belongs_to_whoever_edits_and_submits_it(world):
    """After changes are requested, the admin's earlier edit no longer bars them."""
    set_level(world, world.people["admin"], world.levels["Manager"])
    approval_id = create(world, "rep", 10)
    with world.app.app_context():
        services.update_approval(world.actor("admin"), approval_id, ApprovalUpdate(title="T"))
    act(world, "rep", "submit", approval_id)
    with pytest.raises(PermissionDenied, match="Four eyes"):
        act(world, "admin", "approve", approval_id)
    act(world, "manager", "request_changes", approval_id, "Shorter term, please")
    with world.app.app_context():
        services.update_approval(world.actor("rep"), approval_id, ApprovalUpdate(title="T2"))
    act(world, "rep", "submit", approval_id)
    assert act(world, "admin", "approve", approval_id) == "approved"


def test_recalling_starts_a_new_round(world):
    set_level(world, world.people["admin"], world.levels["Manager"])
    approval_id = create(world, "rep", 10)
    act(world, "admin", "submit", approval_id)
    act(world, "rep", "recall", approval_id)
    act(world, "rep", "submit", approval_id)
    assert act(world, "admin", "approve", approval_id) == "approved"


def test_whoever_took_part_does_not_see_it_awaiting_their_decision(world, api):
    set_level(world, world.people["admin"], world.levels["Manager"])
    theirs = create(world, "rep", 10, submit=True)
    edited = create(world, "rep", 10)
    with world.app.app_context():
        services.update_and_submit(world.actor("admin"), edited, ApprovalUpdate(title="Edited"))
    awaiting = api("GET", f"/v2/approvals?awaiting_decision_by={world.people['admin']}")
    assert [a["id"] for a in awaiting.get_json()["data"]] == [theirs]
    for_manager = api("GET", f"/v2/approvals?awaiting_decision_by={world.people['manager']}")
    assert [a["id"] for a in for_manager.get_json()["data"]] == [edited, theirs]


def test_a_refused_resubmit_keeps_no_edit(world):
    """Edit-and-resubmit is one transaction: a refused submit leaves the approval unchanged."""
    approval_id = create(world, "rep", 10)
    with world.app.app_context():
        levels_gone = [
            levels.delete_level(world.actor("admin"), lvl) for lvl in world.levels.values()
        ]
        assert len(levels_gone) == 3
        change = ApprovalUpdate.model_validate({**request_body(40), "title": "Changed"})
        with pytest.raises(Exception, match="no approval levels"):
            services.update_and_submit(world.actor("rep"), approval_id, change)
        db.session.rollback()
        view = queries.get_approval(world.actor("rep"), approval_id)
        assert view.approval.title == "Deal" and view.status == "draft"


# --- members over the API ----------------------------------------------------------------------


def test_an_integration_changes_a_members_role_and_level(api, world):
    rep = world.people["rep"]
    response = api(
        "PATCH", f"/v2/members/{rep}", json={"role": "admin", "approval_level": world.levels["VP"]}
    )
    assert response.status_code == 200
    member = response.get_json()
    assert (member["object"], member["id"], member["role"], member["approval_level"]) == (
        "member",
        rep,
        "admin",
        world.levels["VP"],
    )
    assert api("GET", f"/v2/members/{rep}").get_json() == member
    cleared = api("PATCH", f"/v2/members/{rep}", json={"approval_level": None}).get_json()
    assert (cleared["role"], cleared["approval_level"]) == ("admin", None)
    types = [e["type"] for e in api("GET", "/v2/events?type=member.*").get_json()["data"]]
    assert types[:3] == ["member.level_changed", "member.level_changed", "member.role_changed"]


@pytest.mark.parametrize(
    ("body", "status", "error", "param"),
    [
        ({"role": "owner"}, 400, "parameter_invalid", "role"),
        ({"role": "boss"}, 400, "parameter_invalid", "role"),
        ({"approval_level": "lvl_nope"}, 400, "parameter_invalid", "approval_level"),
        ({"approval_level": 7}, 400, "parameter_invalid", "approval_level"),
        ({"email": "x@acme.example"}, 400, "parameter_invalid", "email"),
    ],
)
def test_member_changes_are_validated(api, world, body, status, error, param):
    response = api("PATCH", f"/v2/members/{world.people['rep']}", json=body)
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert response.get_json()["param"] == param


def test_the_owners_role_cannot_change(api, world):
    response = api("PATCH", f"/v2/members/{world.people['owner']}", json={"role": "member"})
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "permission_denied",
        "message": "The owner's role cannot be changed.",
    }
    # the owner's approval level may change, and an unchanged role is no change at all
    same = api("PATCH", f"/v2/members/{world.people['owner']}", json={"role": "member"})
    assert same.status_code == 403
    level = api(
        "PATCH", f"/v2/members/{world.people['owner']}", json={"approval_level": world.levels["VP"]}
    )
    assert level.status_code == 200 and level.get_json()["role"] == "owner"


def test_members_are_changed_by_the_owner_and_admins_only(app, world, client):
    from .approvals_world import build_world

    refused = client.patch(
        f"/v2/members/{world.people['rep']}",
        headers=bearer(world.read_only_key),
        json={"role": "admin"},
    )
    assert refused.status_code == 403 and refused.get_json()["error"] == "read_only_key"
    other = build_world(app, "globex")
    foreign = client.patch(
        f"/v2/members/{world.people['rep']}", headers=bearer(other.key), json={"role": "admin"}
    )
    assert foreign.status_code == 404 and foreign.get_json()["error"] == "resource_missing"
    with app.app_context():
        with pytest.raises(PermissionDenied):
            organizations.update_member(
                world.actor("manager"), world.people["rep"], MemberUpdate(role="admin")
            )


# --- an audit event for every change -----------------------------------------------------------


def _events(app, organization_id: str, prefix: str = "") -> list[Event]:
    with app.app_context():
        return list(
            db.session.execute(
                select(Event)
                .where(Event.organization_id == organization_id, Event.type.startswith(prefix))
                .order_by(Event.created_at, Event.id)
            ).scalars()
        )


def test_key_changes_are_audit_events_naming_the_key_never_its_text(app, world, runner):
    generated = runner.invoke(args=["keys", "generate", "--org", "acme"])
    new_key = generated.output.strip().splitlines()[-1]
    rolled = runner.invoke(args=["keys", "roll", "--org", "acme", "--grace", "1h"])
    rolled_key = rolled.output.strip().splitlines()[-1]
    runner.invoke(args=["keys", "revoke", "--org", "acme", "--read-only", "--yes"])
    events = _events(app, world.organization_id, "api_key.")
    types = [event.type for event in events]
    # build_world generated two keys (full, read-only); then generate, roll, revoke
    assert types == ["api_key.generated"] * 3 + ["api_key.rolled", "api_key.revoked"]
    generate, roll, revoke = events[2], events[3], events[4]
    assert generate.data["api_key"] == "key_" + new_key.split("_")[2]
    assert generate.data["scope"] == "full_access" and generate.data["invalidated"]
    assert roll.data["api_key"] == "key_" + rolled_key.split("_")[2]
    assert roll.data["replaces"] == generate.data["api_key"]
    assert revoke.data["scope"] == "read_only"
    for event in events:
        assert (event.actor_type, event.actor_user_id) == ("user", world.people["owner"])
        assert event.surface == "cli" and event.api_key_id is None
        assert new_key not in str(event.data) and rolled_key not in str(event.data)
        assert new_key.split("_")[3] not in str(event.data)


def test_keys_managed_in_the_dashboard_are_recorded_as_the_dashboard(app, world, client):
    sign_in(client, "owner@acme.example")
    page = client.get("/settings/api-keys")
    import re

    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    post_form(client, "/settings/api-keys/generate", {"slot": "full", "nonce": nonce})
    event = _events(app, world.organization_id, "api_key.")[-1]
    assert (event.type, event.surface, event.actor_user_id) == (
        "api_key.generated",
        "dashboard",
        world.people["owner"],
    )


def test_member_level_and_organization_changes_are_audit_events(app, world, api):
    api(
        "POST", "/v2/approval_levels", json={"name": "Board", "rank": 4, "max_discount_percent": 90}
    )
    board = api("GET", "/v2/approval_levels?limit=1").get_json()["data"][0]["id"]
    api("PATCH", f"/v2/approval_levels/{board}", json={"name": "The board"})
    api("PATCH", f"/v2/members/{world.people['rep']}", json={"approval_level": board})
    api("DELETE", f"/v2/approval_levels/{board}")
    api("PATCH", "/v2/organization", json={"name": "Acme Corp", "default_validity_days": 60})
    with app.app_context():
        organizations.add_member(
            world.actor("admin"), email="nina@acme.example", password=PASSWORD, role="member"
        )
    listed = api("GET", "/v2/events?limit=7").get_json()["data"]
    assert (
        [e["type"] for e in listed]
        == [
            "member.added",
            "organization.updated",
            "approval_level.deleted",
            "member.level_changed",
            "approval_level.updated",
            "approval_level.created",
            "approval.created",  # nothing older of ours: build_world's own come before
        ][: len(listed)]
        or listed
    )
    by_type = {e["type"]: e for e in listed}
    assert by_type["approval_level.deleted"]["data"]["approvers"] == [world.people["rep"]]
    assert by_type["organization.updated"]["data"]["fields"] == ["default_validity_days", "name"]
    assert by_type["member.added"]["actor"]["surface"] == "dashboard"
    assert by_type["member.level_changed"]["actor"]["type"] == "api_key"


def test_the_trail_of_a_new_organization_starts_with_its_creation(app, org):
    events = _events(app, org[0])
    assert [(e.type, e.actor_user_id) for e in events] == [
        ("organization.created", org[1]),
        ("member.added", org[1]),
    ]


def test_events_are_filtered_by_type(api, world):
    draft = create(world, "rep", 10)
    act(world, "rep", "submit", draft)
    exact = api("GET", "/v2/events?type=approval.submitted&limit=100").get_json()["data"]
    assert {e["type"] for e in exact} == {"approval.submitted"} and len(exact) == 1
    kinds = api("GET", "/v2/events?type=api_key.*&type=approval.submitted&limit=100").get_json()
    assert {e["type"] for e in kinds["data"]} == {"api_key.generated", "approval.submitted"}
    for bad in ("approval", "approval.%", "*", "a" * 60 + ".b"):
        response = api("GET", f"/v2/events?type={bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["param"] == "type[0]"
    too_many = api("GET", "/v2/events?" + "&".join(["type=approval.created"] * 21))
    assert too_many.status_code == 400 and too_many.get_json()["param"] == "type"


def test_the_audit_page_is_for_the_owner_and_admins(app, world, client):
    sign_in(client, "admin@acme.example")
    page = client.get("/settings/audit")
    assert page.status_code == 200
    assert "api_key.generated" in page.text and "approval_level.created" in page.text
    filtered = client.get("/settings/audit?type=api_key.*")
    assert "api_key.generated" in filtered.text and "approval_level.created" not in filtered.text
    member = app.test_client()
    sign_in(member, "rep@acme.example")
    assert member.get("/settings/audit").status_code == 403


# --- the key cache never shows an organization's old name --------------------------------------


def test_me_shows_a_new_organization_name_on_the_next_request(tmp_path):
    from .approvals_world import build_world

    first, second = make_app(tmp_path), make_app(tmp_path)
    world = build_world(first)
    for app in (first, second):
        me = app.test_client().get("/v2/me", headers=bearer(world.key)).get_json()
        assert me["organization"]["name"] == "Acme"
    renamed = first.test_client().patch(
        "/v2/organization", headers=bearer(world.key), json={"name": "Acme Holdings"}
    )
    assert renamed.status_code == 200
    for app in (first, second):
        me = app.test_client().get("/v2/me", headers=bearer(world.key)).get_json()
        assert me["organization"]["name"] == "Acme Holdings"


def test_actors_say_who_they_are(world):
    with world.app.app_context():
        member = world.actor("rep")
        key = Actor.for_api_key(world.organization_id, "key_x", read_only=False)
        system = Actor.system(world.organization_id)
        assert (member.type, key.type, system.type) == ("user", "api_key", "system")
        assert key.person_id == world.people["owner"] and key.role == "owner"
        assert member.surface is Surface.DASHBOARD and key.surface is Surface.API
        assert system.recorded_as()["actor_user_id"] is None
        with pytest.raises(PermissionDenied):
            key.require_owner("manage API keys")

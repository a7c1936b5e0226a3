"""Approvals: routing, the state machine, who may do what, totals, expiry and concurrency."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from discountflow.approvals import levels, queries, services
from discountflow.approvals.models import Decision
from discountflow.approvals.schemas import ApprovalUpdate
from discountflow.audit.models import Event
from discountflow.errors import InvalidStateTransition, NotFound, PermissionDenied
from discountflow.extensions import db

from .approvals_world import act, build_world, create, request_body, set_level
from .conftest import bearer, make_app

# --- totals ------------------------------------------------------------------------------------


def test_totals_and_discounts_are_computed_from_line_items(api):
    body = request_body(10, 25)
    body["line_items"][0]["quantity"] = 3
    response = api("POST", "/v2/approvals", json=body)
    assert response.status_code == 201
    approval = response.get_json()
    assert approval["object"] == "approval"
    assert approval["id"].startswith("apr_")
    assert approval["status"] == "draft"
    assert [item["discount_percent"] for item in approval["line_items"]] == [10.0, 25.0]
    first = approval["line_items"][0]
    assert (first["list_amount"], first["amount"], first["discount_amount"]) == (
        30_000,
        27_000,
        3_000,
    )
    assert approval["list_amount"] == 30_000 + 20_000
    assert approval["amount"] == 27_000 + 15_000
    assert approval["discount_amount"] == 8_000
    assert approval["discount_percent"] == 16.0
    assert approval["max_line_discount_percent"] == 25.0


@pytest.mark.parametrize(
    "field, value",
    [("amount", 1), ("discount_percent", 50), ("list_amount", 5), ("status", "approved")],
)
def test_client_sent_totals_and_status_are_refused(api, field, value):
    response = api("POST", "/v2/approvals", json=request_body(10, **{field: value}))
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "parameter_invalid",
        "message": "Invalid " + field + ": extra inputs are not permitted.",
        "param": field,
    }


@pytest.mark.parametrize(
    "mutate, param",
    [
        (lambda b: b["line_items"][0].update(quantity=-1), "line_items[0].quantity"),
        (lambda b: b["line_items"][0].update(quantity=0), "line_items[0].quantity"),
        (lambda b: b["line_items"][0].update(quantity="2"), "line_items[0].quantity"),
        (lambda b: b["line_items"][0].update(unit_price=10_001), "line_items[0].unit_price"),
        (lambda b: b["line_items"][0].update(unit_price=-5), "line_items[0].unit_price"),
        (lambda b: b["line_items"][0].update(unit_list_price=0), "line_items[0].unit_list_price"),
        (lambda b: b["line_items"][0].update(unit_list_price=1.5), "line_items[0].unit_list_price"),
        (
            lambda b: b["line_items"][0].update(unit_list_price=10**20),
            "line_items[0].unit_list_price",
        ),
        (lambda b: b.update(currency="XXY"), "currency"),
        (lambda b: b.update(currency="dollars"), "currency"),
        (lambda b: b.update(currency=None), "currency"),
        (lambda b: b.update(title=""), "title"),
        (lambda b: b.update(title="x" * 201), "title"),
        (lambda b: b.update(title=7), "title"),
        (lambda b: b.update(line_items="many"), "line_items"),
        (lambda b: b.update(line_items=[{}] * 101), "line_items"),
        (lambda b: b.update(metadata={"k": 1}), "metadata.k"),
        (lambda b: b.update(submit="yes"), "submit"),
        (lambda b: b.pop("customer"), "customer"),
        (lambda b: b.update(title="   "), "title"),
        (lambda b: b.update(title="A" + " " * 200), "title"),  # bounds apply as sent
        (lambda b: b.update(customer="Acme\x00"), "customer"),
    ],
)
def test_bad_input_is_a_clear_400_naming_the_field(api, mutate, param):
    body = request_body(10)
    mutate(body)
    response = api("POST", "/v2/approvals", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    assert response.get_json()["param"] == param


def test_text_is_stored_without_surrounding_blanks(api):
    response = api("POST", "/v2/approvals", json=request_body(10, title="  Acme deal \n"))
    assert response.get_json()["title"] == "Acme deal"


@pytest.mark.parametrize("value", ["12.5", True, None, -1, 100.01])
def test_percentages_are_numbers_from_0_to_100(api, value):
    response = api("PATCH", "/v2/organization", json={"auto_approve_threshold_percent": value})
    assert response.status_code == 400
    assert response.get_json()["param"] == "auto_approve_threshold_percent"


def test_percentages_round_to_hundredths_and_whole_numbers_may_be_floats(api):
    response = api(
        "PATCH",
        "/v2/organization",
        json={"auto_approve_threshold_percent": 7.125, "default_validity_days": 14.0},
    )
    assert response.status_code == 200
    assert response.get_json()["auto_approve_threshold_percent"] == 7.13
    assert response.get_json()["default_validity_days"] == 14


def test_unknown_currency_says_so(api):
    response = api("POST", "/v2/approvals", json=request_body(10, currency="XXY"))
    assert response.get_json()["message"] == (
        "Invalid currency: XXY is not an ISO 4217 currency code."
    )


def test_price_above_list_says_so(api):
    body = request_body(10)
    body["line_items"][0]["unit_price"] = 10_001
    response = api("POST", "/v2/approvals", json=body)
    assert response.get_json() == {
        "error": "parameter_invalid",
        "message": "Line 1: the unit price asked, 100.01 USD, is above the list price of SEAT, "
        "100.00 USD.",
        "param": "line_items[0].unit_price",
    }


def test_price_above_a_typed_list_price_says_so(api):
    body = request_body(10)
    body["line_items"] = [
        {"description": "Workshop", "quantity": 1, "unit_list_price": 10_000, "unit_price": 10_001}
    ]
    response = api("POST", "/v2/approvals", json=body)
    assert response.get_json()["message"] == (
        "Invalid line_items[0].unit_price: unit_price must not be above unit_list_price."
    )


@pytest.mark.parametrize(
    "data, content_type, message",
    [
        ("{not json", "application/json", "The request body is not valid JSON."),
        ("[1, 2]", "application/json", "The request body must be a JSON object."),
        ('"text"', "application/json", "The request body must be a JSON object."),
        (
            "title=x",
            "application/x-www-form-urlencoded",
            "Send the body as JSON, with Content-Type: application/json.",
        ),
    ],
)
def test_malformed_bodies_are_400(api, data, content_type, message):
    response = api("POST", "/v2/approvals", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json() == {"error": "parameter_invalid", "message": message}


def test_oversized_body_is_413_in_the_error_shape(api):
    body = request_body(10, justification="x" * (1024 * 1024))
    response = api("POST", "/v2/approvals", json=body)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_too_large"


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "discounts, auto, levels",
    [
        ((0,), True, []),
        ((5,), True, []),  # at the threshold: approved at once
        ((5.01,), False, ["Manager"]),
        ((15,), False, ["Manager"]),  # the edge of the manager's authority
        ((15.01,), False, ["Manager", "VP"]),
        ((30,), False, ["Manager", "VP"]),
        ((30.01,), False, ["Manager", "VP", "CFO"]),
        ((50,), False, ["Manager", "VP", "CFO"]),
        ((80,), False, ["Manager", "VP", "CFO"]),  # above every level: the highest decides
        ((3, 20, 1), False, ["Manager", "VP"]),  # the largest line discount decides
    ],
)
def test_routing_table(api, world, discounts, auto, levels):
    created = api("POST", "/v2/approvals", json=request_body(*discounts)).get_json()
    preview = api("GET", f"/v2/approvals/{created['id']}/preview").get_json()
    assert preview["object"] == "approval_route"
    assert preview["auto_approve"] is auto
    assert [step["level_name"] for step in preview["steps"]] == levels
    assert preview["required_approval_level"] == (world.levels[levels[-1]] if levels else None)

    submitted = api("POST", f"/v2/approvals/{created['id']}/submit").get_json()
    assert submitted["status"] == ("approved" if auto else "pending")
    assert [step["level_name"] for step in submitted["steps"]] == levels
    assert [step["status"] for step in submitted["steps"]] == (
        ["pending"] + ["waiting"] * (len(levels) - 1) if levels else []
    )
    if auto:
        assert submitted["valid_until"] is not None
        decisions = api("GET", f"/v2/approvals/{created['id']}/decisions").get_json()["data"]
        assert [(d["type"], d["actor"]["type"]) for d in decisions] == [("auto_approve", "system")]


def test_a_levels_amount_cap_sends_larger_totals_higher(api, world):
    manager = f"/v2/approval_levels/{world.levels['Manager']}"
    response = api(
        "PATCH", manager, json={"max_discount_amount": {"amount": 10_000, "currency": "usd"}}
    )
    assert response.status_code == 200
    assert response.get_json()["max_discount_amount"] == {"amount": 10_000, "currency": "USD"}

    def route(*discounts, currency="USD"):
        body = request_body(*discounts, currency=currency)
        approval = api("POST", "/v2/approvals", json=body).get_json()
        preview = api("GET", f"/v2/approvals/{approval['id']}/preview").get_json()
        return [step["level_name"] for step in preview["steps"]]

    assert route(10) == ["Manager"]  # 2,000 of discount: under the cap
    assert route(10, 10, 10, 10, 10) == ["Manager"]  # 10,000: at the cap
    assert route(10, 10, 10, 10, 10, 10) == ["Manager", "VP"]  # 12,000: over it
    assert route(10, currency="EUR") == ["Manager", "VP"]  # a cap in dollars says nothing of euros
    api("PATCH", manager, json={"max_discount_amount": None})  # null removes the cap
    assert route(10, currency="EUR") == ["Manager"]
    assert api("GET", manager).get_json()["max_discount_amount"] is None


def test_routing_is_frozen_at_submit(api, world):
    approval = api("POST", "/v2/approvals", json=request_body(20, submit=True)).get_json()
    assert [s["level_name"] for s in approval["steps"]] == ["Manager", "VP"]
    # The VP's authority drops below 20 %; the routed approval keeps its steps.
    api("PATCH", f"/v2/approval_levels/{world.levels['VP']}", json={"max_discount_percent": 10})
    api("PATCH", f"/v2/approval_levels/{world.levels['Manager']}", json={"name": "Team lead"})
    again = api("GET", f"/v2/approvals/{approval['id']}").get_json()
    assert [s["level_name"] for s in again["steps"]] == ["Manager", "VP"]
    # A new submit routes by the levels as they are now.
    preview = api("POST", "/v2/approvals", json=request_body(20)).get_json()
    route = api("GET", f"/v2/approvals/{preview['id']}/preview").get_json()
    assert [s["level_name"] for s in route["steps"]] == ["Team lead", "VP", "CFO"]


def test_submit_without_line_items_is_refused(api):
    approval = api("POST", "/v2/approvals", json=request_body()).get_json()
    response = api("POST", f"/v2/approvals/{approval['id']}/submit")
    assert response.status_code == 400
    assert response.get_json()["param"] == "line_items"


def test_auto_approve_threshold_and_validity_come_from_the_organization(api):
    response = api(
        "PATCH",
        "/v2/organization",
        json={"auto_approve_threshold_percent": 12.5, "default_validity_days": 7},
    )
    assert response.status_code == 200
    assert response.get_json()["auto_approve_threshold_percent"] == 12.5
    approval = api("POST", "/v2/approvals", json=request_body(12.5, submit=True)).get_json()
    assert approval["status"] == "approved"
    assert approval["decided"] is not None
    days = (
        __import__("datetime").datetime.fromisoformat(approval["valid_until"])
        - __import__("datetime").datetime.fromisoformat(approval["decided"])
    ).days
    assert days == 7


# --- the state machine -------------------------------------------------------------------------


def _in_status(world, status: str) -> str:
    """Make an approval (requested by rep, routed Manager → VP) in ``status``."""
    approval_id = create(world, "rep", 20)
    if status == "draft":
        return approval_id
    if status == "canceled":
        act(world, "rep", "cancel", approval_id)
        return approval_id
    act(world, "rep", "submit", approval_id)
    if status == "pending":
        return approval_id
    if status == "changes_requested":
        act(world, "manager", "request_changes", approval_id, "Shorter term, please.")
    elif status == "rejected":
        act(world, "manager", "reject", approval_id, "No.")
    elif status in ("approved", "expired"):
        act(world, "manager", "approve", approval_id)
        act(world, "vp", "approve", approval_id)
        if status == "expired":
            with world.app.app_context():
                from discountflow.approvals.models import Approval
                from discountflow.database import utcnow

                db.session.get(Approval, approval_id).valid_until = utcnow()
                db.session.commit()
    return approval_id


ACTIONS = {
    # action: (who does it, extra arguments, the status it leads to)
    "submit": ("rep", (), "pending"),
    "approve": ("manager", (), "pending"),  # step 1 of 2: still pending, at the VP
    "reject": ("manager", ("Too deep.",), "rejected"),
    "request_changes": ("manager", ("Change it.",), "changes_requested"),
    "recall": ("rep", (), "draft"),
    "cancel": ("rep", (), "canceled"),
}
ALLOWED = {
    "draft": {"submit", "cancel"},
    "pending": {"approve", "reject", "request_changes", "recall", "cancel"},
    "changes_requested": {"submit", "cancel"},
    "approved": set(),
    "rejected": set(),
    "canceled": set(),
    "expired": set(),
}


@pytest.mark.parametrize("status", list(ALLOWED))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_state_machine(world, status, action):
    approval_id = _in_status(world, status)
    who, args, leads_to = ACTIONS[action]
    if action in ALLOWED[status]:
        assert act(world, who, action, approval_id, *args) == leads_to
    else:
        with pytest.raises(InvalidStateTransition) as refused:
            act(world, who, action, approval_id, *args)
        assert str(refused.value).endswith(f"whose status is {status}.")


@pytest.mark.parametrize("status", list(ALLOWED))
def test_only_drafts_and_changes_requested_are_editable(world, status):
    approval_id = _in_status(world, status)
    with world.app.app_context():
        change = ApprovalUpdate(title="New title")
        if status in ("draft", "changes_requested"):
            view = services.update_approval(world.actor("rep"), approval_id, change)
            assert view.approval.title == "New title"
        else:
            with pytest.raises(InvalidStateTransition):
                services.update_approval(world.actor("rep"), approval_id, change)


@pytest.mark.parametrize("status", list(ALLOWED))
def test_only_drafts_can_be_deleted(world, status):
    approval_id = _in_status(world, status)
    with world.app.app_context():
        if status == "draft":
            services.delete_approval(world.actor("rep"), approval_id)
            with pytest.raises(NotFound):
                queries.get_approval(world.actor("rep"), approval_id)
        else:
            with pytest.raises(InvalidStateTransition):
                services.delete_approval(world.actor("rep"), approval_id)


def test_a_refused_transition_is_409_in_the_error_shape(api):
    approval = api("POST", "/v2/approvals", json=request_body(3, submit=True)).get_json()
    response = api("POST", f"/v2/approvals/{approval['id']}/recall")
    assert response.status_code == 409
    assert response.get_json() == {
        "error": "invalid_state_transition",
        "message": "You cannot recall an approval whose status is approved.",
    }


def test_full_journey_with_changes_and_resubmit(world):
    approval_id = create(world, "rep", 20)
    assert act(world, "rep", "submit", approval_id) == "pending"
    assert act(world, "manager", "approve", approval_id) == "pending"
    assert act(world, "vp", "request_changes", approval_id, "3-year term") == "changes_requested"
    with world.app.app_context():
        data = ApprovalUpdate.model_validate({"line_items": request_body(12)["line_items"]})
        services.update_approval(world.actor("rep"), approval_id, data)
    assert act(world, "rep", "submit", approval_id) == "pending"  # a new round: Manager only
    assert act(world, "manager2", "approve", approval_id) == "approved"
    with world.app.app_context():
        view = queries.get_approval(world.actor("rep"), approval_id)
        assert [(s.level_name, s.status) for s in view.steps] == [("Manager", "approved")]
        decisions = db.session.execute(
            select(Decision.type).where(Decision.approval_id == approval_id)
        ).scalars()
        assert sorted(decisions) == ["approve", "approve", "request_changes"]
        events = db.session.execute(
            select(Event.type)
            .where(Event.approval_id == approval_id)
            .order_by(Event.created_at, Event.id)
        ).scalars()
        assert list(events) == [
            "approval.created",
            "approval.submitted",
            "approval.step_approved",
            "approval.changes_requested",
            "approval.updated",
            "approval.submitted",
            "approval.step_approved",
            "approval.approved",
        ]


def test_any_rejection_rejects_the_whole_approval(world):
    approval_id = create(world, "rep", 40, submit=True)  # Manager → VP → CFO
    act(world, "manager", "approve", approval_id)
    assert act(world, "vp", "reject", approval_id, "Too deep.") == "rejected"
    with world.app.app_context():
        view = queries.get_approval(world.actor("rep"), approval_id)
        assert [s.status for s in view.steps] == ["approved", "rejected", "canceled"]
        assert view.approval.awaiting_level_id is None


@pytest.mark.parametrize("action", ["reject", "request_changes"])
def test_reject_and_request_changes_need_a_comment(api, world, action):
    approval_id = create(world, "rep", 10, submit=True)
    for body in ({}, {"comment": ""}, {"comment": "   "}):
        response = api("POST", f"/v2/approvals/{approval_id}/{action}", json=body)
        assert response.status_code == 400
        assert response.get_json()["param"] == "comment"


# --- who may do what ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, outcome",
    [
        ("manager", "pending"),  # eligible at the active step
        ("manager2", "pending"),  # any one eligible approver decides
        ("rep", PermissionDenied),  # the requester
        ("vp", PermissionDenied),  # an approver, at the wrong step
        ("admin", PermissionDenied),  # no approval level
        ("owner", PermissionDenied),
        ("rep2", NotFound),  # a member who cannot see someone else's approval
    ],
)
def test_who_may_decide(world, who, outcome):
    approval_id = create(world, "rep", 20, submit=True)
    if isinstance(outcome, str):
        assert act(world, who, "approve", approval_id) == outcome
    else:
        with pytest.raises(outcome):
            act(world, who, "approve", approval_id)


def test_an_approver_never_decides_their_own_request(world):
    approval_id = create(world, "manager", 10, submit=True)
    with pytest.raises(PermissionDenied, match="requester cannot decide"):
        act(world, "manager", "approve", approval_id)
    assert act(world, "manager2", "approve", approval_id) == "approved"


def test_api_key_decides_with_the_owners_authority(api, world, client):
    approval_id = create(world, "rep", 10, submit=True)
    # The owner holds no approval level, so neither does the key.
    response = api("POST", f"/v2/approvals/{approval_id}/approve", json={})
    assert response.status_code == 403
    assert response.get_json()["error"] == "permission_denied"
    # Give the owner the manager's level: now the key may decide, recorded as the key.
    set_level(world, world.people["owner"], world.levels["Manager"])
    response = api("POST", f"/v2/approvals/{approval_id}/approve", json={"comment": "ok"})
    assert response.status_code == 200
    assert response.get_json()["status"] == "approved"
    decision = api("GET", f"/v2/approvals/{approval_id}/decisions").get_json()["data"][0]
    key_id = client.get("/v2/me", headers=bearer(world.key)).get_json()["key_id"]
    assert decision["actor"] == {
        "type": "api_key",
        "user": world.people["owner"],
        "api_key": key_id,
        "surface": "api",
    }


def test_read_only_key_reads_but_never_writes(client, world):
    approval_id = create(world, "rep", 10, submit=True)
    headers = bearer(world.read_only_key)
    for path in (
        "/v2/approvals",
        f"/v2/approvals/{approval_id}",
        f"/v2/approvals/{approval_id}/preview",
        f"/v2/approvals/{approval_id}/decisions",
        f"/v2/approvals/{approval_id}/comments",
        f"/v2/approvals/{approval_id}/events",
        "/v2/events",
        "/v2/approval_levels",
        "/v2/members",
        "/v2/organization",
    ):
        assert client.get(path, headers=headers).status_code == 200, path
    for method, path in (
        ("POST", "/v2/approvals"),
        ("PATCH", f"/v2/approvals/{approval_id}"),
        ("DELETE", f"/v2/approvals/{approval_id}"),
        ("POST", f"/v2/approvals/{approval_id}/approve"),
        ("POST", f"/v2/approvals/{approval_id}/cancel"),
        ("POST", f"/v2/approvals/{approval_id}/comments"),
        ("POST", "/v2/approval_levels"),
        ("PATCH", "/v2/organization"),
    ):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 403, (method, path)
        assert response.get_json()["error"] == "read_only_key"


def test_another_organizations_ids_are_404(app, client, world):
    other = build_world(app, "globex")
    approval_id = create(world, "rep", 10)
    headers = bearer(other.key)
    for method, path in (
        ("GET", f"/v2/approvals/{approval_id}"),
        ("PATCH", f"/v2/approvals/{approval_id}"),
        ("DELETE", f"/v2/approvals/{approval_id}"),
        ("POST", f"/v2/approvals/{approval_id}/submit"),
        ("GET", f"/v2/approvals/{approval_id}/events"),
        ("POST", f"/v2/approvals/{approval_id}/comments"),
        ("GET", f"/v2/approval_levels/{world.levels['VP']}"),
        ("DELETE", f"/v2/approval_levels/{world.levels['VP']}"),
        ("GET", f"/v2/members/{world.people['rep']}"),
    ):
        body = {"body": "hi"} if path.endswith("comments") else {}
        response = client.open(path, method=method, headers=headers, json=body)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"] == "resource_missing"
    listed = client.get("/v2/approvals?limit=100", headers=headers).get_json()["data"]
    assert approval_id not in {a["id"] for a in listed}
    # A cursor from another organization is not a way in either.
    response = client.get(f"/v2/approvals?starting_after={approval_id}", headers=headers)
    assert response.status_code == 400
    assert response.get_json()["param"] == "starting_after"


def test_members_see_their_own_approvals_approvers_and_admins_see_all(world):
    mine = create(world, "rep", 10)
    theirs = create(world, "rep2", 10)
    with world.app.app_context():
        from discountflow.approvals.schemas import ApprovalListQuery
        from discountflow.pagination import PageRequest

        def visible(who):
            views, _ = queries.list_approvals(
                world.actor(who), ApprovalListQuery(), PageRequest(100)
            )
            return {view.approval.id for view in views}

        assert visible("rep") == {mine}
        assert visible("rep2") == {theirs}
        assert visible("manager") == visible("admin") == visible("owner") == {mine, theirs}


def test_editing_someone_elses_request(world):
    approval_id = create(world, "rep", 10)
    with world.app.app_context():
        change = ApprovalUpdate(title="Mine now")
        with pytest.raises(NotFound):  # a plain member cannot even see it
            services.update_approval(world.actor("rep2"), approval_id, change)
        with pytest.raises(PermissionDenied):  # an approver sees it, but it is not theirs
            services.update_approval(world.actor("manager"), approval_id, change)
        assert services.update_approval(world.actor("admin"), approval_id, change)


@pytest.mark.parametrize("who", ["rep", "manager"])
def test_only_owner_and_admins_manage_levels_and_settings(world, who):
    from discountflow.approvals.schemas import LevelCreate
    from discountflow.audit.services import list_events
    from discountflow.organizations.schemas import OrganizationUpdate
    from discountflow.organizations.services import update_organization
    from discountflow.pagination import PageRequest

    with world.app.app_context():
        actor = world.actor(who)
        with pytest.raises(PermissionDenied):
            levels.create_level(actor, LevelCreate(name="X", rank=9, max_discount_percent=60))
        with pytest.raises(PermissionDenied):
            levels.delete_level(actor, world.levels["CFO"])
        with pytest.raises(PermissionDenied):
            update_organization(actor, OrganizationUpdate(default_validity_days=3))
        with pytest.raises(PermissionDenied):
            list_events(actor, PageRequest())


def test_every_write_records_the_key_as_the_actor(api, client, world):
    key_id = client.get("/v2/me", headers=bearer(world.key)).get_json()["key_id"]
    approval = api("POST", "/v2/approvals", json=request_body(10)).get_json()
    api("POST", f"/v2/approvals/{approval['id']}/comments", json={"body": "Looks fine"})
    api("POST", f"/v2/approvals/{approval['id']}/submit")
    events = api("GET", f"/v2/approvals/{approval['id']}/events").get_json()["data"]
    assert [e["type"] for e in events] == [
        "approval.submitted",
        "comment.created",
        "approval.created",
    ]
    for event in events:
        assert event["actor"] == {
            "type": "api_key",
            "user": world.people["owner"],
            "api_key": key_id,
            "surface": "api",
        }
    comment = api("GET", f"/v2/approvals/{approval['id']}/comments").get_json()["data"][0]
    assert comment["body"] == "Looks fine"
    assert comment["actor"]["api_key"] == key_id


# --- approval levels ---------------------------------------------------------------------------


def test_level_referenced_by_an_open_step_cannot_be_deleted(api, world):
    approval_id = create(world, "rep", 20, submit=True)  # waits on Manager, then VP
    response = api("DELETE", f"/v2/approval_levels/{world.levels['VP']}")
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"
    act(world, "rep", "recall", approval_id)
    response = api("DELETE", f"/v2/approval_levels/{world.levels['VP']}")
    assert response.status_code == 200
    assert response.get_json() == {
        "object": "approval_level",
        "id": world.levels["VP"],
        "deleted": True,
    }
    member = api("GET", f"/v2/members/{world.people['vp']}").get_json()
    assert member["approval_level"] is None


def test_level_ranks_are_unique(api):
    response = api(
        "POST", "/v2/approval_levels", json={"name": "Dup", "rank": 1, "max_discount_percent": 5}
    )
    assert response.status_code == 409
    assert response.get_json()["param"] == "rank"


# --- expiry ------------------------------------------------------------------------------------


@pytest.fixture
def later(monkeypatch):
    """Move the approvals' clock forward."""
    from datetime import timedelta

    from discountflow.database import utcnow

    offset = [timedelta(0)]

    def now():
        return utcnow() + offset[0]

    monkeypatch.setattr("discountflow.approvals.services.utcnow", now)
    monkeypatch.setattr("discountflow.approvals.queries.utcnow", now)

    def advance(**delta):
        offset[0] += timedelta(**delta)

    return advance


def test_approved_becomes_expired_after_valid_until(api, world, later):
    approval = api("POST", "/v2/approvals", json=request_body(3, submit=True)).get_json()
    assert approval["status"] == "approved"
    later(days=29)
    assert api("GET", f"/v2/approvals/{approval['id']}").get_json()["status"] == "approved"
    later(days=1, seconds=1)
    assert api("GET", f"/v2/approvals/{approval['id']}").get_json()["status"] == "expired"
    expired = api("GET", "/v2/approvals?status=expired").get_json()["data"]
    assert [a["id"] for a in expired] == [approval["id"]]
    assert api("GET", "/v2/approvals?status=approved").get_json()["data"] == []
    response = api("POST", f"/v2/approvals/{approval['id']}/cancel", json={})
    assert response.status_code == 409
    assert response.get_json()["message"].endswith("whose status is expired.")
    # The sweep makes it permanent and writes the event.
    with world.app.app_context():
        assert services.expire_approvals(services.utcnow()) == 1
        assert services.expire_approvals(services.utcnow()) == 0
    events = api("GET", f"/v2/approvals/{approval['id']}/events").get_json()["data"]
    assert events[0]["type"] == "approval.expired"
    assert events[0]["actor"]["type"] == "system"


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(5))
def test_two_approvers_deciding_at_once_produce_one_decision(tmp_path, attempt):
    app = make_app(tmp_path)
    world = build_world(app)
    approval_id = create(world, "rep", 10, submit=True)  # one step: Manager
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def decide(who: str, action: str, *args) -> None:
        with app.app_context():
            actor = world.actor(who)
            barrier.wait()
            try:
                outcomes[who] = getattr(services, action)(actor, approval_id, *args).status
            except Exception as error:  # noqa: BLE001 - the outcome is what we check
                outcomes[who] = error
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=decide, args=("manager", "approve")),
        threading.Thread(target=decide, args=("manager2", "reject", "No")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [who for who, outcome in outcomes.items() if isinstance(outcome, str)]
    losers = [outcome for outcome in outcomes.values() if not isinstance(outcome, str)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1 and isinstance(losers[0], InvalidStateTransition), outcomes
    with app.app_context():
        count = db.session.execute(
            select(func.count()).select_from(Decision).where(Decision.approval_id == approval_id)
        ).scalar_one()
        assert count == 1
        status = queries.get_approval(world.actor("rep"), approval_id).status
        assert status == {"manager": "approved", "manager2": "rejected"}[winners[0]]

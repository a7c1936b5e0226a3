"""The dashboard's approvals: inbox, lists, an approval's page, the request form and actions,
and the owner's and admins' settings — every rule from the same services as the API."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from discountflow.approvals.models import Approval, ApprovalLevel, Decision
from discountflow.extensions import db
from discountflow.organizations.models import Organization, User

from .approvals_world import act, create
from .dashboard import nav_links, post_form, sign_in


def _as(app, who: str):
    client = app.test_client()
    assert sign_in(client, f"{who}@acme.example").status_code == 303
    return client


def _row(app, model, **where):
    with app.app_context():
        return db.session.execute(select(model).filter_by(**where)).scalar_one()


def _count(app, model, **where) -> int:
    with app.app_context():
        statement = select(func.count()).select_from(model).filter_by(**where)
        return db.session.execute(statement).scalar_one()


def _request_form(**overrides) -> dict:
    data = {
        "title": "Globex renewal",
        "customer": "Globex",
        "deal_reference": "CRM-1",
        "currency": "USD",
        "justification": "Competitive",
        "line_items-0-sku": "LICENSE",  # listed at 1,200.00 USD in the price book
        "line_items-0-description": "Seats",
        "line_items-0-quantity": "10",
        "line_items-0-unit_list_price": "",  # custom lines only
        "line_items-0-unit_price": "1080",  # 10 % off: the Manager level
        "line_items-1-sku": "",
        "line_items-1-description": "",
        "line_items-1-quantity": "",
        "line_items-1-unit_list_price": "",
        "line_items-1-unit_price": "",
        "action": "submit",
    }
    data.update(overrides)
    return data


def test_a_member_submits_an_approver_approves_the_requester_sees_it(app, world):
    rep = _as(app, "rep")
    response = post_form(rep, "/approvals/new", _request_form())
    assert response.status_code == 303
    approval_id = response.headers["Location"].rsplit("/", 1)[1]
    row = _row(app, Approval, id=approval_id)
    assert (row.status, row.list_amount, row.amount) == ("pending", 1_200_000, 1_080_000)
    assert row.requested_by_id == world.people["rep"]
    page = rep.get(f"/approvals/{approval_id}")
    assert "12,000.00 USD" in page.text and "10,800.00 USD" in page.text and "10 %" in page.text
    assert ">Approve<" not in page.text  # the requester never decides

    manager = _as(app, "manager")
    inbox = manager.get("/inbox")
    assert approval_id in inbox.text and "Globex renewal" in inbox.text
    assert ">Approve<" in manager.get(f"/approvals/{approval_id}").text
    decided = post_form(manager, f"/approvals/{approval_id}/actions/approve", {"comment": ""})
    assert decided.status_code == 303
    assert _row(app, Approval, id=approval_id).status == "approved"
    assert approval_id not in manager.get("/inbox").text

    page = rep.get(f"/approvals/{approval_id}")
    assert 'data-testid="status">Approved<' in page.text
    assert "a month from now" in page.text  # valid for 30 days
    assert "Max" in page.text or "manager@acme.example" in page.text  # who decided
    event = _row(app, Decision, approval_id=approval_id)
    assert (event.actor_user_id, event.surface, event.api_key_id) == (
        world.people["manager"],
        "dashboard",
        None,
    )


def test_a_draft_is_saved_edited_and_resubmitted_after_changes(app, world):
    rep = _as(app, "rep")
    response = post_form(rep, "/approvals/new", _request_form(action="draft"))
    approval_id = response.headers["Location"].rsplit("/", 1)[1]
    assert _row(app, Approval, id=approval_id).status == "draft"
    edit = rep.get(f"/approvals/{approval_id}/edit")
    assert edit.status_code == 200
    assert '<option value="LICENSE" selected>' in edit.text
    assert "1,200.00 USD</output>" in edit.text  # the book's price, read-only
    assert 'value="1080.00"' in edit.text
    post_form(rep, f"/approvals/{approval_id}/actions/submit")
    assert _row(app, Approval, id=approval_id).status == "pending"
    manager = _as(app, "manager")
    refused = post_form(manager, f"/approvals/{approval_id}/actions/request_changes")
    assert refused.status_code == 400 and "comment" in refused.text  # a comment is required
    assert _row(app, Approval, id=approval_id).status == "pending"
    post_form(
        manager,
        f"/approvals/{approval_id}/actions/request_changes",
        {"comment": "Shorter term, please"},
    )
    assert _row(app, Approval, id=approval_id).status == "changes_requested"
    assert "Shorter term, please" in rep.get(f"/approvals/{approval_id}").text
    resubmitted = post_form(
        rep,
        f"/approvals/{approval_id}/edit",
        _request_form(**{"line_items-0-unit_price": "1,100.00", "title": "Shorter"}),
    )
    assert resubmitted.status_code == 303
    row = _row(app, Approval, id=approval_id)
    assert (row.status, row.title, row.amount, row.round) == ("pending", "Shorter", 1_100_000, 2)


def test_recall_and_cancel(app, world):
    pending = create(world, "rep", 10, submit=True)
    rep = _as(app, "rep")
    assert ">Recall to draft<" in rep.get(f"/approvals/{pending}").text
    post_form(rep, f"/approvals/{pending}/actions/recall")
    assert _row(app, Approval, id=pending).status == "draft"
    post_form(rep, f"/approvals/{pending}/actions/cancel")
    assert _row(app, Approval, id=pending).status == "canceled"
    page = rep.get(f"/approvals/{pending}")
    assert ">Cancel request<" not in page.text and ">Edit<" not in page.text


@pytest.mark.parametrize(
    ("who", "action"),
    [
        ("rep", "approve"),  # the requester
        ("vp", "approve"),  # an approver, but not at the active step
        ("rep2", "approve"),  # a plain member
        ("manager", "recall"),  # not the requester, not an admin
        ("rep2", "cancel"),
    ],
)
def test_a_forged_action_is_refused_by_the_service(app, world, who, action):
    pending = create(world, "rep", 10, submit=True)
    client = _as(app, who)
    page = client.get(f"/approvals/{pending}")
    label = {"approve": ">Approve<", "recall": ">Recall to draft<", "cancel": ">Cancel request<"}
    if page.status_code == 200:
        assert label[action] not in page.text  # the button is not shown…
    response = post_form(client, f"/approvals/{pending}/actions/{action}", {"comment": "x"})
    assert response.status_code in (403, 404)  # …and the request is refused anyway
    assert _row(app, Approval, id=pending).status == "pending"
    assert _count(app, Decision, approval_id=pending) == 0


def test_members_see_their_own_approvals_only(app, world):
    mine = create(world, "rep", 10, submit=True)
    theirs = create(world, "rep2", 10, submit=True)
    rep = _as(app, "rep")
    listing = rep.get("/approvals")
    assert mine in listing.text and theirs not in listing.text
    assert rep.get(f"/approvals/{theirs}").status_code == 404
    everything = _as(app, "manager").get("/approvals")
    assert mine in everything.text and theirs in everything.text


def test_lists_filter_by_status_and_customer_and_paginate(app, world):
    ids = [create(world, "rep", 10, customer=f"Customer {n}") for n in range(25)]
    submitted = create(world, "rep", 10, submit=True, customer="Initech")
    owner = _as(app, "owner")
    page = owner.get("/approvals?status=pending")
    assert submitted in page.text and ids[0] not in page.text
    page = owner.get("/approvals?customer=customer 2")
    found = set(re.findall(r"/approvals/(apr_\w+)", page.text))
    assert found == {ids[2], *ids[20:25]}
    first = owner.get("/approvals?status=draft")
    assert first.text.count('<td><a href="/approvals/apr_') == 20
    older = re.search(r'href="(/approvals\?starting_after=[^"]+)"', first.text).group(1)
    second = owner.get(older.replace("&amp;", "&"))
    on_second = set(re.findall(r"/approvals/(apr_\w+)", second.text))
    on_first = set(re.findall(r"/approvals/(apr_\w+)", first.text))
    assert on_first | on_second == set(ids) and not on_first & on_second
    assert "← Newer" in second.text
    assert owner.get("/approvals?status=nonsense").status_code == 400


def test_bad_request_forms_get_a_clear_message_and_save_nothing(app, world):
    rep = _as(app, "rep")
    before = _count(app, Approval)
    cases = {
        "line_items-0-unit_price": ("1300", "above"),
        "line_items-0-unit_list_price": ("12.345", "at most 2 decimals"),
        "line_items-0-sku": ("NOPE", "the price book has no product with SKU"),
        "currency": ("XXX", "Not a valid choice"),
    }
    for field, (value, message) in cases.items():
        response = post_form(rep, "/approvals/new", _request_form(**{field: value}))
        assert response.status_code == 400, field
        assert message in response.text, field
    jpy = post_form(
        rep, "/approvals/new", _request_form(currency="JPY", **{"line_items-0-unit_price": "1.5"})
    )
    assert jpy.status_code == 400 and "at most 0 decimals" in jpy.text
    assert _count(app, Approval) == before


def _lines(*numbers: int) -> dict:
    """Form fields of a line of 10 seats at 1,080.00 USD for each (0-based) line number."""
    fields = {}
    for number in numbers:
        fields |= {
            f"line_items-{number}-sku": "LICENSE",
            f"line_items-{number}-description": f"Seats {number}",
            f"line_items-{number}-quantity": "10",
            f"line_items-{number}-unit_list_price": "",
            f"line_items-{number}-unit_price": "1080",
        }
    return fields


def _edit_form(*numbers: int, **overrides) -> dict:
    data = {key: value for key, value in _request_form().items() if "line_items-" not in key}
    return {**data, **_lines(*numbers), "action": "draft", "title": "Edited", **overrides}


@pytest.mark.parametrize(
    ("numbers", "said"),
    [
        (range(120), "The form has 120 lines; a request holds at most 100 line items."),
        (range(101), "The form has 101 lines; a request holds at most 100 line items."),
        (
            (0, 1, 5000),
            "The form has a line numbered 5001; a request holds at most 100 line items, "
            "numbered 1 to 100.",
        ),
        (
            (100,),
            "The form has a line numbered 101; a request holds at most 100 line items, "
            "numbered 1 to 100.",
        ),
    ],
)
def test_lines_past_the_limit_are_a_form_error_and_nothing_is_saved(app, world, numbers, said):
    """Found from outside: a 120-line edit answered 303 and saved the first 100 lines, and a
    line numbered 5000 was saved like any other. Past the limit is an error naming it."""
    from discountflow.approvals.models import LineItem

    rep = _as(app, "rep")
    created = post_form(rep, "/approvals/new", _request_form(action="draft"))
    approval_id = created.headers["Location"].rsplit("/", 1)[1]
    lines_before = _count(app, LineItem, approval_id=approval_id)
    approvals_before = _count(app, Approval)

    edited = post_form(rep, f"/approvals/{approval_id}/edit", _edit_form(*numbers))

    assert edited.status_code == 400
    assert f"line items: {said}" in edited.text
    row = _row(app, Approval, id=approval_id)
    assert (row.title, row.status) == ("Globex renewal", "draft")
    assert _count(app, LineItem, approval_id=approval_id) == lines_before == 1
    new = post_form(rep, "/approvals/new", _edit_form(*numbers, action="submit"))
    assert new.status_code == 400 and f"line items: {said}" in new.text
    assert _count(app, Approval) == approvals_before
    # Adding a line, or the live preview, says the same rather than show 100 of them.
    added = post_form(
        rep, f"/approvals/{approval_id}/edit", _edit_form(*numbers, action="add_line")
    )
    assert added.status_code == 400 and said in added.text
    preview = post_form(rep, "/approvals/preview", _edit_form(*numbers))
    assert preview.status_code == 200 and said in preview.text


def test_a_form_of_exactly_100_lines_is_saved(app, world):
    from discountflow.approvals.models import LineItem

    rep = _as(app, "rep")
    created = post_form(rep, "/approvals/new", _request_form(action="draft"))
    approval_id = created.headers["Location"].rsplit("/", 1)[1]
    edited = post_form(rep, f"/approvals/{approval_id}/edit", _edit_form(*range(100)))
    assert edited.status_code == 303
    assert _count(app, LineItem, approval_id=approval_id) == 100
    assert _row(app, Approval, id=approval_id).title == "Edited"


def test_a_line_number_that_is_no_number_is_a_form_error(app, world):
    """``²`` passes for a digit, yet is no number: WTForms' own reading of it was a 500."""
    rep = _as(app, "rep")
    form = _request_form(**{"line_items-²-quantity": "1"})
    response = post_form(rep, "/approvals/new", form)
    assert response.status_code == 400
    assert "line items: The form has a line whose number cannot be read." in response.text


def test_the_live_preview_shows_the_route(app, world):
    rep = _as(app, "rep")
    preview = post_form(rep, "/approvals/preview", _request_form())
    assert preview.status_code == 200
    assert "Manager is the lowest level that covers it" in preview.text
    assert "1,200.00 USD <span" in preview.text and "(price book)" in preview.text
    deep = post_form(rep, "/approvals/preview", _request_form(**{"line_items-0-unit_price": "900"}))
    assert "<li>Manager" in deep.text and "<li>VP" in deep.text and "<li>CFO" not in deep.text
    auto = post_form(
        rep, "/approvals/preview", _request_form(**{"line_items-0-unit_price": "1180"})
    )
    assert "approved at once" in auto.text
    typed = post_form(
        rep, "/approvals/preview", _request_form(**{"line_items-0-unit_list_price": "1,190.00"})
    )
    assert "the list price of LICENSE comes from the price book" in typed.text
    assert _count(app, Approval) == 0


def test_the_approval_page_shows_history_and_comments(app, world):
    pending = create(world, "rep", 20, submit=True)
    act(world, "manager", "approve", pending)
    rep = _as(app, "rep")
    post_form(rep, f"/approvals/{pending}/comments", {"comment": "Thanks <b>all</b>"})
    page = rep.get(f"/approvals/{pending}")
    assert "Thanks &lt;b&gt;all&lt;/b&gt;" in page.text  # escaped
    for text in ("approval.created", "approval.submitted", "Manager", "VP", "Decisions"):
        assert text in page.text
    assert re.search(r'<time datetime="[^"]+Z" title="[^"]+ UTC">', page.text)


# --- settings ----------------------------------------------------------------------------------


def test_settings_are_for_the_owner_and_admins_but_my_notifications(app, world):
    for who in ("rep", "manager"):
        client = _as(app, who)
        assert "Settings" in nav_links(client.get("/inbox"))  # for "My notifications" only
        mine = client.get("/settings", follow_redirects=True)
        assert mine.request.path == "/settings/notifications"
        assert nav_links(mine, "Settings") == ["Notifications"]
        assert "Chat and push" not in mine.get_data(as_text=True)
        for path in ("/settings/approval-levels", "/settings/members", "/settings/organization"):
            assert client.get(path).status_code == 403, (who, path)
        forged = post_form(
            client,
            "/settings/approval-levels",
            {"name": "Mine", "rank": "9", "max_discount_percent": "99"},
        )
        assert forged.status_code == 403
    admin = _as(app, "admin")
    assert "Settings" in nav_links(admin.get("/inbox"))
    settings = admin.get("/settings", follow_redirects=True)
    assert nav_links(settings, "Settings") == [
        "General",
        "Members",
        "Approval levels",
        "Products",
        "Webhooks",
        "Notifications",
        "Audit",
    ]


def test_admins_manage_levels(app, world):
    admin = _as(app, "admin")
    created = post_form(
        admin,
        "/settings/approval-levels",
        {
            "name": "Board",
            "rank": "4",
            "max_discount_percent": "80",
            "cap_amount": "50,000",
            "cap_currency": "EUR",
        },
    )
    assert created.status_code == 303
    level = _row(app, ApprovalLevel, name="Board")
    assert (level.max_discount_bps, level.max_discount_amount, level.max_discount_currency) == (
        8000,
        5_000_000,
        "EUR",
    )
    post_form(
        admin,
        f"/settings/approval-levels/{level.id}",
        {"name": "Board", "rank": "4", "max_discount_percent": "85", "cap_amount": ""},
    )
    assert _row(app, ApprovalLevel, id=level.id).max_discount_amount is None
    pending = create(world, "rep", 10, submit=True)
    busy = post_form(admin, f"/settings/approval-levels/{world.levels['Manager']}/delete")
    assert busy.status_code == 409 and pending
    post_form(admin, f"/settings/approval-levels/{level.id}/delete")
    assert _count(app, ApprovalLevel, id=level.id) == 0


def test_admins_manage_members(app, world):
    admin = _as(app, "admin")
    added = post_form(
        admin,
        "/settings/members",
        {
            "email": "new@acme.example",
            "name": "Nina New",
            "role": "member",
            "password": "a long enough password",
        },
    )
    assert added.status_code == 303
    member = _row(app, User, email="new@acme.example")
    post_form(admin, f"/settings/members/{member.id}/role", {"role": "admin"})
    post_form(admin, f"/settings/members/{member.id}/level", {"approval_level": world.levels["VP"]})
    member = _row(app, User, id=member.id)
    assert (member.role, member.approval_level_id) == ("admin", world.levels["VP"])
    owner_change = post_form(
        admin, f"/settings/members/{world.people['owner']}/role", {"role": "member"}
    )
    assert owner_change.status_code == 403
    assert _row(app, User, id=world.people["owner"]).role == "owner"
    short = post_form(
        admin,
        "/settings/members",
        {"email": "x@acme.example", "password": "short", "role": "member"},
    )
    assert short.status_code == 400 and "at least 8 characters" in short.text
    assert (
        sign_in(app.test_client(), "new@acme.example", "a long enough password").status_code == 303
    )


def test_admins_change_the_organization_settings(app, world):
    admin = _as(app, "admin")
    page = admin.get("/settings/organization")
    assert 'value="5"' in page.text and 'value="30"' in page.text
    saved = post_form(
        admin,
        "/settings/organization",
        {
            "name": "Acme",
            "auto_approve_threshold_percent": "7.5",
            "default_validity_days": "60",
            "reminder_interval_hours": "8",
            "custom_line_items": "forbidden",
        },
    )
    assert saved.status_code == 303
    organization = _row(app, Organization, id=world.organization_id)
    assert (
        organization.auto_approve_threshold_bps,
        organization.default_validity_days,
        organization.custom_line_items,
    ) == (750, 60, "forbidden")
    bad = post_form(
        admin,
        "/settings/organization",
        {
            "name": "Acme",
            "auto_approve_threshold_percent": "150",
            "default_validity_days": "60",
            "reminder_interval_hours": "8",
            "custom_line_items": "allowed",
        },
    )
    assert bad.status_code == 400

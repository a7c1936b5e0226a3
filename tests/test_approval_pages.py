"""Pages of approvals rendered by SQLite (approvals/pages.py) match the Python shaping exactly."""

from __future__ import annotations

import pytest

from discountflow.approvals import pages, queries, services
from discountflow.approvals.schemas import ApprovalListQuery, ApprovalOut, ApprovalUpdate
from discountflow.pagination import PageRequest

from .approvals_world import act, create, request_body


@pytest.fixture
def approvals(world, api):
    """Approvals in every status, over several rounds, with awkward text and metadata."""
    awkward = request_body(
        12.345,
        7,
        33.33,
        0,
        title='Quotes "here", back\\slash, tab\there, emoji 🎉, accents éà',
        customer="Ünïcode & <Co>",
        metadata={"crm": "4711", "note": 'a "quoted" value', "empty": ""},
    )
    ids = [api("POST", "/v2/approvals", json=awkward).get_json()["id"]]
    ids.append(create(world, "rep", 20, submit=True))  # pending, two steps
    resubmitted = create(world, "rep", 20, 3, 18, submit=True)
    act(world, "manager", "approve", resubmitted)
    act(world, "vp", "request_changes", resubmitted, "Shorter term")
    with world.app.app_context():
        lines = request_body(14, 2, 9, 1)["line_items"][::-1]  # replaced whole, new order
        services.update_approval(
            world.actor("rep"), resubmitted, ApprovalUpdate.model_validate({"line_items": lines})
        )
    act(world, "rep", "submit", resubmitted)  # a second round: Manager only
    ids.append(resubmitted)
    ids.append(create(world, "rep", 3, submit=True))  # auto-approved
    rejected = create(world, "rep", 40, submit=True)
    act(world, "manager", "reject", rejected, "No")
    ids.append(rejected)
    canceled = create(world, "rep2", 10)
    act(world, "rep2", "cancel", canceled)
    ids.append(canceled)
    ids.append(create(world, "rep", 0, 100, submit=True))  # free item: 100 % off
    mixed = request_body(5)  # a product's line and a custom line (no product, typed price)
    mixed["line_items"].append(
        {"description": "Workshop", "quantity": 1, "unit_list_price": 999, "unit_price": 500}
    )
    ids.append(api("POST", "/v2/approvals", json=mixed).get_json()["id"])
    return ids


def _python_shaped(world, query: ApprovalListQuery) -> list[dict]:
    with world.app.app_context():
        views, _ = queries.list_approvals(world.actor("owner"), query, PageRequest(100))
        return [ApprovalOut.of(view).model_dump(mode="json") for view in views]


def test_sqlite_pages_match_the_python_shaping(api, world, approvals):
    response = api("GET", "/v2/approvals?limit=100")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    page = response.get_json()
    assert page["has_more"] is False
    assert [a["id"] for a in page["data"]] == approvals[::-1]
    assert page["data"] == _python_shaped(world, ApprovalListQuery(limit=100))
    for approval in page["data"]:  # and each object as GET /v2/approvals/{id} shows it
        assert api("GET", f"/v2/approvals/{approval['id']}").get_json() == approval
    resubmitted = next(a for a in page["data"] if a["id"] == approvals[2])
    assert [item["description"] for item in resubmitted["line_items"]] == [
        "Line 4",
        "Line 3",
        "Line 2",
        "Line 1",
    ]
    assert [(s["level_name"], s["status"]) for s in resubmitted["steps"]] == [
        ("Manager", "pending")
    ]


def test_sqlite_pages_show_expiry_and_paginate(api, world, approvals, monkeypatch):
    from datetime import timedelta

    from discountflow.database import utcnow

    monkeypatch.setattr(
        "discountflow.approvals.queries.utcnow", lambda: utcnow() + timedelta(days=31)
    )
    page = api("GET", "/v2/approvals?limit=100").get_json()
    assert "expired" in {a["status"] for a in page["data"]}
    assert page["data"] == _python_shaped(world, ApprovalListQuery(limit=100))
    first = api("GET", "/v2/approvals?limit=3").get_json()
    assert first["has_more"] is True
    rest = api("GET", f"/v2/approvals?limit=100&starting_after={first['data'][-1]['id']}")
    assert [a["id"] for a in first["data"] + rest.get_json()["data"]] == approvals[::-1]


@pytest.mark.parametrize("constant", ["it's", "a b", "x;--", "", "\u00e9t\u00e9'"])
def test_only_plain_constants_are_written_into_the_page_statement(constant):
    """The page's statement writes its own keys and formats into its text (not bound on every
    execution): anything that is not a plain word is refused, never quoted into SQL."""
    with pytest.raises(ValueError, match="not a plain constant"):
        pages._constant(constant)


def test_the_page_statement_binds_only_the_time_and_the_ids():
    """About seventy constants are written into the text once; only the request's two values
    are bound for each page (what SQLAlchemy otherwise processed on every page)."""
    compiled = pages._RENDER.compile()
    assert sorted(compiled.binds) == ["ids", "now"]

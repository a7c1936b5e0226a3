"""Pages of approvals are what the database holds, for every viewer: after each kind of write,
whoever wrote it (another process included), when an approval passes its validity, for each
viewer and each organization."""

from __future__ import annotations

from datetime import timedelta

from discountflow.approvals import queries, services
from discountflow.approvals.schemas import ApprovalList, ApprovalListQuery, ApprovalUpdate
from discountflow.database import utcnow
from discountflow.extensions import db

from .approvals_world import act, build_world, create, request_body, set_level
from .conftest import add_member, bearer, make_app


def fresh(world, who="owner", **query) -> dict:
    """The page as the list service shapes it now, from the database."""
    with world.app.app_context():
        parsed = ApprovalListQuery.model_validate(query)
        views, has_more = queries.list_approvals(world.actor(who), parsed, parsed.page())
        return ApprovalList.page(views, has_more).model_dump(mode="json")


def listed(api, query="limit=100"):
    response = api("GET", f"/v2/approvals?{query}")
    assert response.status_code == 200
    return response.get_json()


def test_every_kind_of_write_is_seen_on_the_next_request(world, api, client):
    pending = create(world, "rep", 20, submit=True)
    draft = create(world, "rep", 10)
    queries = ["limit=100", "limit=2", "status=pending", "status=approved"]

    def check() -> None:
        for query in queries:
            parsed = dict(part.split("=") for part in query.split("&"))
            if "status" in parsed:
                parsed["status"] = [parsed["status"]]
            assert listed(api, query) == fresh(world, **parsed), query

    awaiting = f"awaiting_decision_by={world.people['manager']}"
    queries.append(awaiting)

    def check_awaiting(expected: list[str]) -> None:
        assert [a["id"] for a in listed(api, awaiting)["data"]] == expected

    check()
    check_awaiting([pending])
    # through the API
    created = api("POST", "/v2/approvals", json=request_body(25)).get_json()["id"]
    check()
    api("PATCH", f"/v2/approvals/{created}", json={"title": "Renamed"})
    assert listed(api)["data"][0]["title"] == "Renamed"
    check()
    api("POST", f"/v2/approvals/{created}/submit")
    check()
    check_awaiting([created, pending])
    api("DELETE", f"/v2/approvals/{draft}")
    check()
    # through the services, as members on the dashboard would
    act(world, "manager", "approve", pending)
    check()
    check_awaiting([created])
    act(world, "vp", "reject", pending, "No")
    check()
    act(world, "owner", "recall", created)
    check()
    check_awaiting([])
    with world.app.app_context():
        services.update_approval(
            world.actor("owner"), created, ApprovalUpdate.model_validate(request_body(40))
        )
    check()
    act(world, "owner", "submit", created)
    check_awaiting([created])
    # a member's approval level decides what awaits them
    set_level(world, world.people["manager"], None)
    check_awaiting([])
    set_level(world, world.people["manager"], world.levels["VP"])
    check_awaiting([])
    act(world, "manager2", "approve", created)
    check_awaiting([created])
    act(world, "owner", "cancel", created)
    check()
    check_awaiting([])


def test_a_write_by_another_process_is_seen_on_the_next_request(tmp_path, world, api):
    """Two app instances on one database file, as two gunicorn workers are."""
    other = make_app(tmp_path)  # the same database
    assert listed(api)["data"] == []
    with other.app_context():
        from discountflow.actors import Actor, Surface
        from discountflow.approvals.schemas import ApprovalCreate
        from discountflow.organizations.models import User

        rep = Actor.for_user(db.session.get(User, world.people["rep"]), Surface.DASHBOARD)
        made = services.create_approval(
            rep, ApprovalCreate.model_validate(request_body(12, submit=True))
        )
    assert [a["id"] for a in listed(api)["data"]] == [made.approval.id]
    # and the command-line sweep that stores expiry, for every organization
    result = other.test_cli_runner().invoke(args=["approvals", "expire"])
    assert result.exit_code == 0, result.output
    assert listed(api) == fresh(world, limit=100)


def test_an_approval_past_its_validity_reads_as_expired(world, api, monkeypatch):
    approved = create(world, "rep", 3, submit=True)  # auto-approved, valid for 30 days
    other = create(world, "rep", 20, submit=True)
    assert [(a["id"], a["status"]) for a in listed(api)["data"]] == [
        (other, "pending"),
        (approved, "approved"),
    ]
    assert [a["id"] for a in listed(api, "status=approved")["data"]] == [approved]
    assert listed(api, "status=expired")["data"] == []
    later = utcnow() + timedelta(days=31)
    monkeypatch.setattr("discountflow.approvals.queries.utcnow", lambda: later)
    assert [(a["id"], a["status"]) for a in listed(api)["data"]] == [
        (other, "pending"),
        (approved, "expired"),
    ]
    assert listed(api, "status=approved")["data"] == []
    assert [a["id"] for a in listed(api, "status=expired")["data"]] == [approved]


def test_each_viewer_and_each_organization_sees_its_own_approvals(app, world, client):
    mine = create(world, "rep", 20, submit=True)
    theirs = create(world, "rep2", 20, submit=True)
    for who, expected in [("rep", [mine]), ("rep2", [theirs]), ("owner", [theirs, mine])]:
        assert [a["id"] for a in fresh(world, who, limit=10)["data"]] == expected, who
    beta = build_world(app, "beta")
    beta_approval = create(beta, "rep", 5, submit=True)
    acme_page = client.get("/v2/approvals", headers=bearer(world.key)).get_json()
    beta_page = client.get("/v2/approvals", headers=bearer(beta.key)).get_json()
    assert [a["id"] for a in acme_page["data"]] == [theirs, mine]
    assert [a["id"] for a in beta_page["data"]] == [beta_approval]


def test_a_member_added_later_is_seen_by_the_awaiting_filter(app, world, api):
    pending = create(world, "rep", 10, submit=True)
    newcomer = add_member(app, world.organization_id, "newcomer@acme.example")
    assert listed(api, f"awaiting_decision_by={newcomer}")["data"] == []
    set_level(world, newcomer, world.levels["Manager"])
    assert [a["id"] for a in listed(api, f"awaiting_decision_by={newcomer}")["data"]] == [pending]


def test_a_failed_write_leaves_the_list_as_it_was(world, api):
    approval = create(world, "rep", 10)
    before = listed(api)
    response = api("POST", f"/v2/approvals/{approval}/approve")  # a draft: 409
    assert response.status_code == 409
    assert listed(api) == before == fresh(world, limit=100)

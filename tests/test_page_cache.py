"""Remembered pages of approvals (approvals/page_cache.py) are never staler than the database.

On SQLite the revisions live in a file beside the database; on PostgreSQL (``TEST_DATABASE``)
in Redis, where every app of these tests keeps them (without Redis nothing is remembered there,
which the last tests show).

Every page served from memory must equal the page rendered afresh: after each kind of write,
whoever wrote it (another process included), when an approval passes its validity, for each
viewer and each organization.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from discountflow.approvals import page_cache, queries, services
from discountflow.approvals.models import Approval
from discountflow.approvals.schemas import (
    ApprovalList,
    ApprovalListQuery,
    ApprovalUpdate,
)
from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.revisions import OrganizationRevisions

from .approvals_world import act, build_world, create, request_body, set_level
from .conftest import ON_POSTGRESQL, add_member, bearer, make_app
from .servers import require_redis


def remembering_app(tmp_path, **overrides):
    """An app whose processes share revisions: SQLite's file, or on PostgreSQL Redis (each test
    its own key prefix, which every app of the test shares)."""
    if ON_POSTGRESQL:
        prefix = "pages-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
        overrides = {
            "RATELIMIT_STORAGE_URI": require_redis(),
            "RATELIMIT_KEY_PREFIX": prefix,
            **overrides,
        }
    return make_app(tmp_path, **overrides)


@pytest.fixture
def app(tmp_path):
    return remembering_app(tmp_path)


@contextmanager
def statements(app):
    """Count the SQL statements run while the block runs."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def fresh(world, who="owner", **query) -> dict:
    """The page as the Python shaping renders it now, from the database, remembering nothing."""
    with world.app.app_context():
        parsed = ApprovalListQuery.model_validate(query)
        views, has_more = queries.list_approvals(world.actor(who), parsed, parsed.page())
        return ApprovalList.page(views, has_more).model_dump(mode="json")


def listed(api, query="limit=100"):
    response = api("GET", f"/v2/approvals?{query}")
    assert response.status_code == 200
    return response.get_json()


def test_an_unchanged_page_is_served_without_reading_the_database(app, world, api):
    create(world, "rep", 20, submit=True)
    first = listed(api)
    with statements(app) as seen:
        again = listed(api)
    assert again == first == fresh(world, limit=100)
    assert not [s for s in seen if "approvals" in s]
    with statements(app) as seen:
        other = listed(api, "limit=5&status=pending")  # another query is rendered
    assert other == fresh(world, limit=5, status=["pending"])
    assert [s for s in seen if "approvals" in s]


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
    other = remembering_app(tmp_path)  # the same database: its own page cache, the same revisions
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


def test_a_page_is_rendered_again_when_an_approval_in_it_passes_its_validity(
    world, api, monkeypatch
):
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


def test_each_viewer_and_each_organization_has_its_own_pages(app, world, client):
    mine = create(world, "rep", 20, submit=True)
    theirs = create(world, "rep2", 20, submit=True)
    query = ApprovalListQuery(limit=10)
    with app.app_context():
        for who, expected in [("rep", [mine]), ("rep2", [theirs]), ("owner", [theirs, mine])]:
            body = queries.approvals_page_json(world.actor(who), query, query.page())
            assert [a["id"] for a in json.loads(body)["data"]] == expected, who
    beta = build_world(app, "beta")
    beta_approval = create(beta, "rep", 5, submit=True)
    acme_page = client.get("/v2/approvals", headers=bearer(world.key)).get_json()
    beta_page = client.get("/v2/approvals", headers=bearer(beta.key)).get_json()
    assert [a["id"] for a in acme_page["data"]] == [theirs, mine]
    assert [a["id"] for a in beta_page["data"]] == [beta_approval]


def test_a_graphql_page_is_never_staler_than_the_database(world, client):
    """GraphQL reads the page REST answers: remembered the same way, retired the same way."""
    from .test_graphql import gql

    approval_id = create(world, "rep", 10, submit=True)  # within the manager's authority
    query = "{ approvals(first: 5) { edges { node { id status title } } } }"

    def first_node():
        body = gql(client, world.key, query).get_json()
        return body["data"]["approvals"]["edges"][0]["node"]

    assert first_node() == {"id": approval_id, "status": "PENDING", "title": "Deal"}
    with statements(world.app) as seen:
        assert first_node()["status"] == "PENDING"  # now from memory
    assert not [s for s in seen if "approvals" in s]
    act(world, "manager", "approve", approval_id, "ok")
    assert first_node()["status"] == "APPROVED"
    newer = create(world, "rep", 5)
    assert first_node()["id"] == newer


def test_a_member_added_later_is_seen_by_the_awaiting_filter(app, world, api):
    pending = create(world, "rep", 10, submit=True)
    newcomer = add_member(app, world.organization_id, "newcomer@acme.example")
    assert listed(api, f"awaiting_decision_by={newcomer}")["data"] == []
    set_level(world, newcomer, world.levels["Manager"])
    assert [a["id"] for a in listed(api, f"awaiting_decision_by={newcomer}")["data"]] == [pending]


def test_a_change_nobody_announced_is_seen_within_max_age(app, world, api, monkeypatch):
    """Should a process die between its commit and its bump, memory still runs out."""
    approval = create(world, "rep", 10)
    assert listed(api)["data"][0]["title"] == "Deal"
    with app.app_context():  # behind the services' back: no revision is bumped
        db.session.execute(update(Approval).where(Approval.id == approval).values(title="Quiet"))
        db.session.commit()
    assert listed(api)["data"][0]["title"] == "Deal"
    clock = page_cache.time.monotonic() + page_cache.MAX_AGE + 1
    monkeypatch.setattr(page_cache.time, "monotonic", lambda: clock)
    assert listed(api)["data"][0]["title"] == "Quiet"


def test_a_failed_write_leaves_pages_as_they_were(world, api):
    approval = create(world, "rep", 10)
    before = listed(api)
    response = api("POST", f"/v2/approvals/{approval}/approve")  # a draft: 409
    assert response.status_code == 409
    assert listed(api) == before == fresh(world, limit=100)


def test_the_memory_is_bounded():
    cache = page_cache.PageCache(max_bytes=1000)
    now = utcnow()
    for n in range(10):
        cache.put(n, 1, None, "x" * 100)
    assert len(cache) == 10
    cache.put(10, 1, None, "x" * 100)  # the oldest rendered goes
    assert cache.get(0, 1, now) is None and cache.get(10, 1, now) is not None
    cache.put("huge", 1, None, "x" * 200)  # more than an eighth of the memory: not kept
    assert cache.get("huge", 1, now) is None
    assert cache.get(10, 2, now) is None  # another revision


def test_pages_too_old_to_be_served_are_forgotten(monkeypatch):
    """Pages of queries nobody asks again do not pile up until the bound: a worker's memory
    holds what it rendered in the last MAX_AGE seconds."""
    clock = [1000.0]
    monkeypatch.setattr(page_cache.time, "monotonic", lambda: clock[0])
    cache = page_cache.PageCache(max_bytes=1_000_000)
    now = utcnow()
    for cursor in range(50):  # a poll walking through cursors, one page each
        cache.put(("org", None, cursor), 1, None, "x" * 1000)
        clock[0] += 0.5
    assert len(cache) == 21  # rendered in the last 10 seconds (and this one)
    assert cache.get(("org", None, 49), 1, now) is not None
    assert cache.get(("org", None, 20), 1, now) is None
    clock[0] += page_cache.MAX_AGE + 1
    cache.put("next", 1, None, "x")
    assert len(cache) == 1


def test_nothing_is_remembered_without_shared_revisions(tmp_path):
    app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI="sqlite://")
    assert app.extensions["discountflow.organization_revisions"].current("org_x") is None
    if ON_POSTGRESQL:  # and PostgreSQL with the in-process rate-limit storage
        app = make_app(tmp_path, RATELIMIT_STORAGE_URI="memory://")
        assert app.extensions["discountflow.organization_revisions"].current("org_x") is None


# --- revisions kept in Redis (PostgreSQL) -------------------------------------------------------


def test_revisions_in_redis_are_per_organization_and_start_anew_when_redis_lost_them():
    import redis

    url = require_redis()
    prefix = "pages-" + secrets.token_hex(6)
    revisions = OrganizationRevisions(None, url, prefix)
    first = revisions.current("org_a")
    other = revisions.current("org_b")
    assert first is not None and revisions.current("org_a") == first
    revisions.bump(["org_a"])
    assert revisions.current("org_a") == first + 1
    assert revisions.current("org_b") == other  # each organization its own
    revisions.bump_all()
    assert (revisions.current("org_a"), revisions.current("org_b")) == (first + 2, other + 1)
    client = redis.Redis.from_url(url)
    try:
        client.delete(*client.keys(f"{prefix}:*"))  # restarted, or flushed
        seen = {first, first + 1, first + 2}
        revisions.bump(["org_a"])  # a bump of a lost counter does not start it from zero
        assert revisions.current("org_a") not in seen | {1, 2}
        client.delete(*client.keys(f"{prefix}:*"))
        assert revisions.current("org_a") not in seen | {0, 1, 2}
    finally:
        client.delete(*client.keys(f"{prefix}:*"))
        client.close()


def test_a_revision_noted_by_the_request_is_used_until_a_bump_forgets_it(tmp_path):
    """The API reads the organization's revision with the request's own Redis round trip and
    notes it (api.py): later in the request it is used for that organization only, and any
    bump in the request (its own write) forgets it, so the request sees what it wrote."""
    app = make_app(tmp_path)
    revisions = OrganizationRevisions(None, require_redis(), f"noted-{secrets.token_hex(4)}")
    try:
        with app.test_request_context():
            read = revisions.current("org_a")
            revisions.noted("org_a", 7)
            assert revisions.current("org_a") == 7
            assert revisions.current("org_b") != 7  # another organization reads Redis
            revisions.bump(["org_b"])
            assert revisions.current("org_a") == read  # forgotten: read from Redis again
            revisions.noted("org_a", 7)
            revisions.bump_all()
            assert revisions.current("org_a") == read + 1
        with app.test_request_context():
            assert revisions.current("org_a") == read + 1  # nothing carried to the next request
        assert revisions.redis_keys("org_a") == [
            f"{revisions._redis.key_of(OrganizationRevisions.EVERYONE)}",
            f"{revisions._redis.key_of('org-revision:org_a')}",
        ]
        assert OrganizationRevisions(str(tmp_path / "file"), "redis://x").redis_keys("a") is None
    finally:
        client = revisions._redis._redis
        client.delete(*client.keys(f"{revisions._redis.key_of('*')}"))
        client.close()


def test_an_unreachable_redis_means_nothing_is_remembered(caplog):
    revisions = OrganizationRevisions(None, "redis://127.0.0.1:1/0", "pages")
    with caplog.at_level("WARNING"):
        for _ in range(20):
            assert revisions.current("org_x") is None
        revisions.bump(["org_x"])  # logged, not raised: the commit is done
    unreadable = [r for r in caplog.records if "organization revisions unreadable" in r.message]
    assert len(unreadable) == 1
    assert any("could not bump" in r.message for r in caplog.records)


@pytest.mark.skipif(not ON_POSTGRESQL, reason="SQLite keeps its revisions in a file")
def test_pages_on_postgresql_are_rendered_every_time_while_redis_is_away(tmp_path):
    app = make_app(tmp_path, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    world = build_world(app)
    client = app.test_client()

    def titles() -> list[str]:
        response = client.get("/v2/approvals", headers=bearer(world.key))
        assert response.status_code == 200  # the API fails open without its limits
        return [each["title"] for each in response.get_json()["data"]]

    approval = create(world, "rep", 10)
    assert titles() == ["Deal"]
    with app.app_context():  # behind the services' back: only a read can tell
        db.session.execute(update(Approval).where(Approval.id == approval).values(title="Quiet"))
        db.session.commit()
    assert titles() == ["Quiet"]

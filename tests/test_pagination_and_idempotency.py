"""Cursor pagination of lists, filters, and Idempotency-Key on POSTs."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from discountflow.approvals.models import Approval
from discountflow.extensions import db
from discountflow.idempotency import IdempotencyKey

from .approvals_world import act, build_world, create, request_body
from .conftest import bearer


def _pages(api, path: str, limit: int, between_pages=None) -> list[str]:
    ids, cursor = [], None
    while True:
        query = f"{path}{'&' if '?' in path else '?'}limit={limit}"
        if cursor:
            query += f"&starting_after={cursor}"
        page = api("GET", query).get_json()
        assert page["object"] == "list"
        ids += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            return ids
        cursor = page["data"][-1]["id"]
        if between_pages:
            between_pages()


def test_lists_are_newest_first_with_default_limit_10(api, world):
    created = [create(world, "rep", 10) for _ in range(12)]
    page = api("GET", "/v2/approvals").get_json()
    assert [a["id"] for a in page["data"]] == created[::-1][:10]
    assert page["has_more"] is True


def test_no_duplicates_or_gaps_while_approvals_change_status(api, world):
    created = [create(world, "rep", 20) for _ in range(23)]
    changed = iter(created)

    def change_some():
        # Approvals move through their states and new ones arrive between page reads.
        for _ in range(3):
            approval_id = next(changed)
            act(world, "rep", "submit", approval_id)
            act(world, "manager", "approve", approval_id)
        create(world, "rep2", 10)

    ids = _pages(api, "/v2/approvals", 5, change_some)
    assert ids == created[::-1]  # newer arrivals come before the first page, not inside


def test_ending_before_walks_back(api, world):
    created = [create(world, "rep", 10) for _ in range(7)][::-1]  # newest first
    page = api("GET", f"/v2/approvals?limit=3&ending_before={created[5]}").get_json()
    assert [a["id"] for a in page["data"]] == created[2:5]
    assert page["has_more"] is True
    page = api("GET", f"/v2/approvals?limit=3&ending_before={created[2]}").get_json()
    assert [a["id"] for a in page["data"]] == created[0:2]
    assert page["has_more"] is False


@pytest.mark.parametrize(
    "query, param",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("starting_after=apr_nope", "starting_after"),
        ("ending_before=apr_nope", "ending_before"),
        ("status=approvedd", "status[0]"),
        ("created[gte]=yesterday", "created[gte]"),
        ("created[gte]=2026-01-01T00:00:00", "created[gte]"),  # no time zone
        ("colour=red", "colour"),
        ("created[lte]=1700000000", "created[lte]"),  # RFC 3339 only, not Unix time
        ("created[lte]=0.5", "created[lte]"),
        ("customer=%00", "customer"),  # control characters are refused
    ],
)
def test_bad_list_parameters_are_400(api, world, query, param):
    response = api("GET", f"/v2/approvals?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "parameter_invalid"
    assert body["param"] == param


@pytest.mark.parametrize(
    "query",
    ["created[gte]=9999-12-31T23:59:59-23:59", "created[lte]=0001-01-01T00:00:00%2B14:00"],
)
def test_times_at_the_edge_of_the_calendar_are_fine(api, world, query):
    create(world, "rep", 10)
    response = api("GET", f"/v2/approvals?{query}")
    assert response.status_code == 200
    assert response.get_json()["data"] == []


def test_both_cursors_at_once_are_refused(api, world):
    first, second = create(world, "rep", 10), create(world, "rep", 10)
    response = api("GET", f"/v2/approvals?starting_after={first}&ending_before={second}")
    assert response.status_code == 400


def test_filters(api, world):
    draft = create(world, "rep", 10, customer="Acme Corp")
    pending = create(world, "rep2", 20, submit=True, customer="Globex")
    approved = create(world, "rep", 3, submit=True, customer="ACME Europe")
    at_vp = create(world, "rep", 20, submit=True, customer="Initech")
    act(world, "manager", "approve", at_vp)

    def ids(query: str) -> set[str]:
        response = api("GET", f"/v2/approvals?limit=100&{query}")
        assert response.status_code == 200, response.get_json()
        return {a["id"] for a in response.get_json()["data"]}

    assert ids("status=draft") == {draft}
    assert ids("status=pending&status=approved") == {pending, approved, at_vp}
    assert ids(f"requested_by={world.people['rep2']}") == {pending}
    assert ids("customer=acme") == {draft, approved}
    assert ids("customer=%25") == set()  # LIKE wildcards are plain text
    assert ids(f"awaiting_decision_by={world.people['manager']}") == {pending}
    assert ids(f"awaiting_decision_by={world.people['vp']}") == {at_vp}
    assert ids(f"awaiting_decision_by={world.people['admin']}") == set()
    assert ids("awaiting_decision_by=usr_nobody") == set()
    with world.app.app_context():
        created = db.session.get(Approval, approved).created_at
    stamp = created.isoformat().replace("+00:00", "Z")
    assert approved in ids(f"created[gte]={stamp}")
    assert approved in ids(f"created[lte]={stamp}")
    # The same wall-clock time one zone east is an hour earlier: before it was created.
    assert approved not in ids(f"created[lte]={stamp.replace('Z', '')}%2B01:00")


def test_requester_is_not_in_their_own_inbox(api, world):
    own = create(world, "manager", 10, submit=True)
    inbox = api("GET", f"/v2/approvals?awaiting_decision_by={world.people['manager']}")
    assert own not in {a["id"] for a in inbox.get_json()["data"]}
    inbox = api("GET", f"/v2/approvals?awaiting_decision_by={world.people['manager2']}")
    assert own in {a["id"] for a in inbox.get_json()["data"]}


def test_history_lists_paginate_too(api, world):
    approval_id = create(world, "rep", 10)
    for n in range(5):
        api("POST", f"/v2/approvals/{approval_id}/comments", json={"body": f"note {n}"})
    page = api("GET", f"/v2/approvals/{approval_id}/comments?limit=2").get_json()
    assert [c["body"] for c in page["data"]] == ["note 4", "note 3"]
    assert page["has_more"] is True
    rest = api(
        "GET", f"/v2/approvals/{approval_id}/comments?starting_after={page['data'][1]['id']}"
    ).get_json()
    assert [c["body"] for c in rest["data"]] == ["note 2", "note 1", "note 0"]


# --- Idempotency-Key ---------------------------------------------------------------------------


def _count_approvals(world) -> int:
    with world.app.app_context():
        return len(db.session.execute(select(Approval.id)).all())


def test_a_retry_replays_the_first_response(api, world):
    before = _count_approvals(world)
    headers = {"Idempotency-Key": "create-42"}
    first = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    retry = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count_approvals(world) == before + 1


def test_a_key_claimed_when_the_database_went_away_is_released_when_it_is_back(
    api, world, monkeypatch
):
    """Found by the fault run (loadtest/): the database went away mid-request, releasing the
    key failed into a 500, and the key stayed claimed (409 to every retry for 24 hours)."""
    from sqlalchemy.exc import OperationalError

    from discountflow import idempotency
    from discountflow.approvals import services

    def away(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    real_begin_write = idempotency.begin_write
    calls = []

    def begin_write_then_away(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the claim was taken; settling it finds the database gone
            away()
        return real_begin_write(*args, **kwargs)

    before = _count_approvals(world)
    headers = {"Idempotency-Key": "while-away"}
    with monkeypatch.context() as patch:
        patch.setattr(services, "create_approval", away)
        patch.setattr(idempotency, "begin_write", begin_write_then_away)
        down = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert down.status_code == 503, down.get_json()  # not a 500
    assert down.headers["Retry-After"] == "5"
    # The database is back: the next claim of this process releases the key first.
    other = api("POST", "/v2/approvals", json=request_body(5), headers={"Idempotency-Key": "x"})
    assert other.status_code == 201
    retry = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert retry.status_code == 201, retry.get_json()
    assert "Idempotent-Replayed" not in retry.headers
    assert _count_approvals(world) == before + 2
    assert not idempotency._unreleased


def test_actions_are_idempotent_too(api, world):
    approval_id = create(world, "rep", 3)
    headers = {"Idempotency-Key": "submit-1"}
    first = api("POST", f"/v2/approvals/{approval_id}/submit", headers=headers)
    retry = api("POST", f"/v2/approvals/{approval_id}/submit", headers=headers)
    assert first.status_code == retry.status_code == 200
    assert retry.get_json() == first.get_json()
    # Without the key, the same request is a new one, refused by the state machine.
    assert api("POST", f"/v2/approvals/{approval_id}/submit").status_code == 409


def test_errors_are_replayed_as_they_were(api, world):
    headers = {"Idempotency-Key": "bad-1"}
    body = request_body(10, currency="XXY")
    first = api("POST", "/v2/approvals", json=body, headers=headers)
    retry = api("POST", "/v2/approvals", json=body, headers=headers)
    assert first.status_code == retry.status_code == 400
    assert retry.get_json() == first.get_json()


def test_same_key_with_another_body_is_refused(api, world):
    headers = {"Idempotency-Key": "create-43"}
    api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    response = api("POST", "/v2/approvals", json=request_body(11), headers=headers)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "idempotency_key_reused",
        "message": "This Idempotency-Key was used with a different request. "
        "Use a new key for a new request.",
    }
    # …or on another endpoint.
    approval_id = create(world, "rep", 3)
    response = api("POST", f"/v2/approvals/{approval_id}/submit", headers=headers)
    assert response.get_json()["error"] == "idempotency_key_reused"


def test_a_concurrent_duplicate_is_409(api, world):
    body = request_body(10)
    headers = {"Idempotency-Key": "in-flight"}
    # The twin request has claimed the key and is still running.
    first = api("POST", "/v2/approvals", json=body, headers={"Idempotency-Key": "probe"})
    assert first.status_code == 201
    with world.app.app_context():
        probe = db.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.key == "probe")
        ).scalar_one()
        db.session.add(
            IdempotencyKey(
                organization_id=probe.organization_id,
                key="in-flight",
                fingerprint=probe.fingerprint,
                api_key_id=probe.api_key_id,
            )
        )
        db.session.commit()
    before = _count_approvals(world)
    response = api("POST", "/v2/approvals", json=body, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"] == "idempotency_key_in_use"
    assert _count_approvals(world) == before


def _claim(world, key: str, body: dict, *, age_seconds: float, work_committed: bool) -> None:
    """Leave a claim of ``key`` for ``body`` behind, as a request that died mid-way does."""
    from datetime import timedelta

    from discountflow.database import utcnow

    probe_key = f"probe-{key}"
    probe = world.app.test_client().post(
        "/v2/approvals", json=body, headers={**bearer(world.key), "Idempotency-Key": probe_key}
    )
    assert probe.status_code == 201
    with world.app.app_context():
        probe = db.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.key == probe_key)
        ).scalar_one()
        claimed_at = utcnow() - timedelta(seconds=age_seconds)
        db.session.add(
            IdempotencyKey(
                organization_id=probe.organization_id,
                key=key,
                fingerprint=probe.fingerprint,
                api_key_id=probe.api_key_id,
                created_at=claimed_at,
                work_committed_at=claimed_at if work_committed else None,
            )
        )
        db.session.commit()


def test_a_claim_still_leased_is_409_with_retry_after(api, world):
    body = request_body(10)
    _claim(world, "leased", body, age_seconds=3, work_committed=False)
    before = _count_approvals(world)
    response = api("POST", "/v2/approvals", json=body, headers={"Idempotency-Key": "leased"})
    assert response.status_code == 409
    assert response.get_json() == {
        "error": "idempotency_key_in_use",
        "message": "A request with this Idempotency-Key is still being processed. Retry shortly.",
    }
    assert response.headers["Retry-After"] == "7"  # when the lease of 10 s runs out
    assert _count_approvals(world) == before


def test_a_claim_whose_request_died_is_taken_over_after_its_lease(api, world):
    """Found by the fault run (loadtest/): a worker SIGKILLed mid-request left its key claimed,
    and every retry got 409 for 24 hours. Nothing of the dead request was committed, so a
    retry after the lease runs it."""
    body = request_body(10)
    _claim(world, "orphan", body, age_seconds=11, work_committed=False)
    before = _count_approvals(world)
    headers = {"Idempotency-Key": "orphan"}
    retry = api("POST", "/v2/approvals", json=body, headers=headers)
    assert retry.status_code == 201, retry.get_json()
    assert "Idempotent-Replayed" not in retry.headers
    assert _count_approvals(world) == before + 1
    again = api("POST", "/v2/approvals", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == retry.get_json()
    assert _count_approvals(world) == before + 1
    with world.app.app_context():
        claim = db.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.key == "orphan")
        ).scalar_one()
        assert claim.status_code == 201 and claim.work_committed_at is not None


def test_a_claim_whose_work_was_committed_is_never_run_again(api, world):
    """The dead request committed its work but could not store its answer: running it again
    would do it twice, so the key says what happened instead."""
    body = request_body(10)
    _claim(world, "done-unanswered", body, age_seconds=60, work_committed=True)
    before = _count_approvals(world)
    response = api(
        "POST", "/v2/approvals", json=body, headers={"Idempotency-Key": "done-unanswered"}
    )
    assert response.status_code == 409
    assert response.get_json() == {
        "error": "idempotency_key_in_use",
        "message": "The request with this Idempotency-Key was carried out, but the server "
        "stopped before it could answer. It will not be carried out again: look up its result, "
        "or send a new request with a new key.",
    }
    assert _count_approvals(world) == before


def test_a_request_whose_claim_was_taken_over_cannot_commit(api, world, monkeypatch):
    """The lease ran out while the first request was still alive and a retry took its key
    over: the first one's commit is refused, so the request is carried out once."""
    from discountflow.approvals import services

    real_create = services.create_approval

    def taken_over_meanwhile(*args, **kwargs):
        with db.engine.connect() as other:  # the retry, on another connection
            other.execute(IdempotencyKey.__table__.delete().where(IdempotencyKey.key == "slow"))
            other.commit()
        return real_create(*args, **kwargs)

    monkeypatch.setattr(services, "create_approval", taken_over_meanwhile)
    before = _count_approvals(world)
    response = api(
        "POST", "/v2/approvals", json=request_body(10), headers={"Idempotency-Key": "slow"}
    )
    assert response.status_code == 409
    assert response.get_json() == {
        "error": "idempotency_key_in_use",
        "message": "This request took too long: a retry with the same Idempotency-Key has "
        "taken it over, so it was not carried out here.",
    }
    assert response.headers["Retry-After"] == "10"
    assert _count_approvals(world) == before
    with world.app.app_context():  # nothing of it is left, the claim included
        assert (
            db.session.execute(select(IdempotencyKey).where(IdempotencyKey.key == "slow")).first()
            is None
        )


def test_the_work_commits_with_its_answer_never_before(api, world, monkeypatch):
    """Found by the scale-out fault run: a request whose work committed, and whose answer was
    then lost (PostgreSQL cut between the two commits), left a key that answered 409 forever
    instead of replaying. The work is now held and committed with the answer, in one
    transaction: until the answer is stored, no other connection sees the approval."""
    from discountflow import idempotency

    real_store = idempotency._store_answer
    seen_elsewhere = []

    def store_while_looking(*args):
        with db.engine.connect() as other:  # another process, on its own connection
            seen_elsewhere.append(other.execute(select(func.count(Approval.id))).scalar())
        return real_store(*args)

    before = _count_approvals(world)
    headers = {"Idempotency-Key": "held"}
    with monkeypatch.context() as patch:
        patch.setattr(idempotency, "_store_answer", store_while_looking)
        first = api("POST", "/v2/approvals", json=request_body(10, submit=True), headers=headers)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["status"] == "pending"  # created and submitted: two units of work
    assert seen_elsewhere == [before]  # the work was not committed before the answer
    assert _count_approvals(world) == before + 1
    again = api("POST", "/v2/approvals", json=request_body(10, submit=True), headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_a_database_lost_before_the_answer_is_stored_takes_the_work_with_it(
    api, world, monkeypatch
):
    """The commit of the work and its answer fails: nothing was done, so the client is told
    503 (not the 201 of work that is not there), and a retry carries the request out once."""
    from sqlalchemy.exc import OperationalError

    from discountflow import idempotency

    def away(*args):
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    before = _count_approvals(world)
    headers = {"Idempotency-Key": "lost-answer"}
    with monkeypatch.context() as patch:
        patch.setattr(idempotency, "_store_answer", away)
        down = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert down.status_code == 503, down.get_json()
    assert down.get_json() == {
        "error": "service_unavailable",
        "message": "The database is not reachable just now. Try again shortly.",
    }
    assert down.headers["Retry-After"] == "5"
    assert down.headers["Request-Id"].startswith("req_")  # the answer sent is the one logged
    assert down.headers["X-RateLimit-Limit"] == "500"
    assert _count_approvals(world) == before  # the approval went with the answer
    retry = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert retry.status_code == 201, retry.get_json()
    assert "Idempotent-Replayed" not in retry.headers
    replay = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == retry.get_json()
    assert _count_approvals(world) == before + 1
    assert not idempotency._unreleased


def test_a_refused_request_keeps_nothing_of_its_held_work(api, world, monkeypatch):
    """A request that committed a first unit of work and then failed with a server error
    keeps none of it (before, its first commit stayed while its key was released, so a retry
    could carry it out twice)."""
    from discountflow.approvals import services

    real_create = services.create_approval

    def create_then_fail(*args, **kwargs):
        real_create(*args, **kwargs)  # commits
        raise RuntimeError("a defect after the approval was created")

    before = _count_approvals(world)
    monkeypatch.setattr(services, "create_approval", create_then_fail)
    world.app.config["PROPAGATE_EXCEPTIONS"] = False  # answer the 500, as in production
    failed = api(
        "POST",
        "/v2/approvals",
        json=request_body(10, submit=True),
        headers={"Idempotency-Key": "half"},
    )
    assert failed.status_code == 500
    assert _count_approvals(world) == before


def test_keys_last_24_hours_and_belong_to_one_organization(app, api, world, monkeypatch):
    from datetime import timedelta

    from discountflow.database import utcnow

    headers = {"Idempotency-Key": "shared-name"}
    first = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    other = build_world(app, "globex")
    response = app.test_client().post(
        "/v2/approvals", json=request_body(10), headers={**bearer(other.key), **headers}
    )
    assert response.status_code == 201
    assert response.get_json()["id"] != first.get_json()["id"]
    monkeypatch.setattr(
        "discountflow.idempotency.utcnow", lambda: utcnow() + timedelta(hours=24, seconds=1)
    )
    again = api("POST", "/v2/approvals", json=request_body(10), headers=headers)
    assert again.status_code == 201
    assert again.get_json()["id"] != first.get_json()["id"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_malformed_idempotency_keys_are_400(api, key):
    response = api("POST", "/v2/approvals", json=request_body(10), headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["param"] == "Idempotency-Key"

"""Webhooks: endpoints and their secrets, the transactional outbox, signed deliveries to a real
receiver, retries on the schedule, timeouts, disabling, rotation and the SSRF rules."""

from __future__ import annotations

import json
import random
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from discountflow.audit.models import Event
from discountflow.audit.schemas import EVENT_TYPES
from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from discountflow.webhooks.worker import Worker

from .approvals_world import act, build_world, create
from .conftest import bearer, make_app
from .receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """The worker's clock, moved by the test (the signatures keep the wall clock's time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self):
        return utcnow() + self.offset

    def advance(self, **delta) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def work(app, clock):
    """Run the worker in-process until nothing is due (at the test's clock); return attempts."""

    def run(**settings) -> int:
        app.config.update(settings)
        with app.app_context():
            worker = Worker(clock=clock.now, rng=random.Random(7))
            total = 0
            while done := worker.run_once():
                total += done
            worker.close()
            return total

    return run


@pytest.fixture
def endpoint(api, receiver):
    """An endpoint of the world's organization for every event, at the test's receiver."""

    def make(events=("*",), url=None) -> dict:
        created = api(
            "POST",
            "/v2/webhook_endpoints",
            json={"url": url or receiver.url, "events": list(events), "description": "CRM"},
        )
        assert created.status_code == 201, created.get_json()
        body = created.get_json()
        receiver.secrets.append(body["secret"])
        return body

    return make


def _deliveries(app, **where) -> list[WebhookDelivery]:
    with app.app_context():
        statement = select(WebhookDelivery).filter_by(**where).order_by(WebhookDelivery.created_at)
        return list(db.session.execute(statement).scalars())


# --- endpoints ---------------------------------------------------------------------------------


def test_an_endpoint_is_created_with_its_secret_shown_once(api, app, world, receiver):
    created = api(
        "POST",
        "/v2/webhook_endpoints",
        json={"url": receiver.url, "events": ["approval.approved", "product.*"]},
    )
    assert created.status_code == 201
    body = created.get_json()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", body["secret"])
    assert body["id"].startswith("whe_")
    assert body == {
        "object": "webhook_endpoint",
        "id": body["id"],
        "url": receiver.url,
        "description": "",
        "events": ["approval.approved", "product.*"],
        "enabled": True,
        "disabled_reason": None,
        "failing_since": None,
        "previous_secret_expires": None,
        "created": body["created"],
        "updated": body["updated"],
        "secret": body["secret"],
    }
    shown = api("GET", f"/v2/webhook_endpoints/{body['id']}").get_json()
    assert "secret" not in shown
    listed = api("GET", "/v2/webhook_endpoints").get_json()["data"]
    assert listed == [shown]
    with app.app_context():
        stored = db.session.get(WebhookEndpoint, body["id"])
        assert body["secret"] not in stored.secret  # kept encrypted
        from discountflow.webhooks.signing import unseal

        assert unseal(stored.secret) == body["secret"]
        (event,) = db.session.execute(
            select(Event).where(Event.type == "webhook_endpoint.created")
        ).scalars()
        assert event.data == {"endpoint": body["id"], "url": receiver.url}
        assert body["secret"] not in json.dumps(event.data)


@pytest.mark.parametrize(
    "change, param",
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://user:pw@example.com/"}, "url"),
        ({"url": "https://example.com:99999/"}, "url"),
        ({"url": "https://example.com/" + "x" * 2100}, "url"),
        ({"events": []}, "events"),
        ({"events": ["approval.nope"]}, "events[0]"),
        ({"events": ["nope.*"]}, "events[0]"),
        ({"events": "*"}, "events"),
        ({"enabled": "yes"}, "enabled"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_endpoints_are_a_400_naming_the_field(api, receiver, change, param):
    response = api("POST", "/v2/webhook_endpoints", json={"url": receiver.url, **change})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["param"] == param


def test_who_may_manage_endpoints(app, api, world, client, receiver):
    from discountflow.errors import PermissionDenied
    from discountflow.webhooks import services
    from discountflow.webhooks.schemas import EndpointCreate

    created = api("POST", "/v2/webhook_endpoints", json={"url": receiver.url}).get_json()
    with app.app_context():
        with pytest.raises(PermissionDenied):
            services.create_endpoint(world.actor("rep"), EndpointCreate(url=receiver.url))
        with pytest.raises(PermissionDenied):
            services.get_endpoint(world.actor("rep"), created["id"])
        db.session.rollback()
        admin = world.actor("admin")
        assert services.create_endpoint(admin, EndpointCreate(url=receiver.url))[0].enabled
    read_only = bearer(world.read_only_key)
    assert client.get("/v2/webhook_endpoints", headers=read_only).status_code == 200
    refused = client.post("/v2/webhook_endpoints", json={"url": receiver.url}, headers=read_only)
    assert refused.status_code == 403 and refused.get_json()["error"] == "read_only_key"
    other = build_world(app, "globex")
    theirs = client.get(f"/v2/webhook_endpoints/{created['id']}", headers=bearer(other.key))
    assert theirs.status_code == 404
    for path in ("", "/rotate_secret", "/test", "/deliveries"):
        method = "GET" if path in ("", "/deliveries") else "POST"
        response = client.open(
            f"/v2/webhook_endpoints/{created['id']}{path}", method=method, headers=bearer(other.key)
        )
        assert response.status_code == 404, path


def test_every_event_type_the_services_record_is_known():
    recorded = set()
    for path in (ROOT / "discountflow").rglob("*.py"):
        recorded |= set(
            re.findall(r'"([a-z_]+\.[a-z_]+)",?\s*(?:\n\s*)?(?:[a-z_]+=|by=)', path.read_text())
        )
    recorded |= {"product.updated", "product.archived"}  # chosen in products/services.py
    types = {
        each for each in recorded if each.split(".")[0] in {t.split(".")[0] for t in EVENT_TYPES}
    }
    assert types <= EVENT_TYPES, types - EVENT_TYPES
    assert len(types) >= 30


# --- the outbox --------------------------------------------------------------------------------


def test_an_event_and_its_deliveries_commit_together(app, api, world, endpoint):
    endpoint(events=["approval.*"])
    second = endpoint(events=["approval.approved"])
    approval = create(world, "rep", 20, submit=True)
    with app.app_context():
        created = (
            db.session.execute(
                select(Event).where(Event.approval_id == approval).order_by(Event.created_at)
            )
            .scalars()
            .all()
        )
    assert [each.type for each in created] == ["approval.created", "approval.submitted"]
    deliveries = _deliveries(app)
    assert sorted((d.event_type, d.status) for d in deliveries) == [
        ("approval.created", "pending"),
        ("approval.submitted", "pending"),
    ]
    assert {d.message_id for d in deliveries} == {each.id for each in created}
    act(world, "manager", "approve", approval)
    act(world, "vp", "approve", approval)
    approved = [d for d in _deliveries(app) if d.event_type == "approval.approved"]
    assert sorted(d.endpoint_id for d in approved) == sorted(
        [
            next(d.endpoint_id for d in deliveries),
            second["id"],
        ]
    )


def test_a_rolled_back_change_leaves_no_event_and_no_delivery(app, api, world, endpoint):
    endpoint()
    draft = create(world, "rep", 10)
    before = (len(_deliveries(app)), _count(app, Event), _count(app, WebhookMessage))
    with app.app_context():
        from discountflow.approvals import levels, services

        for level_id in world.levels.values():
            levels.delete_level(world.actor("admin"), level_id)
        before = (len(_deliveries(app)), _count(app, Event), _count(app, WebhookMessage))
        from discountflow.errors import Conflict

        with pytest.raises(Conflict):  # submitting records approval.submitted, then is refused
            services.submit(world.actor("rep"), draft)
        db.session.rollback()
    assert (len(_deliveries(app)), _count(app, Event), _count(app, WebhookMessage)) == before


def _count(app, model) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_no_endpoint_no_delivery(app, world):
    create(world, "rep", 20, submit=True)
    assert _deliveries(app) == [] and _count(app, WebhookMessage) == 0


# --- deliveries ----------------------------------------------------------------------------------


def test_every_kind_of_event_is_delivered_signed_with_the_apis_object(
    app, api, world, endpoint, receiver, work
):
    hook = endpoint()
    approval = create(world, "rep", 20, submit=True)
    act(world, "manager", "approve", approval)
    act(world, "vp", "approve", approval)
    api("POST", f"/v2/approvals/{approval}/comments", json={"body": "Thanks"})
    api("PATCH", "/v2/organization", json={"name": "Acme Inc."})
    api("PATCH", f"/v2/products/{world.products['SEAT']}", json={"name": "Seat, 2027"})
    api("PATCH", f"/v2/members/{world.people['rep2']}", json={"role": "admin"})
    api("PATCH", f"/v2/approval_levels/{world.levels['CFO']}", json={"name": "Chief"})
    api("DELETE", f"/v2/approvals/{create(world, 'rep', 5)}")
    with app.app_context():
        from discountflow.auth import services as keys

        from .conftest import owner_actor

        keys.roll_key(owner_actor(world.organization_id), grace=timedelta(hours=1))
    assert work() == 13
    received = receiver.received
    types = [each.json["type"] for each in received]
    for expected in (
        "approval.created",
        "approval.submitted",
        "approval.step_approved",
        "approval.approved",
        "comment.created",
        "organization.updated",
        "product.updated",
        "member.role_changed",
        "approval_level.updated",
        "approval.deleted",
        "api_key.rolled",
    ):
        assert expected in types, expected
    for each in received:
        assert each.verified_with == [hook["secret"]]  # a standardwebhooks receiver accepts it
        assert each.id == each.json["id"] and each.id.startswith("evt_")
        assert each.headers["content-type"] == "application/json"
        assert each.headers["user-agent"].startswith("DiscountFlow-Webhooks/")
        assert set(each.json) == {"id", "type", "created", "data"}
    approved = next(each for each in received if each.json["type"] == "approval.approved")
    rest = api("GET", f"/v2/approvals/{approval}").get_json()
    assert approved.json["data"]["object"] == rest  # the API's own object
    product = next(each for each in received if each.json["type"] == "product.updated")
    assert product.json["data"]["object"]["name"] == "Seat, 2027"
    assert product.json["data"]["object"]["object"] == "product"
    deleted = next(each for each in received if each.json["type"] == "approval.deleted")
    assert deleted.json["data"]["object"]["deleted"] is True
    key = next(each for each in received if each.json["type"] == "api_key.rolled")
    assert key.json["data"]["object"]["object"] == "api_key" and "key_hash" not in key.body
    assert all(d.status == "succeeded" and d.attempts == 1 for d in _deliveries(app))
    listed = api("GET", f"/v2/webhook_endpoints/{hook['id']}/deliveries?limit=100").get_json()
    assert {d["status"] for d in listed["data"]} == {"succeeded"}
    assert (
        listed["data"][0]["last_status_code"] == 200 and listed["data"][0]["response_body"] == "ok"
    )


def test_a_failing_receiver_is_retried_on_the_schedule(app, world, endpoint, receiver, work, clock):
    endpoint(events=["approval.submitted"])
    receiver.answers = lambda n: Answer(500, b"oops") if n == 1 else Answer(200)
    create(world, "rep", 20, submit=True)
    assert work() == 1
    (delivery,) = _deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500" and delivery.last_response == "oops"
    wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=4.5) <= wait <= timedelta(seconds=5.5)  # 5 s, ±10 %
    assert work() == 0  # not due yet
    clock.advance(seconds=6)
    assert work() == 1
    (delivery,) = _deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    assert [each.id for each in receiver.received][0] == [each.id for each in receiver.received][1]


def test_the_schedule_then_failure_after_three_days_and_the_endpoint_disabled(
    app, api, world, endpoint, work, clock
):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every attempt fails to connect
    hook = endpoint(url=f"http://127.0.0.1:{port}/down")
    create(world, "rep", 20, submit=True)
    waits = []
    for _ in range(20):
        if not work():
            break
        pending = [d for d in _deliveries(app) if d.status == "pending"]
        if not pending:
            break
        waits.append(pending[0].next_attempt_at - pending[0].last_attempt_at)
        clock.advance(seconds=(pending[0].next_attempt_at - clock.now()).total_seconds() + 1)
    # At once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 12 h (each ±10 %) for 3 days.
    assert len(waits) in (10, 11), waits
    expected = [5, 300, 1800, 7200, 18000, 36000] + [43200] * (len(waits) - 6)
    for wait, seconds in zip(waits, expected, strict=True):
        assert seconds * 0.9 <= wait.total_seconds() <= seconds * 1.1
    deliveries = _deliveries(app)
    assert {d.status for d in deliveries} == {"failed"}
    spent = [d for d in deliveries if d.attempts == len(waits) + 1]
    assert spent and all("ConnectError" in d.last_error for d in spent)
    for delivery in spent:  # its whole window, failing
        assert delivery.last_attempt_at - delivery.created_at <= timedelta(days=3)
    for delivery in set(deliveries) - set(spent):  # then the endpoint was disabled
        assert delivery.last_error == "The endpoint was disabled."
    shown = api("GET", f"/v2/webhook_endpoints/{hook['id']}").get_json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("Every delivery failed from ")
    with app.app_context():
        (disabled,) = db.session.execute(
            select(Event).where(Event.type == "webhook_endpoint.disabled")
        ).scalars()
        assert (disabled.actor_type, disabled.surface) == ("system", "system")
    from .dashboard import sign_in

    owner = app.test_client()
    sign_in(owner, "owner@acme.example")
    page = owner.get("/inbox")
    assert "was disabled: Every delivery failed from" in page.text  # the owner is told
    enabled = api("PATCH", f"/v2/webhook_endpoints/{hook['id']}", json={"enabled": True})
    assert enabled.get_json()["disabled_reason"] is None
    assert "was disabled" not in owner.get("/inbox").text


def test_an_answer_that_takes_too_long_is_a_failed_attempt(app, world, endpoint, receiver, work):
    endpoint(events=["approval.submitted"])
    receiver.answers = lambda n: Answer(200, delay=3)
    create(world, "rep", 20, submit=True)
    assert work(WEBHOOK_TIMEOUT_SECONDS=1.0) == 1
    (delivery,) = _deliveries(app)
    assert delivery.status == "pending" and delivery.last_error == "no answer within 1 s"
    assert 900 <= delivery.last_duration_ms < 2000


def test_an_answer_whose_body_drips_past_the_timeout_is_a_failed_attempt(
    app, api, world, endpoint, receiver, work
):
    hook = endpoint(events=["approval.submitted"])
    # The status line and headers at once, then one byte of the body every 0.3 s: 3 s in all.
    receiver.answers = lambda n: Answer(200, b"0123456789", drip=0.3)
    create(world, "rep", 20, submit=True)
    assert work(WEBHOOK_TIMEOUT_SECONDS=1.0) == 1
    (delivery,) = _deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 200)
    assert delivery.last_error == "HTTP 200, but the answer did not end within 1 s"
    assert delivery.delivered_at is None and 900 <= delivery.last_duration_ms < 2000
    listed = api("GET", f"/v2/webhook_endpoints/{hook['id']}/deliveries").get_json()["data"]
    assert (listed[0]["status"], listed[0]["last_error"]) == ("pending", delivery.last_error)


def test_an_endpoint_that_keeps_failing_is_paused_then_tried_once(
    app, api, world, endpoint, receiver, clock
):
    hook = endpoint(events=["approval.*"])
    receiver.answers = lambda n: Answer(500, b"down") if n <= 7 else Answer(200)
    for _ in range(4):
        create(world, "rep", 20, submit=True)  # 8 deliveries, all due now
    path = f"/v2/webhook_endpoints/{hook['id']}/deliveries?limit=100"

    def shown() -> list[dict]:
        return api("GET", path).get_json()["data"]

    with app.app_context():
        worker = Worker(clock=clock.now, rng=random.Random(3))
        try:
            # Two at a time to one endpoint; the 5th failure in a row pauses it for 30 s.
            assert [worker.run_once() for _ in range(4)] == [2, 2, 2, 0]
            paused = shown()
            assert sorted(each["attempts"] for each in paused) == [0, 0, 1, 1, 1, 1, 1, 1]
            (until,) = {each["next_attempt"] for each in paused}  # all wait for the pause's end
            last = max(each["last_attempt"] for each in paused if each["last_attempt"])
            assert _seconds_between(last, until) == pytest.approx(30, abs=1)
            clock.advance(seconds=31)
            assert worker.run_once() == 1  # half-open: one attempt; it fails: paused for 60 s
            assert worker.run_once() == 0
            waiting = [each for each in shown() if each["attempts"] <= 1]
            (until_again,) = {each["next_attempt"] for each in waiting}
            assert _seconds_between(until, until_again) == pytest.approx(1 + 60, abs=1)
            clock.advance(seconds=61)
            assert worker.run_once() == 1  # it answers: the circuit closes
            assert worker.run_once() == 2
            while worker.run_once():
                pass
        finally:
            worker.close()
    assert len(receiver.received) == 7 + 7
    statuses = sorted(each["status"] for each in shown())
    assert statuses == ["pending"] + ["succeeded"] * 7  # the one tried twice: in 5 min


def _seconds_between(earlier: str, later: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_long_answers_are_kept_to_4_kib_and_redirects_are_not_followed(
    app, world, endpoint, receiver, work
):
    endpoint(events=["approval.submitted", "approval.created"])
    receiver.answers = lambda n: (
        Answer(200, b"x" * 10_000)
        if n == 1
        else Answer(302, b"", headers={"location": "http://169.254.169.254/latest/meta-data/"})
    )
    create(world, "rep", 20, submit=True)
    work()
    deliveries = _deliveries(app)
    (first,) = [d for d in deliveries if d.last_status_code == 200]
    (second,) = [d for d in deliveries if d.last_status_code == 302]
    assert first.status == "succeeded" and len(first.last_response) == 4096
    assert second.status == "pending"
    assert second.last_error == "HTTP 302: redirects are not followed"
    assert len(receiver.received) == 2  # nothing went to the redirect's target


def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    app, api, world, endpoint, receiver, work, clock, monkeypatch
):
    hook = endpoint(events=["approval.submitted"])
    old = hook["secret"]
    rotated = api("POST", f"/v2/webhook_endpoints/{hook['id']}/rotate_secret")
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["previous_secret_expires"] is not None
    receiver.secrets = [old, new]
    create(world, "rep", 20, submit=True)
    work()
    (during,) = receiver.received
    assert during.verified_with == [old, new]  # either secret verifies
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    monkeypatch.setattr("discountflow.webhooks.worker.utcnow", clock.now)
    clock.advance(hours=24, seconds=1)
    create(world, "rep", 20, submit=True)
    with app.app_context():  # the event happened "now" for the worker too
        for delivery in db.session.execute(
            select(WebhookDelivery).where(WebhookDelivery.status == "pending")
        ).scalars():
            delivery.next_attempt_at = clock.now()
        db.session.commit()
    work()
    after = receiver.received[-1]
    assert after.verified_with == [new]
    assert len(after.headers["webhook-signature"].split(" ")) == 1


def test_a_test_event_and_a_retry(app, api, world, endpoint, receiver, work):
    hook = endpoint(events=["product.*"])
    queued = api("POST", f"/v2/webhook_endpoints/{hook['id']}/test")
    assert queued.status_code == 201
    delivery = queued.get_json()
    assert (delivery["object"], delivery["event_type"], delivery["status"]) == (
        "webhook_delivery",
        "ping",
        "pending",
    )
    work()
    (ping,) = receiver.received
    assert ping.json["type"] == "ping" and ping.json["data"]["object"]["id"] == hook["id"]
    assert ping.verified_with == [hook["secret"]]
    again = api("POST", f"/v2/webhook_endpoints/{hook['id']}/deliveries/{delivery['id']}/retry")
    assert again.status_code == 200 and again.get_json()["status"] == "pending"
    work()
    assert [each.id for each in receiver.received] == [ping.id, ping.id]  # the same webhook-id
    assert (
        api("POST", f"/v2/webhook_endpoints/{hook['id']}/deliveries/whd_nope/retry").status_code
        == 404
    )
    api("PATCH", f"/v2/webhook_endpoints/{hook['id']}", json={"enabled": False})
    refused = api("POST", f"/v2/webhook_endpoints/{hook['id']}/test")
    assert refused.status_code == 409


def test_a_deleted_endpoint_takes_its_deliveries_with_it(app, api, world, endpoint, work):
    hook = endpoint()
    create(world, "rep", 20, submit=True)
    assert _deliveries(app)
    deleted = api("DELETE", f"/v2/webhook_endpoints/{hook['id']}")
    assert deleted.get_json() == {"object": "webhook_endpoint", "id": hook["id"], "deleted": True}
    assert _deliveries(app) == [] and work() == 0


def test_an_organization_has_at_most_16_endpoints(app, api, client, world, receiver):
    from .test_graphql import gql

    made = [api("POST", "/v2/webhook_endpoints", json={"url": receiver.url}) for _ in range(16)]
    assert [each.status_code for each in made] == [201] * 16
    refused = api("POST", "/v2/webhook_endpoints", json={"url": receiver.url})
    message = (
        "An organization has at most 16 webhook endpoints: delete one it no longer uses first "
        "(one endpoint may subscribe to many events)."
    )
    assert refused.status_code == 409
    assert refused.get_json() == {"error": "conflict", "message": message}
    over = gql(
        client,
        world.key,
        "mutation($input: WebhookEndpointCreateInput!) { createWebhookEndpoint(input: $input) "
        "{ id } }",
        {"input": {"url": receiver.url}},
    ).get_json()
    assert over["data"] == {"createWebhookEndpoint": None}
    assert over["errors"][0]["message"] == message
    assert over["errors"][0]["extensions"] == {"code": "conflict"}
    assert _count(app, WebhookEndpoint) == 16
    other = build_world(app, "globex")  # another organization's room is its own
    theirs = client.post(
        "/v2/webhook_endpoints", json={"url": receiver.url}, headers=bearer(other.key)
    )
    assert theirs.status_code == 201
    deleted = api("DELETE", f"/v2/webhook_endpoints/{made[0].get_json()['id']}")
    assert deleted.status_code == 200
    assert api("POST", "/v2/webhook_endpoints", json={"url": receiver.url}).status_code == 201


def test_the_dashboard_refuses_a_17th_endpoint_with_the_services_message(app, world, receiver):
    from .dashboard import sign_in

    with app.app_context():
        from discountflow.webhooks import services
        from discountflow.webhooks.schemas import EndpointCreate

        for _ in range(16):
            services.create_endpoint(world.actor("admin"), EndpointCreate(url=receiver.url))
    admin = app.test_client()
    sign_in(admin, "admin@acme.example")
    page = admin.get("/settings/webhooks")
    nonce = re.search(r'name="nonce" type="hidden" value="([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": token, "url": receiver.url, "events": "*", "enabled": "y"}
    refused = admin.post("/settings/webhooks", data={**form, "nonce": nonce})
    assert refused.status_code == 400
    assert "An organization has at most 16 webhook endpoints" in refused.text
    assert "whsec_" not in refused.text
    assert _count(app, WebhookEndpoint) == 16


def _endpoint_events(app, endpoint_id: str) -> list[tuple[str, dict, str]]:
    with app.app_context():
        found = db.session.execute(
            select(Event)
            .where(Event.type.startswith("webhook_endpoint."))
            .order_by(Event.created_at)
        ).scalars()
        return [
            (each.type, each.data, each.surface)
            for each in found
            if each.data.get("endpoint") == endpoint_id
        ][1:]  # after its creation


def test_enabling_and_disabling_an_endpoint_are_recorded_by_name(app, api, client, world, endpoint):
    from .test_graphql import gql

    hook = endpoint(events=["approval.*"])
    listener = endpoint(events=["webhook_endpoint.*"])
    path = f"/v2/webhook_endpoints/{hook['id']}"
    assert api("PATCH", path, json={"enabled": False}).get_json()["enabled"] is False
    assert api("PATCH", path, json={"enabled": True}).get_json()["enabled"] is True
    both = api("PATCH", path, json={"enabled": False, "description": "Paused CRM"})
    assert both.status_code == 200
    assert api("PATCH", path, json={"enabled": False}).status_code == 200  # no change: no event
    mutation = (
        "mutation($id: ID!, $input: WebhookEndpointUpdateInput!) "
        "{ updateWebhookEndpoint(id: $id, input: $input) { enabled } }"
    )
    enabled = gql(client, world.key, mutation, {"id": hook["id"], "input": {"enabled": True}})
    assert enabled.get_json()["data"] == {"updateWebhookEndpoint": {"enabled": True}}
    disabled = gql(client, world.key, mutation, {"id": hook["id"], "input": {"enabled": False}})
    assert disabled.get_json()["data"] == {"updateWebhookEndpoint": {"enabled": False}}
    endpoint_only = {"endpoint": hook["id"]}
    assert _endpoint_events(app, hook["id"]) == [
        ("webhook_endpoint.disabled", endpoint_only, "api"),
        ("webhook_endpoint.enabled", endpoint_only, "api"),
        ("webhook_endpoint.updated", {**endpoint_only, "fields": ["description"]}, "api"),
        ("webhook_endpoint.disabled", endpoint_only, "api"),
        ("webhook_endpoint.enabled", endpoint_only, "graphql"),
        ("webhook_endpoint.disabled", endpoint_only, "graphql"),
    ]
    heard = [d.event_type for d in _deliveries(app, endpoint_id=listener["id"])]
    assert heard == [
        "webhook_endpoint.disabled",
        "webhook_endpoint.enabled",
        "webhook_endpoint.updated",
        "webhook_endpoint.disabled",
        "webhook_endpoint.enabled",
        "webhook_endpoint.disabled",
    ]


def test_the_dashboards_enable_and_disable_buttons_are_recorded_by_name(app, world, endpoint):
    from .dashboard import post_form, sign_in

    hook = endpoint()
    admin = app.test_client()
    sign_in(admin, "admin@acme.example")
    detail = f"/settings/webhooks/{hook['id']}"
    assert post_form(admin, f"{detail}/disable", token_from=detail).status_code == 303
    assert post_form(admin, f"{detail}/enable", token_from=detail).status_code == 303
    assert _endpoint_events(app, hook["id"]) == [
        ("webhook_endpoint.disabled", {"endpoint": hook["id"]}, "dashboard"),
        ("webhook_endpoint.enabled", {"endpoint": hook["id"]}, "dashboard"),
    ]


# --- where webhooks may go -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://hooks.example/x", "must use https in production"),
        ("https://127.0.0.1/x", "127.0.0.1, a loopback, private"),
        ("https://10.1.2.3/x", "10.1.2.3"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://[::1]/x", "::1"),
        ("https://[::ffff:127.0.0.1]/x", "::ffff:127.0.0.1"),
        ("https://100.100.100.200/x", "100.100.100.200"),  # a cloud's metadata (shared space)
        ("https://localhost/x", "localhost resolves to"),
        ("https://internal.example/x", "internal.example resolves to 192.168.1.20"),
        ("https://mixed.example/x", "mixed.example resolves to 10.0.0.1"),
    ],
)
def test_production_refuses_private_destinations(production, resolving, url, message):
    resolving["internal.example"] = "192.168.1.20"
    resolving["mixed.example"] = "10.0.0.1"
    world = build_world(production, "prod")
    client = production.test_client()
    refused = client.post("/v2/webhook_endpoints", json={"url": url}, headers=bearer(world.key))
    assert refused.status_code == 400
    assert refused.get_json()["param"] == "url"
    assert message in refused.get_json()["message"]


def test_production_accepts_a_public_https_url(production, resolving):
    resolving["hooks.example"] = "93.184.216.34"
    world = build_world(production, "prod")
    client = production.test_client()
    response = client.post(
        "/v2/webhook_endpoints",
        json={"url": "https://hooks.example/x"},
        headers=bearer(world.key),
    )
    assert response.status_code == 201


def test_a_name_that_turns_private_after_it_was_saved_is_refused_at_delivery(
    production, resolving, receiver
):
    resolving["rebind.example"] = "93.184.216.34"
    world = build_world(production, "prod")
    client = production.test_client()
    hook = client.post(
        "/v2/webhook_endpoints",
        json={"url": f"https://rebind.example:{receiver.server.server_port}/x"},
        headers=bearer(world.key),
    ).get_json()
    resolving["rebind.example"] = "127.0.0.1"  # the name now points inside
    create(world, "rep", 20, submit=True)
    with production.app_context():
        worker = Worker(rng=random.Random(1))
        assert worker.run_once() >= 1
        delivery = (
            db.session.execute(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook["id"])
            )
            .scalars()
            .first()
        )
        assert delivery.status == "pending"
        assert "rebind.example resolves to 127.0.0.1" in delivery.last_error
    assert receiver.received == []


def test_private_destinations_can_be_allowed_for_a_lan(tmp_path, resolving):
    app = make_app(tmp_path, DISCOUNTFLOW_ENV="production", WEBHOOK_ALLOW_PRIVATE=True)
    world = build_world(app, "lan")
    response = app.test_client().post(
        "/v2/webhook_endpoints",
        json={"url": "https://10.1.2.3/hooks"},
        headers=bearer(world.key),
    )
    assert response.status_code == 201


# --- GraphQL -----------------------------------------------------------------------------------


def test_graphql_manages_endpoints_with_the_same_rules(client, world, api, receiver):
    from .test_graphql import gql

    created = gql(
        client,
        world.key,
        "mutation($input: WebhookEndpointCreateInput!) { createWebhookEndpoint(input: $input) "
        "{ id url events enabled secret } }",
        {"input": {"url": receiver.url, "events": ["approval.approved"]}},
    ).get_json()["data"]["createWebhookEndpoint"]
    assert created["secret"].startswith("whsec_")
    rest = api("GET", f"/v2/webhook_endpoints/{created['id']}").get_json()
    assert (rest["url"], rest["events"]) == (created["url"], created["events"])
    read = gql(
        client,
        world.key,
        f'{{ webhookEndpoint(id: "{created["id"]}") {{ id enabled deliveries(first: 5) '
        "{ id status } } }",
    ).get_json()
    assert read["data"]["webhookEndpoint"] == {
        "id": created["id"],
        "enabled": True,
        "deliveries": [],
    }
    assert "secret" not in str(read)
    test = gql(
        client,
        world.key,
        f'mutation {{ sendWebhookTest(id: "{created["id"]}") {{ eventType status }} }}',
    ).get_json()
    assert test["data"]["sendWebhookTest"] == {"eventType": "ping", "status": "PENDING"}
    refused = gql(
        client,
        world.read_only_key,
        f'mutation {{ rotateWebhookEndpointSecret(id: "{created["id"]}") {{ secret }} }}',
    )
    assert refused.status_code == 403
    bad = gql(
        client,
        world.key,
        'mutation { createWebhookEndpoint(input: {url: "ftp://x", events: ["*"]}) { id } }',
    ).get_json()
    assert bad["errors"][0]["extensions"] == {"code": "parameter_invalid", "param": "url"}


# --- the dashboard: Settings → Webhooks ----------------------------------------------------------


def test_admins_manage_webhooks_in_the_dashboard(app, world, receiver, work):
    from .dashboard import nav_links, post_form, sign_in

    admin = app.test_client()
    sign_in(admin, "admin@acme.example")
    page = admin.get("/settings/webhooks")
    assert "Webhooks" in nav_links(page, "Settings") and "No endpoints yet." in page.text
    nonce = re.search(r'name="nonce" type="hidden" value="([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    form = {
        "csrf_token": token,
        "url": receiver.url,
        "description": "CRM",
        "events": "approval.approved, product.*",
        "enabled": "y",
        "nonce": nonce,
    }
    shown = admin.post("/settings/webhooks", data=form)
    assert shown.status_code == 200 and shown.headers["Cache-Control"].startswith("no-store")
    secret = re.search(r'value="(whsec_[^"]+)"', shown.text).group(1)
    again = admin.post("/settings/webhooks", data=form)  # a reload of the same form
    assert again.status_code == 303 and "whsec_" not in admin.get(again.headers["Location"]).text
    with app.app_context():
        (endpoint,) = db.session.execute(select(WebhookEndpoint)).scalars()
        assert endpoint.events == ["approval.approved", "product.*"]
    receiver.secrets.append(secret)
    detail = f"/settings/webhooks/{endpoint.id}"
    assert post_form(admin, f"{detail}/test", token_from=detail).status_code == 303
    work()
    (ping,) = receiver.received
    assert ping.verified_with == [secret]
    page = admin.get(detail)
    assert "<code>ping</code>" in page.text and "Succeeded" in page.text and "HTTP 200" in page.text
    (delivery,) = _deliveries(app)
    retried = post_form(admin, f"{detail}/deliveries/{delivery.id}/retry", token_from=detail)
    assert retried.status_code == 303 and _deliveries(app)[0].status == "pending"
    post_form(admin, f"{detail}/disable", token_from=detail)
    assert _deliveries(app) and not db_endpoint(app, endpoint.id).enabled
    bad = post_form(
        admin, detail, {"url": "ftp://x", "events": "*", "enabled": "y"}, token_from=detail
    )
    assert bad.status_code == 400 and "A webhook URL starts with https://" in bad.text
    rep = app.test_client()
    sign_in(rep, "rep@acme.example")
    assert rep.get("/settings/webhooks").status_code == 403
    assert rep.get(detail).status_code == 403


def db_endpoint(app, endpoint_id: str) -> WebhookEndpoint:
    with app.app_context():
        return db.session.get(WebhookEndpoint, endpoint_id)


def test_another_organizations_endpoint_cannot_be_disabled(app, api, client, world, endpoint):
    """Its id answers as an id nobody has, and nothing is changed or recorded."""
    hook = endpoint(events=["approval.*"])
    other = build_world(app, "globex")
    events_before = _count(app, Event)
    answers = [
        client.patch(
            f"/v2/webhook_endpoints/{endpoint_id}",
            json={"enabled": False},
            headers=bearer(other.key),
        )
        for endpoint_id in (hook["id"], "whe_" + "0" * 22)
    ]
    assert [answer.status_code for answer in answers] == [404, 404]
    bodies = [answer.get_json() for answer in answers]
    assert bodies[0] == {
        **bodies[1],
        "message": bodies[1]["message"].replace("whe_" + "0" * 22, hook["id"]),
    }
    assert api("GET", f"/v2/webhook_endpoints/{hook['id']}").get_json()["enabled"] is True
    assert _count(app, Event) == events_before

"""What an outside attack on notifications found, each now a test: a key or a signed-in member of
their own organization against the preferences, the destinations, the list of notifications,
GraphQL and Settings → Notifications. The defects it found are fixed; the attacks the code
withstood are kept here too, so that it goes on withstanding them."""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.notifications.models import Notification, NotificationDestination

from .approvals_world import build_world, create
from .conftest import bearer, make_app
from .receiver import Receiver
from .test_notifications_destinations import chats, send

DESTINATIONS = "/v2/notification_destinations"
PREFERENCES = "/v2/members/me/notification_preferences"
UNREADABLE = "The destination's URL cannot be read with this SECRET_KEY: enter it again."


def _made(client, key: str, url: str = "json://1.2.3.4:9/chat", **fields) -> dict:
    response = client.post(DESTINATIONS, json={"name": "Chat", "url": url, **fields}, headers=key)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# --- a URL sealed under a SECRET_KEY that has changed since ------------------------------------


def test_a_url_unreadable_after_a_secret_key_change_can_be_entered_again(app, world, client):
    """The refusal says "enter it again": a PATCH with a new URL answered 500 instead (the
    service compared the new URL with the old one, unsealing it)."""
    made = _made(client, bearer(world.key))
    app.config["SECRET_KEY"] = "a-new-secret-key-4d1c8e2f7a9b3c5d6e0f1a2b"
    path = f"{DESTINATIONS}/{made['id']}"
    changed = client.patch(path, json={"url": "json://1.2.3.4:9/again"}, headers=bearer(world.key))
    assert changed.status_code == 200
    assert changed.get_json()["url"] == "json://1.2.3.4:9/a...n"
    with app.app_context():
        (event,) = db.session.execute(
            select(Event).where(Event.type == "notification_destination.updated")
        ).scalars()
        assert event.data == {"destination": made["id"], "fields": ["url"]}


def test_a_url_unreadable_after_a_secret_key_change_fails_its_messages_not_the_batch(
    app, world, client
):
    """The worker unsealed the URL while writing the batch: the error ended the whole batch
    (a traceback in the log at each pass), and its emails and messages were claimed again and
    again, never sent. Now that destination's message is a failed attempt that says why (tried
    again on the schedule, as a webhook whose secret is unreadable); the rest go."""
    made = _made(client, bearer(world.key), events=["decision_requested"])
    app.config["SECRET_KEY"] = "a-new-secret-key-4d1c8e2f7a9b3c5d6e0f1a2b"
    create(world, "rep", 20, submit=True)  # emails to the two managers, a message to the chat
    send(app)
    assert chats(app) == [(made["id"], "decision_requested", "pending")]
    listed = client.get(
        f"/v2/notifications?destination={made['id']}", headers=bearer(world.key)
    ).get_json()["data"]
    assert [(n["status"], n["attempts"], n["last_error"]) for n in listed] == [
        ("pending", 1, UNREADABLE)
    ]
    shown = client.get(f"{DESTINATIONS}/{made['id']}", headers=bearer(world.key)).get_json()
    assert shown["last_error"] == UNREADABLE
    with app.app_context():
        emails = db.session.execute(
            select(Notification.status).where(Notification.channel == "email")
        ).scalars()
        assert sorted(emails) == ["sent", "sent"]


# --- where a destination's messages may go -----------------------------------------------------


@pytest.fixture
def outgoing(monkeypatch):
    """Every HTTP request Apprise makes, recorded instead of sent: a Matrix server's
    ``.well-known`` answer names another home server (as a hostile one would), anything else
    is refused (403)."""
    import requests

    sent: list[str] = []

    def fake(session, request, **kwargs):
        sent.append(request.url)
        response = requests.Response()
        response.url, response.request = request.url, request
        response.headers["Content-Type"] = "application/json"
        response.status_code, body = 403, {"errcode": "M_FORBIDDEN"}
        if request.url.endswith("/.well-known/matrix/client"):
            response.status_code = 200
            body = {"m.homeserver": {"base_url": "https://169.254.169.254"}}
        elif request.url.endswith("/_matrix/client/versions"):
            response.status_code, body = 200, {"versions": ["v1.11"]}
        response.raw = io.BytesIO(json.dumps(body).encode())
        return response

    monkeypatch.setattr("requests.sessions.Session.send", fake)
    return sent


def test_a_matrix_server_cannot_send_its_messages_to_another_host(production, resolving, outgoing):
    """Apprise's Matrix plugin asks the server named in the URL where its home server is
    (``/.well-known/matrix/client``) and then logs in there, with the URL's password: a public
    name passed the address rules, and its answer sent the messages (and the password) to
    169.254.169.254, an address the rules refuse. Server discovery is off: the URL names the
    home server itself."""
    resolving["matrix.example"] = "93.184.216.34"
    world = build_world(production, "prod")
    client = production.test_client()
    made = _made(client, bearer(world.key), url="matrixs://bot:pw@matrix.example/#approvals")
    assert made["service"] == "Matrix"
    test = client.post(f"{DESTINATIONS}/{made['id']}/test", json={}, headers=bearer(world.key))
    assert test.status_code == 201
    send(production)
    assert outgoing  # it tried, and only the host the URL names
    assert {urlsplit(url).hostname for url in outgoing} == {"matrix.example"}


def test_a_name_that_turns_private_between_the_check_and_the_connection_is_refused(
    tmp_path, monkeypatch
):
    """The send checked the name's addresses, then Apprise (requests) resolved it again to
    connect: a name answering a public address twice, then 127.0.0.1 (DNS rebinding, a TTL of
    0), had its message posted inside the network. The connection is now made to the addresses
    checked, as the webhooks' is."""
    import socket

    app = make_app(tmp_path, WEBHOOK_ALLOW_PRIVATE=False)  # staging: plain json:// allowed
    world = build_world(app)
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "93.184.216.34"])  # at the save's check, at the send's

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        address = next(answers, "127.0.0.1")  # and then, inside
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with Receiver() as receiver:
        port = receiver.server.server_port
        made = _made(app.test_client(), bearer(world.key), url=f"json://rebind.example:{port}/x")
        tested = app.test_client().post(
            f"{DESTINATIONS}/{made['id']}/test", json={}, headers=bearer(world.key)
        )
        assert tested.status_code == 201
        send(app)
        assert receiver.received == []
    with app.app_context():
        row = db.session.get(Notification, tested.get_json()["id"])
        assert (row.status, row.attempts) == ("pending", 1)
        assert "rebind" not in row.last_error


@pytest.mark.parametrize(
    "url, shown",
    [
        # Apprise's privacy form shows these whole: a JSON receiver's path, an ntfy topic (on
        # ntfy.sh the topic is all it takes to read the messages), a chat id.
        (
            "jsons://hooks.example.com/catch/SECRETPATH?token=SECRETQ",
            "jsons://hooks.example.com/c...h/S...H",
        ),
        ("ntfys://ntfy.example.com/SECRETTOPIC", "ntfys://ntfy.example.com/S...C"),
        ("ntfy://SECRETTOPIC", "ntfys://S...C"),
        ("tgram://123456789:SECRETBOTTOKEN/987654321", "tgram://1...N/9...1/"),
        # What Apprise shortens itself stays as it shows it; a server's name is no secret.
        ("mmosts://chat.example.com/SECRETTOKEN", "mmosts://chat.example.com/S...N/"),
        ("jsons://bot:SECRET@hooks.example.com/in", "jsons://bot:****@hooks.example.com/..."),
        ("jsons://hooks.example.com/@SECRETPATH", "jsons://hooks.example.com/@...H"),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/@ana",
            "slack://T...2/A...D/T...Q/@ana/",
        ),
    ],
)
def test_no_secret_of_a_url_is_shown_whole(app, world, client, url, shown):
    """A destination's answer, list and audit event show its URL masked: Apprise's privacy form
    left a JSON receiver's path and an ntfy topic whole, in every answer a read-only key gets."""
    made = _made(client, bearer(world.key), url=url)
    assert made["url"] == shown
    listed = client.get(DESTINATIONS, headers=bearer(world.read_only_key)).get_json()["data"]
    assert [each["url"] for each in listed] == [shown]
    with app.app_context():
        events = db.session.execute(select(Event.data)).scalars().all()
    assert "SECRET" not in json.dumps(events) + json.dumps(listed)


@pytest.mark.parametrize(
    "url",
    [
        "jsons://h.example:0/x",
        "jsons://h.example:99999/x",
        "jsons://h.example:-1/x",
        "mmosts://h.example/token123?port=0",
    ],
)
def test_a_port_outside_1_to_65535_is_refused_as_for_webhooks(world, client, url):
    refused = client.post(DESTINATIONS, json={"name": "C", "url": url}, headers=bearer(world.key))
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "parameter_invalid",
        "message": "The URL's port is not a number from 1 to 65535.",
        "param": "url",
    }
    assert client.get(DESTINATIONS, headers=bearer(world.key)).get_json()["data"] == []


# --- preferences ---------------------------------------------------------------------------------


def test_a_preferences_patch_that_changes_nothing_records_nothing(app, world, client):
    """Every PATCH was recorded as a change of every field it named, and set ``updated``: an
    empty body, or one repeating the saved values, filled the audit trail (and the webhooks)
    with changes that never happened. Only what changes is recorded, as for destinations."""
    key = bearer(world.key)
    for body in ({}, {"approved": True, "digest": False}):
        same = client.patch(PREFERENCES, json=body, headers=key)
        assert same.status_code == 200
        assert same.get_json()["updated"] is None
    changed = client.patch(PREFERENCES, json={"approved": False, "digest": False}, headers=key)
    assert changed.get_json()["approved"] is False and changed.get_json()["updated"] is not None
    with app.app_context():
        recorded = db.session.execute(
            select(Event.data).where(Event.type == "member.notification_preferences_changed")
        ).scalars()
        assert list(recorded) == [{"member": world.people["owner"], "fields": ["approved"]}]


# --- the list of notifications -------------------------------------------------------------------


@pytest.mark.parametrize(
    "destination, status, answer",
    [
        (
            "ntd_nope",
            404,
            {
                "error": "resource_missing",
                "message": "No such notification destination: 'ntd_nope'.",
                "param": "destination",
            },
        ),
        (
            "%00",
            400,
            {
                "error": "parameter_invalid",
                "message": "Invalid destination: not an object id.",
                "param": "destination",
            },
        ),
        (
            "x" * 65,
            400,
            {
                "error": "parameter_invalid",
                "message": "Invalid destination: not an object id.",
                "param": "destination",
            },
        ),
    ],
)
def test_an_unknown_destination_filter_names_the_destination_parameter(
    world, client, destination, status, answer
):
    """The refusal named ``id``, a parameter this list does not have."""
    response = client.get(f"/v2/notifications?destination={destination}", headers=bearer(world.key))
    assert (response.status_code, response.get_json()) == (status, answer)


@pytest.mark.parametrize(
    "query, param",
    [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1000000000", "limit"),
        ("limit=1&limit=2", "limit"),
        ("starting_after=%00", "starting_after"),
        ("starting_after=ntf_nope", "starting_after"),
        ("starting_after=a&ending_before=b", "ending_before"),
        ("status=bogus", "status[0]"),
        ("channel=sms", "channel"),
        ("unknown=1", "unknown"),
    ],
)
def test_odd_list_queries_are_a_400_naming_the_parameter(world, client, query, param):
    """Withstood: each answered as here."""
    response = client.get(f"/v2/notifications?{query}", headers=bearer(world.key))
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    assert response.get_json()["param"] == param


# --- withstood: odd strings, other organizations, read-only keys, forms, races -------------------


@pytest.mark.parametrize(
    "raw, param",
    [
        ('{"name": "\\ud800", "url": "json://1.2.3.4/x"}', "name"),
        ('{"name": "Chat", "url": "json://1.2.3.4/\\udfff"}', "url"),
        ('{"name": "a\\u0000b", "url": "json://1.2.3.4/x"}', "name"),
        ('{"name": "Chat", "url": "json://1.2.3.4/\\u0000"}', "url"),
        ('{"name": "Chat", "url": "json://1.2.3.4/x", "events": ["approved", 1]}', "events[1]"),
        (
            json.dumps({"name": "Chat", "url": "json://1.2.3.4/x", "events": ["approved"] * 7}),
            "events",
        ),
    ],
)
def test_odd_strings_in_a_destination_are_a_400_and_add_nothing(app, world, client, raw, param):
    """Withstood: lone surrogates (no database can store them), NUL, and more kinds than there
    are."""
    response = client.post(
        DESTINATIONS, data=raw, content_type="application/json", headers=bearer(world.key)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    assert response.get_json()["param"] == param
    with app.app_context():
        count = db.session.execute(select(func.count()).select_from(NotificationDestination))
        assert count.scalar() == 0


@pytest.mark.parametrize("body", [{"name": None}, {"url": None}, {"events": None}, {"events": []}])
def test_a_patch_cannot_null_or_empty_a_required_field(world, client, body):
    made = _made(client, bearer(world.key))
    path = f"{DESTINATIONS}/{made['id']}"
    refused = client.patch(path, json=body, headers=bearer(world.key))
    assert refused.status_code == 400
    assert refused.get_json()["param"] == next(iter(body))
    assert client.get(path, headers=bearer(world.key)).get_json() == made


def test_graphql_refuses_odd_ids_and_names_and_read_only_keys(app, world, client):
    from .test_graphql import gql

    made = _made(client, bearer(world.key))
    one = "query($id: ID!) { notificationDestination(id: $id) { id } }"
    for odd in ("ntd_\ud800", "a\x00"):
        (error,) = gql(client, world.key, one, {"id": odd}).get_json()["errors"]
        assert error["extensions"] == {"code": "parameter_invalid", "param": "id"}
    rename = (
        "mutation($id: ID!, $n: String!) "
        "{ updateNotificationDestination(id: $id, input: {name: $n}) { id } }"
    )
    answer = gql(client, world.key, rename, {"id": made["id"], "n": "\ud800"}).get_json()
    assert answer["errors"][0]["extensions"]["param"] == "input.name"
    for mutation in (
        'mutation { deleteNotificationDestination(id: "%s") { id } }',
        'mutation { sendNotificationDestinationTest(id: "%s") { id } }',
        'mutation { updateNotificationDestination(id: "%s", input: {enabled: false}) { id } }',
        "mutation { updateNotificationPreferences(input: {digest: true}) { digest } } # %s",
    ):
        refused = gql(client, world.read_only_key, mutation % made["id"])
        assert refused.status_code == 403
        assert refused.get_json()["error"] == "read_only_key"
    assert client.get(f"{DESTINATIONS}/{made['id']}", headers=bearer(world.key)).get_json() == made


def test_another_organizations_admin_finds_no_destination_in_the_dashboard(app, world, client):
    """Withstood: every page and button of another organization's destination is a 404, as an
    unknown id is; and a button without the CSRF token changes nothing."""
    from .dashboard import post_form, sign_in

    admin = app.test_client()
    assert sign_in(admin, "admin@acme.example").status_code == 303
    other = build_world(app, "globex")
    theirs = _made(client, bearer(other.key))
    base = f"/settings/notifications/destinations/{theirs['id']}"
    assert admin.get(base).status_code == 404
    for action in ("", "/test", "/enable", "/disable", "/delete"):
        form = {"edit-name": "Mine now", "edit-events": ["approved"]}
        response = post_form(admin, base + action, form, token_from="/settings/notifications")
        assert response.status_code == 404, action
    mine = _made(client, bearer(world.key))
    forged = admin.post(f"/settings/notifications/destinations/{mine['id']}/disable")
    assert forged.status_code == 400  # no CSRF token
    for key, made in ((other.key, theirs), (world.key, mine)):
        shown = client.get(f"{DESTINATIONS}/{made['id']}", headers=bearer(key)).get_json()
        assert shown == made


def test_concurrent_creations_never_pass_the_cap_of_16(app, world):
    import threading

    for number in range(14):
        _made(app.test_client(), bearer(world.key), name=f"Chat {number}")
    start, answers = threading.Barrier(6), []

    def create_one(number: int) -> None:
        start.wait()
        body = {"name": f"Race {number}", "url": "json://1.2.3.4:9/chat"}
        response = app.test_client().post(DESTINATIONS, json=body, headers=bearer(world.key))
        answers.append(response.status_code)

    threads = [threading.Thread(target=create_one, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [201, 201, 409, 409, 409, 409]
    with app.app_context():
        count = db.session.execute(select(func.count()).select_from(NotificationDestination))
        assert count.scalar() == 16

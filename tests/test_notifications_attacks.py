"""What an outside attack on notifications found, each now a test: a key or a signed-in member of
their own organization against the preferences, the destinations, the list of notifications,
GraphQL and Settings → Notifications. The defects it found are fixed; the attacks the code
withstood are kept here too, so that it goes on withstanding them."""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.notifications.models import Notification

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
    assert changed.get_json()["url"] == "json://1.2.3.4:9/again"
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

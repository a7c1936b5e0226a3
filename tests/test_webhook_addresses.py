"""Where webhooks may go, continued: IPv6 addresses that carry an IPv4 address (NAT64, 6to4,
IPv4-compatible) judged by the address they carry, at save and at connection; and URLs that
hold invisible characters or port 0, refused on every surface."""

from __future__ import annotations

import random
import re

import httpcore
import pytest
from sqlalchemy import func, select

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.webhooks.models import WebhookDelivery, WebhookEndpoint
from discountflow.webhooks.safety import GuardedBackend, UnsafeDestination
from discountflow.webhooks.worker import Worker

from .approvals_world import build_world, create
from .conftest import bearer
from .receiver import Receiver

REFUSED_BECAUSE = (
    ", a loopback, private, link-local or reserved address: webhooks go to public addresses "
    "only (WEBHOOK_ALLOW_PRIVATE lifts this for receivers on your own network)."
)

# The addresses, each with what it reaches (as the resolver writes it, and what it holds).
CARRYING_PRIVATE = [
    ("64:ff9b::a00:1", "64:ff9b::a00:1", "(carrying 10.0.0.1)"),  # NAT64, well-known prefix
    ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "(carrying 169.254.169.254)"),
    ("64:ff9b:1::a00:1", "64:ff9b:1::a00:1", "(a local-use NAT64 address)"),
    ("64:ff9b::7f00:1", "64:ff9b::7f00:1", "(carrying 127.0.0.1)"),
    ("2002:a9fe:a9fe::", "2002:a9fe:a9fe::", "(carrying 169.254.169.254)"),  # 6to4
    ("2002:a00:1::", "2002:a00:1::", "(carrying 10.0.0.1)"),
    ("::a9fe:a9fe", "::169.254.169.254", "(carrying 169.254.169.254)"),  # IPv4-compatible
    ("::127.0.0.1", "::127.0.0.1", "(carrying 127.0.0.1)"),
]
CARRYING_PUBLIC = ["64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8"]  # 8.8.8.8 inside


def _endpoints(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(WebhookEndpoint)).scalar()


def _audit_rows(app, kind: str) -> int:
    with app.app_context():
        statement = select(func.count()).select_from(Event).where(Event.type == kind)
        return db.session.execute(statement).scalar()


# --- an IPv4 address inside an IPv6 one, at save ------------------------------------------------


@pytest.mark.parametrize("literal, resolved, carried", CARRYING_PRIVATE)
def test_production_refuses_an_ipv6_address_carrying_a_private_one(
    production, literal, resolved, carried
):
    world = build_world(production, "prod")
    client = production.test_client()
    refused = client.post(
        "/v2/webhook_endpoints",
        json={"url": f"https://[{literal}]/hooks"},
        headers=bearer(world.key),
    )
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "parameter_invalid",
        "message": f"{literal} resolves to {resolved} {carried}{REFUSED_BECAUSE}",
        "param": "url",
    }
    assert _endpoints(production) == 0


def test_production_refuses_a_name_resolving_to_nat64_of_a_private_address(production, resolving):
    resolving["nat64.example"] = "64:ff9b::a00:1"
    world = build_world(production, "prod")
    client = production.test_client()
    resolving["public.example"] = "93.184.216.34"
    created = client.post(
        "/v2/webhook_endpoints",
        json={"url": "https://public.example/hooks"},
        headers=bearer(world.key),
    )
    assert created.status_code == 201
    changed = client.patch(
        f"/v2/webhook_endpoints/{created.get_json()['id']}",
        json={"url": "https://nat64.example/hooks"},
        headers=bearer(world.key),
    )
    assert changed.status_code == 400
    assert changed.get_json() == {
        "error": "parameter_invalid",
        "message": f"nat64.example resolves to 64:ff9b::a00:1 (carrying 10.0.0.1){REFUSED_BECAUSE}",
        "param": "url",
    }
    with production.app_context():
        (endpoint,) = db.session.execute(select(WebhookEndpoint)).scalars()
        assert endpoint.url == "https://public.example/hooks"


def test_graphql_refuses_an_ipv6_address_carrying_a_private_one(production):
    from .test_graphql import gql

    world = build_world(production, "prod")
    refused = gql(
        production.test_client(),
        world.key,
        "mutation($input: WebhookEndpointCreateInput!) { createWebhookEndpoint(input: $input) "
        "{ id } }",
        {"input": {"url": "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "events": ["*"]}},
    ).get_json()
    (error,) = refused["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "url"}
    assert error["message"] == (
        "64:ff9b::a9fe:a9fe resolves to 64:ff9b::a9fe:a9fe (carrying 169.254.169.254)"
        + REFUSED_BECAUSE
    )
    assert _endpoints(production) == 0


@pytest.mark.parametrize("literal", CARRYING_PUBLIC)
def test_an_ipv6_address_carrying_a_public_one_is_allowed(production, literal):
    """The address carried decides: NAT64 or 6to4 of 8.8.8.8 is as public as 8.8.8.8."""
    world = build_world(production, "prod")
    created = production.test_client().post(
        "/v2/webhook_endpoints",
        json={"url": f"https://[{literal}]/hooks"},
        headers=bearer(world.key),
    )
    assert created.status_code == 201
    assert created.get_json()["url"] == f"https://[{literal}]/hooks"


# --- ... and at connection ----------------------------------------------------------------------


@pytest.fixture
def no_connection(monkeypatch):
    """Fail the test if the guard opens a connection at all."""
    opened = []

    def connect(self, host, port, *args, **kwargs):
        opened.append((host, port))
        raise httpcore.ConnectError("the test allows no connection")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect)
    return opened


@pytest.mark.parametrize("literal, resolved, carried", CARRYING_PRIVATE)
def test_the_connection_guard_refuses_an_ipv6_address_carrying_a_private_one(
    resolving, no_connection, literal, resolved, carried
):
    resolving["hooks.example"] = resolved
    backend = GuardedBackend(allow_private=False)
    with pytest.raises(UnsafeDestination) as refused:
        backend.connect_tcp("hooks.example", 443, timeout=1)
    assert str(refused.value) == f"hooks.example resolves to {resolved} {carried}{REFUSED_BECAUSE}"
    assert no_connection == []


@pytest.mark.parametrize("literal", CARRYING_PUBLIC)
def test_the_connection_guard_connects_to_an_ipv6_address_carrying_a_public_one(
    resolving, no_connection, literal
):
    resolving["hooks.example"] = literal
    with pytest.raises(httpcore.ConnectError, match="the test allows no connection"):
        GuardedBackend(allow_private=False).connect_tcp("hooks.example", 443, timeout=1)
    assert no_connection == [(literal, 443)]  # the address checked, not the name


def test_the_worker_refuses_a_name_that_turns_into_nat64_of_loopback(production, resolving):
    with Receiver() as receiver:
        resolving["rebind.example"] = "93.184.216.34"
        world = build_world(production, "prod")
        hook = (
            production.test_client()
            .post(
                "/v2/webhook_endpoints",
                json={"url": f"https://rebind.example:{receiver.server.server_port}/x"},
                headers=bearer(world.key),
            )
            .get_json()
        )
        resolving["rebind.example"] = "64:ff9b::7f00:1"  # 127.0.0.1 behind a NAT64 gateway
        create(world, "rep", 20, submit=True)
        with production.app_context():
            worker = Worker(rng=random.Random(1))
            assert worker.run_once() >= 1
            statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook["id"])
            delivery = db.session.execute(statement).scalars().first()
            assert delivery.status == "pending"
            assert (
                "rebind.example resolves to 64:ff9b::7f00:1 (carrying 127.0.0.1)"
                in delivery.last_error
            )
        assert receiver.received == []


# --- what a URL may hold ------------------------------------------------------------------------

INVISIBLE = {
    "CR": ("\r", "U+000D"),
    "LF": ("\n", "U+000A"),
    "TAB": ("\t", "U+0009"),
    "space": (" ", "U+0020"),
    "line separator": ("\u2028", "U+2028"),
    "zero-width space": ("\u200b", "U+200B"),
}
# The character at position 24 (from 1), inside the path: stripping the ends does not help.
SPLIT = "https://hooks.example/a{}b"


def _invisible_message(code: str) -> str:
    return (
        "A webhook URL holds no spaces, tabs, line breaks or other invisible characters "
        f"({code} at character 24): percent-encode it (a space is %20)."
    )


PORT_MESSAGE = "The URL's port is not a number from 1 to 65535."


@pytest.mark.parametrize("name", INVISIBLE)
def test_the_api_refuses_a_url_holding_an_invisible_character(app, api, name):
    character, code = INVISIBLE[name]
    created = api("POST", "/v2/webhook_endpoints", json={"url": SPLIT.format(character)})
    assert created.status_code == 400
    assert created.get_json() == {
        "error": "parameter_invalid",
        "message": _invisible_message(code),
        "param": "url",
    }
    assert _endpoints(app) == 0
    assert _audit_rows(app, "webhook_endpoint.created") == 0


@pytest.mark.parametrize("name", INVISIBLE)
def test_an_update_refuses_a_url_holding_an_invisible_character(app, api, name):
    character, code = INVISIBLE[name]
    hook = api("POST", "/v2/webhook_endpoints", json={"url": "https://hooks.example/ab"})
    assert hook.status_code == 201
    path = f"/v2/webhook_endpoints/{hook.get_json()['id']}"
    changed = api("PATCH", path, json={"url": SPLIT.format(character)})
    assert changed.status_code == 400
    assert changed.get_json() == {
        "error": "parameter_invalid",
        "message": _invisible_message(code),
        "param": "url",
    }
    assert api("GET", path).get_json()["url"] == "https://hooks.example/ab"
    assert _audit_rows(app, "webhook_endpoint.updated") == 0


@pytest.mark.parametrize("url", ["https://hooks.example:0/x", "http://127.0.0.1:00/x"])
def test_the_api_refuses_port_0(app, api, url):
    created = api("POST", "/v2/webhook_endpoints", json={"url": url})
    assert created.status_code == 400
    assert created.get_json() == {
        "error": "parameter_invalid",
        "message": PORT_MESSAGE,
        "param": "url",
    }
    assert _endpoints(app) == 0


REFUSED_URLS = [
    (SPLIT.format(character), _invisible_message(code)) for character, code in INVISIBLE.values()
] + [("https://hooks.example:0/x", PORT_MESSAGE)]


def test_blanks_around_a_url_are_still_trimmed(app, api):
    created = api("POST", "/v2/webhook_endpoints", json={"url": "\t https://hooks.example/x \n"})
    assert created.status_code == 201
    assert created.get_json()["url"] == "https://hooks.example/x"


@pytest.mark.parametrize("url, message", REFUSED_URLS, ids=[*INVISIBLE, "port 0"])
def test_graphql_refuses_invisible_characters_and_port_0(app, client, world, url, message):
    from .test_graphql import gql

    refused = gql(
        client,
        world.key,
        "mutation($input: WebhookEndpointCreateInput!) { createWebhookEndpoint(input: $input) "
        "{ id } }",
        {"input": {"url": url, "events": ["*"]}},
    ).get_json()
    (error,) = refused["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "url"}
    assert error["message"] == message
    assert _endpoints(app) == 0


@pytest.mark.parametrize("url, message", REFUSED_URLS, ids=[*INVISIBLE, "port 0"])
def test_the_dashboard_refuses_invisible_characters_and_port_0(app, world, url, message):
    from markupsafe import escape

    from .dashboard import sign_in

    admin = app.test_client()
    sign_in(admin, "admin@acme.example")
    page = admin.get("/settings/webhooks")
    nonce = re.search(r'name="nonce" type="hidden" value="([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": token, "url": url, "events": "*", "enabled": "y", "nonce": nonce}
    refused = admin.post("/settings/webhooks", data=form)
    assert refused.status_code == 400
    assert str(escape(message)) in refused.text
    assert _endpoints(app) == 0

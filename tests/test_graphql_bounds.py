"""GraphQL's errors in production do not suggest the schema's names; staging's do."""

from __future__ import annotations

import re

import pytest

from .conftest import bearer, create_org, generate_key, make_app


def gql(client, key, query, variables=None, **body):
    payload = {"query": query, **body}
    if variables is not None:
        payload["variables"] = variables
    return client.post("/v2/graphql", json=payload, headers=bearer(key))


@pytest.fixture
def ask(client, world):
    def call(query, variables=None, **body):
        return gql(client, world.key, query, variables, **body)

    return call


# --- no suggestions in production ----------------------------------------------------------------

STATUSES = "query($s: [{}!]) {{ approvals(first: 1, status: $s) {{ pageInfo {{ hasNextPage }} }} }}"
TYPO = '{title: "T", customr: "C", currency: "USD"}'
MISTAKES = [
    ("{ mee { id } }", None),  # a field
    ("{ approvals(first: 1, statuss: [PENDING]) { edges { node { id } } } }", None),  # argument
    ("{ approvals(first: 1, status: [PENDIN]) { edges { node { id } } } }", None),  # enum value
    (STATUSES.format("ApprovalStatuss"), None),  # a type
    (f"mutation {{ createApproval(input: {TYPO}) {{ id }} }}", None),  # an input field
    (STATUSES.format("ApprovalStatus"), {"s": ["PENDIN"]}),  # a variable's value
    (
        "mutation($i: ApprovalCreateInput!) { createApproval(input: $i) { id } }",
        {"i": {"title": "T", "customr": "C", "currency": "USD"}},
    ),  # a variable's input field
]


@pytest.mark.parametrize(("query", "variables"), MISTAKES)
def test_names_are_suggested_in_staging_only(tmp_path, ask, query, variables):
    staging = ask(query, variables)
    assert staging.status_code == 400
    assert "Did you mean" in staging.get_data(as_text=True)
    production = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    _, owner = create_org(production, "live")
    response = gql(production.test_client(), generate_key(production, owner), query, variables)
    assert response.status_code == 400
    hinted = [error["message"] for error in staging.get_json()["errors"]]
    assert [error["message"] for error in response.get_json()["errors"]] == [
        re.sub(r" Did you mean [^?]*\?", "", message) for message in hinted
    ]
    assert "Did you mean" not in response.get_data(as_text=True)

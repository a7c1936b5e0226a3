"""GraphQL's work bounded before validation: a document is counted (definitions, fragment
spreads, selections, and the depth, alias and cost limits) before graphql-core validates it,
validated once whatever its comments and spacing, and no document, within the limits or not,
is answered with a server error. The CPU the worst ones take: ``bench/graphql_worst.py``."""

from __future__ import annotations

import re
import uuid

import hypothesis
import pytest
from hypothesis import strategies as st

from bench.graphql_worst import BUILDERS, build, within_limits

from .conftest import bearer, create_org, generate_key, make_app

CODES = {"parameter_invalid", "permission_denied", "resource_missing", "query_too_complex"}


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


@pytest.fixture
def validations(monkeypatch):
    """The documents graphql-core validates (Strawberry's validation step, counted)."""
    import strawberry.schema.schema as strawberry_schema

    seen = []
    validate = strawberry_schema.validate_document

    def counting(schema, document, rules):
        seen.append(document)
        return validate(schema, document, rules)

    monkeypatch.setattr(strawberry_schema, "validate_document", counting)
    return seen


def _unique() -> str:
    """A name no other test's document holds (the documents are remembered per process)."""
    return "u" + uuid.uuid4().hex[:12]


# --- bounded before validation -------------------------------------------------------------------


def test_the_150_fragment_document_is_refused_before_validation(ask, validations):
    """The reported document: 150 fragments spread side by side, cost 1, no alias."""
    spreads = " ".join(f"...F{n}" for n in range(150))
    fragments = " ".join(f"fragment F{n} on Query {{ me {{ id }} }}" for n in range(150))
    response = ask(f"{{ {spreads} }} {fragments} #{uuid.uuid4()}")
    assert response.status_code == 400
    assert response.get_json() == {
        "errors": [
            {
                "message": "The query has 151 definitions; the limit is 20.",
                "extensions": {"code": "query_too_complex", "definitions": 151, "limit": 20},
            },
            {
                "message": "The query has 150 fragment spreads; the limit is 50.",
                "extensions": {"code": "query_too_complex", "spreads": 150, "limit": 50},
            },
            {
                "message": "The query has 450 selections; the limit is 100.",
                "extensions": {"code": "query_too_complex", "selections": 450, "limit": 100},
            },
        ],
        "extensions": {"cost": {"requested": 1}},
    }
    assert validations == []


def test_too_many_aliases_are_refused_before_validation(ask, validations):
    response = ask("{ " + " ".join(f"a{n}: me {{ id }}" for n in range(120)) + " }")
    assert response.status_code == 400
    assert [error["extensions"] for error in response.get_json()["errors"]] == [
        {"code": "query_too_complex", "selections": 240, "limit": 100},
        {"code": "query_too_complex", "aliases": 120},
    ]
    assert validations == []


def test_depth_and_cost_are_refused_before_validation(ask, validations):
    costly = ask("{ approvals(first: 100) { edges { node { lineItems(first: 100) { id } } } } }")
    assert costly.status_code == 400
    assert costly.get_json()["errors"][0]["extensions"]["code"] == "query_too_complex"
    assert validations == []


@pytest.mark.parametrize(
    ("name", "document"),
    [
        (
            "definitions",
            lambda n: (
                "{ me { id } } "
                + " ".join(f"fragment F{i} on Query {{ me {{ id }} }}" for i in range(n - 1))
            ),
        ),
        (
            "spreads",
            lambda n: "{ " + " ".join(["...F"] * n) + " } fragment F on Query { me { id } }",
        ),
        ("selections", lambda n: "{ me { " + " ".join(["id"] * (n - 1)) + " } }"),
        ("directives", lambda n: "{ me { " + " ".join(["id @include(if: true)"] * n) + " } }"),
        (
            "values",  # first: 1, the list, and its items
            lambda n: (
                "{ approvals(first: 1, status: ["
                + " ".join(["PENDING"] * (n - 2))
                + "]) { edges { node { id } } } }"
            ),
        ),
    ],
)
def test_definitions_spreads_and_selections_are_counted_to_their_limit(ask, name, document):
    from discountflow.graphql_limits import (
        MAX_DEFINITIONS,
        MAX_DIRECTIVES,
        MAX_SELECTIONS,
        MAX_SPREADS,
        MAX_VALUES,
    )

    limit = {
        "definitions": MAX_DEFINITIONS,
        "spreads": MAX_SPREADS,
        "selections": MAX_SELECTIONS,
        "directives": MAX_DIRECTIVES,
        "values": MAX_VALUES,
    }[name]
    # (Unused fragments are the specification's refusal, not ours: only the count matters.)
    within = ask(document(limit))
    assert all(
        error["extensions"]["code"] != "query_too_complex"
        for error in within.get_json().get("errors", [])
    ), within.get_json()
    over = ask(document(limit + 1))
    assert over.status_code == 400
    errors = over.get_json()["errors"]
    assert {"code": "query_too_complex", name: limit + 1, "limit": limit} in [
        error["extensions"] for error in errors
    ]


def test_a_document_within_the_limits_answers(ask):
    spreads = " ".join(f"...F{n}" for n in range(19))
    fragments = " ".join(f"fragment F{n} on Query {{ me {{ id }} }}" for n in range(19))
    response = ask(f"{{ {spreads} }} {fragments}")
    assert response.status_code == 200
    assert response.get_json()["data"] == {"me": {"id": response.get_json()["data"]["me"]["id"]}}


# --- remembered by the normalized document -------------------------------------------------------


def test_comments_and_spacing_do_not_make_a_new_document_to_validate(ask, validations):
    name = _unique()
    first = ask(f"{{ {name}: me {{ id }} }} #{uuid.uuid4()}")
    second = ask(f"\n\n  {{\n {name}: me {{ id, }} }}  # {uuid.uuid4()}\n")
    assert first.status_code == second.status_code == 200
    assert first.get_json()["data"] == second.get_json()["data"]
    assert len(validations) == 1
    renamed = ask(f"{{ {name}x: me {{ id }} }}")  # another document: validated
    assert renamed.status_code == 200
    assert len(validations) == 2


def test_an_invalid_documents_errors_locate_its_own_text(ask):
    name = _unique()
    first = ask(f"{{ {name} }}")
    again = ask(f"\n\n   {{ {name} }} # spaced")
    assert first.get_json()["errors"][0]["locations"] == [{"line": 1, "column": 3}]
    assert again.get_json()["errors"][0]["locations"] == [{"line": 3, "column": 6}]
    assert first.status_code == again.status_code == 400


def test_a_document_remembered_as_valid_still_counts_its_variables(ask):
    """Validation is remembered; ``first: $n`` is counted with each request's variables."""
    query = (
        f"query {_unique()}($n: Int!) {{ approvals(first: $n) {{ edges {{ node {{ id }} }} }} }}"
    )
    assert ask(query, {"n": 5}).status_code == 200
    refused = ask(query, {"n": 500})
    assert refused.status_code == 400
    (error,) = refused.get_json()["errors"]
    assert error["extensions"] == {"code": "parameter_invalid", "param": "first"}


# --- never a server error ------------------------------------------------------------------------

ON_QUERY = [
    "me { id }",
    "me { id keyId organization { id } }",
    "organization { id name }",
    "approvals(first: 2) { edges { node { id status } } pageInfo { hasNextPage } }",
    "members(first: 2) { edges { node { id } } }",
    'products(first: 1, q: "x") { edges { node { id } } }',
    "__typename",
    "nope",
    "me",
    "approvals(first: 3) { edges { node { id } } }",
]
DIRECTIVES = ["", "@include(if: $b)", "@skip(if: true)", "@skip(if: $b) @include(if: $b)"]


@st.composite
def documents(draw) -> str:
    """A document of fragments, spreads (cycles too), inline fragments, directives, variables,
    nesting and aliases, of any size around the limits."""
    fragments = draw(st.integers(0, 30))
    names = [f"F{n}" for n in range(fragments)]

    def selections(size: int) -> list[str]:
        chosen = []
        for _ in range(size):
            kind = draw(st.sampled_from(["field", "field", "spread", "inline", "alias"]))
            directive = draw(st.sampled_from(DIRECTIVES))
            field = draw(st.sampled_from(ON_QUERY))
            if kind == "spread" and names:
                chosen.append(f"...{draw(st.sampled_from(names))} {directive}")
            elif kind == "inline":
                depth = draw(st.integers(1, 30))
                chosen.append("... on Query { " * depth + field + " }" * depth)
            elif kind == "alias":
                chosen.append(f"a{draw(st.integers(0, 40))}: {field}")
            else:  # the directive after the field's name and arguments
                at = field.find(" {") if " {" in field else len(field)
                chosen.append(f"{field[:at]} {directive}{field[at:]}")
        return chosen

    repeat = draw(st.integers(1, 12))
    top = selections(draw(st.integers(1, 12))) * repeat
    variables = "".join(f"$v{n}: Int = {n} " for n in range(draw(st.integers(0, 30))))
    operation = f"query Q($b: Boolean = true {variables}) {{ {' '.join(top)} }}"
    defined = [
        f"fragment {name} on Query {{ {' '.join(selections(draw(st.integers(1, 6))))} }}"
        for name in names
    ]
    comment = draw(st.sampled_from(["", " # a comment", "\n#\n"]))
    return operation + " " + " ".join(defined) + comment


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
    database=None,
)
@hypothesis.given(document=documents())
def test_no_document_is_a_server_error(ask, document):
    response = ask(document)
    assert response.status_code in (200, 400), (response.status_code, document)
    body = response.get_json()
    for error in body.get("errors", []):
        assert error["message"] != "Internal server error", document
        assert error["extensions"]["code"] in CODES, error
    too_complex = any(
        error["extensions"]["code"] == "query_too_complex" for error in body.get("errors", [])
    )
    assert too_complex == (not within_limits(document)), document


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_worst_documents_within_the_limits_are_answered(ask, name):
    """``bench/graphql_worst.py``'s documents: within the limits, so answered, never a 500."""
    document = build(BUILDERS[name]).replace(" W", " W1", 1)
    response = ask(document, operationName="W1")
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    for error in response.get_json().get("errors", []):
        assert error["extensions"]["code"] in CODES - {"query_too_complex"}, error


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


def test_a_large_input_goes_in_the_variables(ask):
    """The values limit counts what is written in the document: an approval of 100 lines
    (500 values written inline) is refused there and created from the variables."""
    line = {"description": "Seats", "quantity": 1, "unitListPrice": 1000, "unitPrice": 900}
    approval = {"title": "Big deal", "customer": "Acme", "currency": "USD"}
    inline_lines = ", ".join(
        ['{description: "Seats", quantity: 1, unitListPrice: 1000, unitPrice: 900}'] * 100
    )
    inline = ask(
        'mutation { createApproval(input: {title: "Big deal", customer: "Acme", '
        f'currency: "USD", lineItems: [{inline_lines}]}}) {{ id }} }}'
    )
    assert inline.status_code == 400
    assert [error["extensions"] for error in inline.get_json()["errors"]] == [
        {"code": "query_too_complex", "values": 505, "limit": 250}
    ]
    created = ask(
        "mutation($input: ApprovalCreateInput!) "
        "{ createApproval(input: $input) { lineItems(first: 100) { id } } }",
        {"input": {**approval, "lineItems": [line] * 100}},
    )
    assert created.status_code == 200, created.get_json()
    assert len(created.get_json()["data"]["createApproval"]["lineItems"]) == 100


@pytest.mark.parametrize(("number", "shown"), [("1e999999", "inf"), ("NaN", "nan")])
def test_a_number_json_cannot_hold_is_a_bad_variable(client, world, number, shown):
    """Python's JSON reads 1e999999 as infinity and NaN as not-a-number: neither is an Int."""
    query = "query($n: Int!) { approvals(first: $n) { edges { node { id } } } }"
    response = client.post(
        "/v2/graphql",
        data=f'{{"query": "{query}", "variables": {{"n": {number}}}}}',
        headers={**bearer(world.key), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["extensions"] == {"code": "parameter_invalid"}
    assert error["message"] == (
        f"Variable '$n' has invalid value: Int cannot represent non-integer value: {shown}"
    )


def test_a_list_nested_too_deeply_stops_the_parser(ask):
    response = ask("{ approvals(first: 1, status: " + "[" * 3000 + "]" * 3000 + ") { id } }")
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["extensions"]["code"] == "query_too_complex"
    assert "nested too deeply" in error["message"]

"""The GraphQL schema fuzzed by schemathesis, in-process: queries and mutations generated from
the committed schema, sent with the demo's key. No answer is a server error, and every answer
is valid GraphQL over HTTP (the refusals before execution excepted, which use REST's shape)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC

import hypothesis
import pytest
import schemathesis
from graphql import NameNode, ObjectFieldNode
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from discountflow.graphql import SDL_FILE

from .conftest import bearer, make_lasting_app, release_app

KEY_LINE = re.compile(r"^(sk|rk)_(test|live)_\S+$", re.MULTILINE)

MAX_EXAMPLES = 60

# The schema's own scalars, as the server takes them.
schemathesis.graphql.scalar("Long", st.integers(-(2**63), 2**63 - 1).map(nodes.Int))
schemathesis.graphql.scalar(
    "DateTime",
    st.datetimes(timezones=st.just(UTC)).map(
        lambda moment: nodes.String(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    ),
)
schemathesis.graphql.scalar(
    "JSON",
    st.lists(st.text(max_size=20), max_size=3).map(
        lambda values: nodes.Object(
            [
                ObjectFieldNode(name=NameNode(value=f"k{n}"), value=nodes.String(value))
                for n, value in enumerate(values)
            ]
        )
    ),
)

SCHEMA = schemathesis.graphql.from_path(SDL_FILE)
SCHEMA.location = "/v2/graphql"  # where the schema is served: requests go there
SCHEMA.config.generation.update(max_examples=MAX_EXAMPLES, database="none")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[tuple]:
    app = make_lasting_app(
        tmp_path_factory.mktemp("graphql-contract"),
        API_RATE_LIMIT="1000000 per minute",
        AUTH_FAILURE_LIMIT="1000000 per minute",
    )
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    (key,) = [match[0] for match in KEY_LINE.finditer(result.output)]
    yield app, key
    release_app(app)


@pytest.mark.slow  # generated queries and mutations, a few hundred of each
@SCHEMA.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
def test_every_query_and_mutation_is_answered_without_a_server_error(case, demo):
    app, key = demo
    response = case.call(app=app, headers=bearer(key))
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code in (401, 403, 413, 415, 429):
        assert set(body) <= {"error", "message", "param"}  # refused before execution: REST
        return
    assert isinstance(body, dict)
    assert set(body) <= {"data", "errors", "extensions"}
    assert body["extensions"]["cost"]["requested"] >= 1
    if response.status_code == 200:
        assert "data" in body
    else:
        assert response.status_code in (400, 422) and body["errors"]
    for error in body.get("errors", []):
        assert error["message"] != "Internal server error", error
        assert error["extensions"]["code"] in {
            "parameter_invalid",
            "permission_denied",
            "resource_missing",
            "invalid_state_transition",
            "conflict",
            "query_too_complex",
        }, error

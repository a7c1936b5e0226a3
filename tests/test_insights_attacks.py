"""Insights and the CSV downloads attacked from outside: as an API key, or a signed-in member
of their own organization. Every refusal is a 4xx in the documented shape (never a 500), and
nothing of another organization shows, not even whether one of its ids exists.

(The plain refusals of ``test_insights.py`` are not repeated here.)
"""

from __future__ import annotations

import csv
import io
import secrets

import pytest

from discountflow.approvals import services as approvals
from discountflow.approvals.schemas import ApprovalCreate
from discountflow.extensions import db
from discountflow.organizations.models import User
from discountflow.products import services as products
from discountflow.products.models import Product
from discountflow.products.schemas import ProductCreate

from .approvals_world import build_world, create
from .conftest import bearer
from .dashboard import sign_in, without_csrf_tokens
from .test_graphql import gql
from .test_insights import PERIOD, build_history

ARGUMENTS = (
    "$start: String, $end: String, $currency: String, $groupBy: String, $requestedBy: ID, "
    "$approvalLevel: ID, $product: ID"
)
INSIGHTS = (
    f"query({ARGUMENTS}) {{ insights(start: $start, end: $end, currency: $currency, "
    "groupBy: $groupBy, requestedBy: $requestedBy, approvalLevel: $approvalLevel, "
    "product: $product) { currency discount { approved listAmount } } }"
)


@pytest.fixture
def history(world):
    return build_history(world)


def _refused(response, param: str | None = None) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body["error"] == "parameter_invalid"
    assert set(body) <= {"error", "message", "param"}
    if param is not None:
        assert body["param"] == param
    return body


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[-500:]
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.text)))


# --- amounts beyond 64 bits ----------------------------------------------------------------------


def test_sums_of_the_largest_requests_do_not_overflow(client, api, world):
    """A request's total stays below 2^63, but ten of the largest add up beyond it: SQLite's
    sum() failed with "integer overflow" (a 503 "database unavailable" for everyone's
    Insights), and any member could cause it with ten auto-approved requests."""
    price, quantity, lines = 10_000_000_000, 1_000_000, 100  # every bound at its largest
    with world.app.app_context():
        products.create_product(
            world.actor("admin"),
            ProductCreate(
                sku="FLEET",
                name="Fleet",
                prices=[{"currency": "USD", "unit_list_price": price}],
            ),
        )
        body = {
            "title": "The largest",
            "customer": "Initech",
            "currency": "USD",
            "submit": True,
            "line_items": [
                {"sku": "FLEET", "quantity": quantity, "unit_price": price} for _ in range(lines)
            ],
        }
        data = ApprovalCreate.model_validate(body)
        for _ in range(10):  # at list price: auto-approved, by the member alone
            made = approvals.create_approval(world.actor("rep"), data)
            assert made.approval.status == "approved"
    total = 10 * lines * quantity * price  # 10^19 > 2^63 - 1
    answer = api("GET", "/v2/insights?top=1")
    assert answer.status_code == 200, answer.get_json()
    figures = answer.get_json()
    assert figures["discount"]["list_amount"] == figures["discount"]["net_amount"] == total
    assert figures["top_products"][0]["list_amount"] == total
    assert figures["top_requesters_by_count"][0]["list_amount"] == total
    graphql = gql(client, world.key, INSIGHTS).get_json()
    assert graphql["data"]["insights"]["discount"]["listAmount"] == total, graphql
    sign_in(client, "rep@acme.example")
    assert client.get("/insights").status_code == 200
    rows = _csv(client.get("/insights/products.csv"))
    assert rows[1][:2] == ["FLEET", "Fleet"]
    assert rows[1][4] == f"{total / 100:.2f}"


# --- the query string ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start=2026-01-01&start=2026-02-01", "start"),  # repeated
        ("top=1&top=2", "top"),
        ("top=-1", "top"),
        ("top=1e999", "top"),
        ("top=NaN", "top"),
        ("top=inf", "top"),
        ("top=", "top"),
        ("start=2026-01-01T00:00:00Z", "start"),  # a time, with its zone
        ("start=2026-01-01%2B05:00", "start"),
        ("end=2026-01-01Z", "end"),
        ("start=2026-01-01%00", "start"),
        ("start=%ED%A0%80", "start"),  # a lone surrogate, in UTF-8
        ("start=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", "start"),  # full-width digits
        ("start=%D9%A2%D9%A0%D9%A2%D9%A6-01-01", "start"),  # Arabic-Indic digits
        ("start=99999-01-01", "start"),
        ("start=0000-01-01", "start"),
        ("start=2026-1-1", "start"),
        ("end=1970-01-01", "start"),  # its 90 days would start in 1969
        ("start=9998-12-31", "start"),  # … or end in 9999
        ("start=2020-01-01&end=2022-12-31", "group_by"),  # 157 weeks
        ("group_by=", "group_by"),
        ("group_by=WEEK", "group_by"),
        ("currency=", "currency"),
        ("currency=" + "A" * 5000, "currency"),
        ("currency=US%00", "currency"),
        ("currency=%E2%82%AC%E2%82%AC%E2%82%AC", "currency"),
        ("currency=xxx", "currency"),
        ("requested_by=", "requested_by"),
        ("requested_by=%ED%A0%80", "requested_by"),
        ("product=%00", "product"),
        ("approval_level=%C0%80", "approval_level"),
        ("start[gte]=2026-01-01", "start[gte]"),
    ],
)
def test_junk_in_the_query_string_is_a_400(api, world, query, param):
    _refused(api("GET", f"/v2/insights?{query}"), param)


def test_what_is_accepted_at_the_edges(api, world):
    assert api("GET", "/v2/insights?currency=usd").get_json()["currency"] == "USD"
    edges = {
        "end=9998-12-31": ("9998-10-03", "9998-12-31"),
        "start=1970-01-01": ("1970-01-01", "1970-03-31"),
        "start=1970-01-01&end=1972-12-31&group_by=month": ("1970-01-01", "1972-12-31"),
    }
    for query, (start, end) in edges.items():
        period = api("GET", f"/v2/insights?{query}").get_json()["period"]
        assert (period["start"], period["end"]) == (start, end)


@pytest.mark.parametrize(
    "query",
    [
        "top=1e999",
        "top=NaN",
        "top=-1",
        "start=2026-01-01T00:00:00Z",
        "start=%ED%A0%80",
        "currency=US%00",
        "requested_by=%00",
        "end=1970-01-01",
        "start=2020-01-01&end=2022-12-31",
        "sort=desc",
    ],
)
def test_the_page_and_its_downloads_refuse_the_same_junk_with_a_400(client, world, query):
    sign_in(client, "rep@acme.example")  # not an admin
    for path in ("/insights", "/insights/discount.csv", "/insights/requesters-by-count.csv"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, response.status_code)
        assert response.mimetype == "text/html"


@pytest.mark.parametrize(
    ("variables", "param"),
    [
        ({"start": "\ud800"}, "start"),
        ({"end": "2026-01-01\x00"}, "end"),
        ({"start": "2026-01-01T00:00:00+05:00"}, "start"),
        ({"requestedBy": "\ud800"}, "requestedBy"),
        ({"product": "prd_\udfff"}, "product"),
        ({"approvalLevel": "\x00"}, "approvalLevel"),
        ({"approvalLevel": "lvl_" + "x" * 40}, "approvalLevel"),
        ({"currency": "\ud800SD"}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"groupBy": "\ud800"}, "groupBy"),
        ({"start": "9998-12-31"}, "start"),
    ],
)
def test_graphql_variables_of_junk_are_parameter_invalid(client, world, variables, param):
    import json

    response = client.post(
        "/v2/graphql",
        data=json.dumps({"query": INSIGHTS, "variables": variables}),  # lone surrogates kept
        content_type="application/json",
        headers=bearer(world.key),
    )
    assert response.status_code == 200
    (error,) = response.get_json()["errors"]
    assert error["extensions"]["code"] == "parameter_invalid", error
    assert error["extensions"]["param"] == param


@pytest.mark.parametrize(
    "document",
    [
        "{ ...F ...G } fragment F on Query { a: insights { currency } } "
        "fragment G on Query { b: insights { currency } }",
        "{ ... on Query { a: insights { currency } } ... { b: insights { currency } } }",
        '{ insights(currency: "USD") { currency } insights(currency: "EUR") { currency } }',
        "{ a: insights @skip(if: true) { currency } b: insights { currency } }",
    ],
)
def test_graphql_cannot_ask_for_insights_twice_by_fragments_or_directives(client, world, document):
    response = gql(client, world.read_only_key, document)
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["extensions"]["code"] == "query_too_complex"


def test_graphql_refuses_batches_of_insights(client, world):
    import json

    one = {"query": "{ insights { currency } }"}
    response = client.post(
        "/v2/graphql",
        data=json.dumps([one, one, one]),
        content_type="application/json",
        headers=bearer(world.key),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"


# --- another organization ------------------------------------------------------------------------


def _random_like(real: str) -> str:
    """An id of the same prefix and length as ``real`` that names nothing."""
    prefix, _, rest = real.partition("_")
    return f"{prefix}_{secrets.token_hex(len(rest))[: len(rest)]}"


def _masked(text: str, object_id: str) -> str:
    return without_csrf_tokens(text.replace(object_id, "<id>"))


def _other_organization_ids(app) -> dict[str, str]:
    other = build_world(app, "globex")
    build_history(other)
    return {
        "requested_by": other.people["rep"],
        "approval_level": other.levels["VP"],
        "product": other.products["SEAT"],
    }


def test_another_organizations_ids_answer_exactly_as_made_up_ones(app, client, world, history):
    """No oracle: for each filter, the answer to an id of another organization is the answer
    to a random id of the same shape, on REST, GraphQL, the page and each CSV, for an admin and
    for a member who is not one."""
    theirs = _other_organization_ids(app)
    graphql_names = {"requested_by": "requestedBy", "approval_level": "approvalLevel"}
    browsers = []
    for who in ("admin@acme.example", "rep@acme.example"):  # an admin, and a member
        browsers.append(app.test_client())
        assert sign_in(browsers[-1], who, organization="acme").status_code == 303

    def answers(name: str, value: str) -> list[tuple[int, str]]:
        found = []
        rest = client.get(f"/v2/insights?{PERIOD}&{name}={value}", headers=bearer(world.key))
        _refused(rest, name)
        found.append((rest.status_code, _masked(rest.get_data(as_text=True), value)))
        variables = {"start": "2026-01-05", graphql_names.get(name, name): value}
        answer = gql(client, world.key, INSIGHTS, variables)
        assert answer.get_json()["data"] is None
        found.append((answer.status_code, _masked(answer.get_data(as_text=True), value)))
        for browser in browsers:
            for path in ("/insights", "/insights/discount.csv", "/insights/products.csv"):
                page = browser.get(f"{path}?{PERIOD}&{name}={value}")
                assert page.status_code == 400
                found.append((page.status_code, _masked(page.text, value)))
        return found

    for name, real in theirs.items():
        assert answers(name, real) == answers(name, _random_like(real)), name


def test_nothing_of_another_organization_is_counted_or_named(app, client, world, history):
    theirs = _other_organization_ids(app)
    with app.app_context():
        rep = db.session.get(User, theirs["requested_by"])
        rep.name = "Globex Secret Rep"
        db.session.get(Product, theirs["product"]).name = "Globex Secret Seat"
        db.session.commit()
    assert sign_in(client, "admin@acme.example", organization="acme").status_code == 303
    page = client.get(f"/insights?{PERIOD}&group_by=month")
    assert page.status_code == 200
    assert "Globex Secret" not in page.text
    for name in ("requesters-by-discount", "requesters-by-count", "products"):
        export = client.get(f"/insights/{name}.csv?{PERIOD}").text
        assert "Globex Secret" not in export and "globex" not in export
    approvals_export = client.get("/approvals/export.csv").text
    assert "globex" not in approvals_export and theirs["requested_by"] not in approvals_export


# --- a member who is not an admin ----------------------------------------------------------------


def test_a_member_filtering_by_someone_else_sees_only_their_own_scope(client, world, history):
    """rep2's requests were neither made nor decided by rep: filtering on them shows nothing
    (the filter narrows the member's scope, it never widens it)."""
    sign_in(client, "rep@acme.example")
    query = f"{PERIOD}&requested_by={world.people['rep2']}"
    page = client.get(f"/insights?{query}")
    assert page.status_code == 200
    assert "rep2@acme.example" not in page.text.split("<main", 1)[1].split("</form>", 1)[1]
    for name in ("requesters-by-discount", "requesters-by-count", "products"):
        assert _csv(client.get(f"/insights/{name}.csv?{query}"))[1:] == []
    (_, *rows) = _csv(client.get(f"/insights/outcomes.csv?{query}"))
    assert {row[1] for row in rows} == {"0"}  # a4's rejection is rep2's


# --- formulas in the CSV files -------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_insights_csv_cells_starting_like_a_formula_are_quoted(client, world, history, start):
    with world.app.app_context():
        db.session.get(User, world.people["rep2"]).name = f"{start}cmd|' /C calc'!A0"
        db.session.get(Product, world.products["SEAT"]).name = f"{start}1+1"
        db.session.commit()
    sign_in(client, "admin@acme.example")
    people = _csv(client.get(f"/insights/requesters-by-count.csv?{PERIOD}"))
    assert f"'{start}cmd|' /C calc'!A0" in [row[0] for row in people[1:]]
    (_, product) = _csv(client.get(f"/insights/products.csv?{PERIOD}"))
    assert product[1] == f"'{start}1+1"
    for rows in (people, [product]):
        assert not any(str(cell).startswith(("=", "+", "-", "@")) for row in rows for cell in row)


@pytest.mark.parametrize("start", ["+", "-", "@", "="])
def test_approvals_csv_cells_starting_like_a_formula_are_quoted(client, world, start):
    with world.app.app_context():
        db.session.get(User, world.people["rep"]).name = f"{start}HYPERLINK(1)"
        db.session.commit()
    create(
        world,
        "rep",
        10,
        submit=True,
        title=f"{start}A1",
        customer=f"{start}B1",
        deal_reference=f"{start}C1",
    )
    sign_in(client, "admin@acme.example")
    header, row = _csv(client.get("/approvals/export.csv"))
    cells = dict(zip(header, row, strict=True))
    for column, value in (
        ("title", "A1"),
        ("customer", "B1"),
        ("deal_reference", "C1"),
        ("requested_by", "HYPERLINK(1)"),
    ):
        assert cells[column] == f"'{start}{value}"


@pytest.mark.parametrize(
    "query",
    [
        "?customer=%00",
        "?customer=" + "x" * 5000,
        "?status=pending&status=nope",
        "?status=%ED%A0%80",
    ],
)
def test_approvals_csv_refuses_bad_filters_with_a_400(client, world, query):
    sign_in(client, "rep@acme.example")
    assert client.get(f"/approvals/export.csv{query}").status_code == 400


def test_approvals_csv_customer_filter_takes_wildcards_literally(client, world):
    create(world, "rep", 10, customer="Initech")
    create(world, "rep", 10, customer="100% Cotton_Co")
    sign_in(client, "admin@acme.example")
    for query, expected in (("%25", {"100% Cotton_Co"}), ("_", {"100% Cotton_Co"})):
        (header, *rows) = _csv(client.get(f"/approvals/export.csv?customer={query}"))
        assert {row[header.index("customer")] for row in rows} == expected

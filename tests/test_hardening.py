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


# --- the dashboard's amounts, and one limit for the API and the forms ---------------------------

BAD_AMOUNTS = ["sNaN", "NaN", "Infinity", "1e999999", "1e-999999999", "-5", "1,25", "12.345"]


def _signed_in(app, who: str):
    from .dashboard import sign_in

    client = app.test_client()
    assert sign_in(client, f"{who}@acme.example").status_code == 303
    return client


def _approvals(app) -> int:
    from sqlalchemy import func, select

    from discountflow.approvals.models import Approval
    from discountflow.extensions import db

    with app.app_context():
        return db.session.execute(select(func.count()).select_from(Approval)).scalar_one()


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
@pytest.mark.parametrize("field", ["unit_list_price", "unit_price"])
def test_a_request_with_an_amount_that_is_no_amount_is_a_form_error(app, world, field, amount):
    from .dashboard import post_form
    from .test_dashboard_approvals import _request_form

    rep = _signed_in(app, "rep")
    before = _approvals(app)
    response = post_form(rep, "/approvals/new", _request_form(**{f"line_items-0-{field}": amount}))
    assert response.status_code == 400
    assert "Enter an amount such as 1,250.00" in response.text or "at most 2 decimals" in (
        response.text
    )
    assert _approvals(app) == before
    preview = post_form(
        rep, "/approvals/preview", _request_form(**{f"line_items-0-{field}": amount})
    )
    assert (
        preview.status_code == 200
        and "Enter an amount" in preview.text
        or ("decimals" in preview.text)
    )


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_level_cap_that_is_no_amount_is_a_form_error(app, world, amount):
    from .dashboard import post_form

    admin = _signed_in(app, "admin")
    response = post_form(
        admin,
        "/settings/approval-levels",
        {"name": "Board", "rank": "9", "max_discount_percent": "80", "cap_amount": amount},
    )
    assert response.status_code == 400


@pytest.mark.parametrize("percent", ["sNaN", "1e3", "NaN", "-1", "12,5"])
def test_a_percentage_that_is_no_number_is_a_form_error(app, world, percent):
    from .dashboard import post_form

    admin = _signed_in(app, "admin")
    response = post_form(
        admin,
        "/settings/organization",
        {"name": "Acme", "auto_approve_threshold_percent": percent, "default_validity_days": "30"},
    )
    assert response.status_code == 400
    assert "Enter a percentage such as 12.5" in response.text


def test_an_approval_of_100_lines_made_by_the_api_opens_in_the_dashboard(app, world, api):
    from .approvals_world import request_body

    body = request_body(*([10] * 100), deal_reference="D" * 100)
    body["line_items"][0]["sku"] = "S" * 100
    created = api("POST", "/v2/approvals", json=body)
    assert created.status_code == 201
    approval_id = created.get_json()["id"]
    owner = _signed_in(app, "owner")
    page = owner.get(f"/approvals/{approval_id}/edit")
    assert page.status_code == 200
    assert page.text.count('name="line_items-') >= 100 * 5
    assert 'maxlength="100"' in page.text  # the SKU and the deal reference: the API's limits


def test_the_form_and_the_api_allow_the_same_lengths():
    from discountflow.approvals import forms, schemas

    form = forms.ApprovalForm.__dict__
    assert forms.MAX_LINES == schemas.MAX_LINE_ITEMS
    limits = {
        "title": schemas.TITLE_LENGTH,
        "customer": schemas.CUSTOMER_LENGTH,
        "deal_reference": schemas.DEAL_REFERENCE_LENGTH,
        "justification": schemas.JUSTIFICATION_LENGTH,
    }
    for name, length in limits.items():
        field = form[name]
        assert any(getattr(v, "max", None) == length for v in field.kwargs["validators"]), name
    line = forms.LineItemForm.__dict__
    assert any(
        v.max == schemas.SKU_LENGTH for v in line["sku"].kwargs["validators"] if hasattr(v, "max")
    )


def test_edit_and_resubmit_in_the_dashboard_is_one_transaction(app, world):
    from discountflow.approvals import levels
    from discountflow.approvals.models import Approval
    from discountflow.extensions import db

    from .approvals_world import create
    from .dashboard import post_form
    from .test_dashboard_approvals import _request_form

    draft = create(world, "rep", 10)
    with app.app_context():
        for level_id in world.levels.values():  # nowhere to route: the submit is refused
            levels.delete_level(world.actor("admin"), level_id)
    rep = _signed_in(app, "rep")
    form = _request_form(title="Changed", **{"line_items-0-unit_price": "600"})  # 50 % off
    response = post_form(rep, f"/approvals/{draft}/edit", form, token_from=f"/approvals/{draft}")
    assert response.status_code == 400
    assert "no approval levels" in response.text
    with app.app_context():
        approval = db.session.get(Approval, draft)
        assert (approval.title, approval.status) == ("Deal", "draft")

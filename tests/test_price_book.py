"""Line items take their list price from the price book: a requester can no longer choose the
list price a discount is measured against. Custom lines (a typed list price) exist only where
the organization allows them, are marked everywhere, and never auto-approve."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from discountflow.approvals.models import LineItem
from discountflow.extensions import db

from .conftest import bearer
from .test_graphql import gql


def _body(*lines: dict, currency: str = "USD", **fields) -> dict:
    return {
        "title": "Deal",
        "customer": "Initech",
        "currency": currency,
        "line_items": list(lines),
        **fields,
    }


def _seat(unit_price: int, **fields) -> dict:
    return {"sku": "SEAT", "quantity": 2, "unit_price": unit_price, **fields}


def _custom(list_price: int, unit_price: int, **fields) -> dict:
    return {
        "description": "On-site workshop",
        "quantity": 1,
        "unit_list_price": list_price,
        "unit_price": unit_price,
        **fields,
    }


def test_the_reproduction_now_needs_the_top_level(client, runner):
    """A rep asked SEAT-PRO at a "list price" of 63.00 and a price of 60.00 (4.8 %: approved at
    once) while it lists at 120.00: a 50 % discount. Now the book's price decides."""
    from .test_cli import key_from

    key = key_from(runner.invoke(args=["demo"]).output)
    headers = bearer(key)
    typed = _body(
        {"sku": "SEAT-PRO", "quantity": 10, "unit_list_price": 6_300, "unit_price": 6_000}
    )
    refused = client.post("/v2/approvals", json={**typed, "submit": True}, headers=headers)
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "parameter_invalid",
        "message": "Line 1: the list price of SEAT-PRO comes from the price book: leave out "
        "unit_list_price.",
        "param": "line_items[0].unit_list_price",
    }
    asked = _body({"sku": "SEAT-PRO", "quantity": 10, "unit_price": 6_000}, submit=True)
    created = client.post("/v2/approvals", json=asked, headers=headers).get_json()
    (line,) = created["line_items"]
    assert (line["unit_list_price"], line["discount_percent"], line["custom"]) == (
        12_000,
        50.0,
        False,
    )
    assert line["product"].startswith("prd_") and line["description"] == "Pro seat, annual"
    assert created["status"] == "pending"
    assert [step["level_name"] for step in created["steps"]] == ["Sales manager", "VP Sales", "CFO"]
    levels = client.get("/v2/approval_levels", headers=headers).get_json()["data"]
    top = max(levels, key=lambda level: level["rank"])
    assert created["required_approval_level"] == top["id"]


def test_a_line_takes_the_books_price_in_the_approvals_currency(api, world):
    for currency in ("USD", "EUR", "JPY"):
        created = api("POST", "/v2/approvals", json=_body(_seat(9_000), currency=currency))
        assert created.status_code == 201, created.get_json()
        (line,) = created.get_json()["line_items"]
        assert line == {
            "object": "line_item",
            "id": line["id"],
            "product": world.products["SEAT"],
            "sku": "SEAT",
            "description": "Seat, annual",  # the product's name when none is given
            "custom": False,
            "quantity": 2,
            "unit_list_price": 10_000,
            "unit_price": 9_000,
            "list_amount": 20_000,
            "amount": 18_000,
            "discount_amount": 2_000,
            "discount_percent": 10.0,
        }
    by_id = api(
        "POST",
        "/v2/approvals",
        json=_body(
            {
                "product": world.products["SEAT"],
                "description": "Seats for the pilot",
                "quantity": 1,
                "unit_price": 9_500,
            }
        ),
    ).get_json()
    assert by_id["line_items"][0]["sku"] == "SEAT"
    assert by_id["line_items"][0]["description"] == "Seats for the pilot"
    both = _seat(9_500, product=world.products["SEAT"])
    assert api("POST", "/v2/approvals", json=_body(both)).status_code == 201


def test_the_price_is_frozen_when_the_line_is_saved(api, world):
    draft = api("POST", "/v2/approvals", json=_body(_seat(9_000))).get_json()
    approval_id = draft["id"]
    pending = api("POST", "/v2/approvals", json=_body(_seat(9_000), submit=True)).get_json()
    api(
        "PATCH",
        f"/v2/products/{world.products['SEAT']}",
        json={"prices": [{"currency": "USD", "unit_list_price": 20_000}], "name": "Seat, 2027"},
    )
    for approval in (draft, pending):
        again = api("GET", f"/v2/approvals/{approval['id']}").get_json()
        assert again["line_items"] == approval["line_items"]  # history is not rewritten
        assert again["list_amount"] == 20_000
    # Saving the lines again prices them again, now.
    edited = api("PATCH", f"/v2/approvals/{approval_id}", json={"line_items": [_seat(9_000)]})
    (line,) = edited.get_json()["line_items"]
    assert (line["unit_list_price"], line["discount_percent"], line["description"]) == (
        20_000,
        55.0,
        "Seat, 2027",
    )
    # And a change of only the title keeps the lines as they were saved.
    titled = api("PATCH", f"/v2/approvals/{approval_id}", json={"title": "Renamed"}).get_json()
    assert titled["line_items"] == edited.get_json()["line_items"]


@pytest.mark.parametrize(
    "line, param, message",
    [
        (
            {"sku": "NOPE", "quantity": 1, "unit_price": 1},
            "line_items[1].sku",
            "Line 2: the price book has no product with SKU 'NOPE' (a custom line names no SKU).",
        ),
        (
            {"product": "prd_nope", "quantity": 1, "unit_price": 1},
            "line_items[1].product",
            "Line 2: the price book has no product 'prd_nope'.",
        ),
        (
            {"sku": "LICENSE", "quantity": 1, "unit_price": 1},
            "line_items[1].sku",
            "Line 2: the price book has no GBP price for LICENSE.",
        ),
        (
            {"sku": "SEAT", "quantity": 1, "unit_list_price": 10_000, "unit_price": 1},
            "line_items[1].unit_list_price",
            "Line 2: the list price of SEAT comes from the price book: leave out unit_list_price.",
        ),
        (
            {"sku": "SEAT", "quantity": 1, "unit_price": 10_001},
            "line_items[1].unit_price",
            "Line 2: the unit price asked, 100.01 GBP, is above the list price of SEAT, "
            "100.00 GBP.",
        ),
        (
            {"quantity": 1, "unit_price": 1, "unit_list_price": 5},
            "line_items[1].description",
            "Line 2: a custom line needs a description (or name a product of the price book).",
        ),
        (
            {"description": "Workshop", "quantity": 1, "unit_price": 1},
            "line_items[1].unit_list_price",
            "Line 2: a custom line needs its unit_list_price (or name a product of the price "
            "book).",
        ),
    ],
)
def test_a_line_the_book_cannot_price_is_a_400_naming_the_line(api, app, line, param, message):
    before = _count_lines(app)
    response = api("POST", "/v2/approvals", json=_body(_seat(9_000), line, currency="GBP"))
    assert response.status_code == 400
    assert response.get_json() == {"error": "parameter_invalid", "message": message, "param": param}
    assert _count_lines(app) == before


def _count_lines(app) -> int:
    with app.app_context():
        return len(db.session.execute(select(LineItem.id)).all())


def test_product_and_sku_must_name_the_same_product(api, world):
    line = _seat(9_000, product=world.products["LICENSE"])
    response = api("POST", "/v2/approvals", json=_body(line))
    assert response.status_code == 400
    assert response.get_json()["param"] == "line_items[0].sku"


def test_an_archived_product_goes_on_no_new_line(api, world):
    api("PATCH", f"/v2/products/{world.products['SEAT']}", json={"active": False})
    response = api("POST", "/v2/approvals", json=_body(_seat(9_000)))
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "parameter_invalid",
        "message": "Line 1: SEAT is archived in the price book: choose an active product.",
        "param": "line_items[0].sku",
    }


def test_a_new_currency_needs_the_lines_to_be_priced_in_it(api, world):
    draft = api("POST", "/v2/approvals", json=_body(_seat(9_000))).get_json()
    refused = api("PATCH", f"/v2/approvals/{draft['id']}", json={"currency": "EUR"})
    assert refused.status_code == 400
    assert refused.get_json()["param"] == "line_items"
    moved = api(
        "PATCH",
        f"/v2/approvals/{draft['id']}",
        json={"currency": "EUR", "line_items": [_seat(9_000)]},
    ).get_json()
    assert moved["currency"] == "EUR" and moved["line_items"][0]["unit_list_price"] == 10_000
    no_eur = api(
        "PATCH",
        f"/v2/approvals/{draft['id']}",
        json={
            "currency": "GBP",
            "line_items": [{"sku": "LICENSE", "quantity": 1, "unit_price": 1}],
        },
    )
    assert no_eur.status_code == 400
    assert api("GET", f"/v2/approvals/{draft['id']}").get_json()["currency"] == "EUR"


# --- custom lines ------------------------------------------------------------------------------


def test_a_custom_line_is_marked_and_never_approved_at_once(api, world):
    body = _body(_seat(10_000), _custom(50_000, 49_000))  # 0 % and 2 %: within the 5 % threshold
    created = api("POST", "/v2/approvals", json=body).get_json()
    custom = created["line_items"][1]
    assert (custom["custom"], custom["product"], custom["sku"]) == (True, None, "")
    assert created["line_items"][0]["custom"] is False
    preview = api("GET", f"/v2/approvals/{created['id']}/preview").get_json()
    assert preview["auto_approve"] is False
    assert preview["required_approval_level"] == world.levels["Manager"]
    assert preview["reason"] == (
        "Line 2 is a custom line (its list price was typed in, not taken from the price book): "
        "a custom line is never approved at once, so Manager decides."
    )
    submitted = api("POST", f"/v2/approvals/{created['id']}/submit").get_json()
    assert submitted["status"] == "pending"
    assert [step["level_name"] for step in submitted["steps"]] == ["Manager"]
    # Without the custom line, the same discount is approved at once.
    plain = api("POST", "/v2/approvals", json=_body(_seat(9_800), submit=True)).get_json()
    assert plain["status"] == "approved"
    again = api("GET", f"/v2/approvals/{plain['id']}/preview").get_json()
    assert again["reason"] == (
        "The largest line discount, 2 %, is within the auto-approve threshold, 5 %: approved at "
        "once."
    )


def test_a_custom_line_above_the_threshold_routes_as_any_line_and_says_it_is_custom(api, world):
    body = _body(_custom(10_000, 7_500), _custom(10_000, 9_000))
    created = api("POST", "/v2/approvals", json=body).get_json()
    preview = api("GET", f"/v2/approvals/{created['id']}/preview").get_json()
    assert preview["reason"] == (
        "The largest line discount, 25 %, is above the auto-approve threshold, 5 %: VP is the "
        "lowest level that covers it. Lines 1 and 2 are custom lines (their list prices were "
        "typed in, not taken from the price book)."
    )


def test_an_organization_can_forbid_custom_lines(api, world):
    draft = api("POST", "/v2/approvals", json=_body(_custom(10_000, 9_000))).get_json()
    setting = api("PATCH", "/v2/organization", json={"custom_line_items": "forbidden"})
    assert setting.get_json()["custom_line_items"] == "forbidden"
    refused = api("POST", "/v2/approvals", json=_body(_seat(9_000), _custom(10_000, 9_000)))
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "parameter_invalid",
        "message": "Line 2: this organization takes every list price from the price book: name "
        "a product (product or sku).",
        "param": "line_items[1].product",
    }
    # A draft saved before keeps its line, but cannot be submitted with it.
    submit = api("POST", f"/v2/approvals/{draft['id']}/submit")
    assert submit.status_code == 400
    assert submit.get_json()["param"] == "line_items[0].product"
    assert api("GET", f"/v2/approvals/{draft['id']}").get_json()["status"] == "draft"
    assert api("POST", "/v2/approvals", json=_body(_seat(9_000))).status_code == 201
    assert (
        api("PATCH", "/v2/organization", json={"custom_line_items": "sometimes"}).status_code == 400
    )


def test_the_organizations_default_allows_custom_lines(api):
    assert api("GET", "/v2/organization").get_json()["custom_line_items"] == "allowed"


# --- GraphQL: the same rules ---------------------------------------------------------------


GRAPHQL_DEAL = {"title": "Deal", "customer": "Initech", "currency": "USD"}


def test_graphql_prices_lines_from_the_book_with_the_same_rules(client, world, api):
    mutation = (
        "mutation($input: ApprovalCreateInput!) { createApproval(input: $input) { id "
        "lineItems(first: 10) { product sku custom unitListPrice discountPercent } } }"
    )
    response = gql(
        client,
        world.key,
        mutation,
        {
            "input": {
                **GRAPHQL_DEAL,
                "lineItems": [{"sku": "SEAT", "quantity": 1, "unitPrice": 9_000}],
            }
        },
    )
    created = response.get_json()["data"]["createApproval"]
    assert created["lineItems"] == [
        {
            "product": world.products["SEAT"],
            "sku": "SEAT",
            "custom": False,
            "unitListPrice": 10_000,
            "discountPercent": 10.0,
        }
    ]
    rest = api("GET", f"/v2/approvals/{created['id']}").get_json()["line_items"][0]
    assert rest["product"] == world.products["SEAT"] and rest["custom"] is False
    typed = gql(
        client,
        world.key,
        mutation,
        {
            "input": {
                **GRAPHQL_DEAL,
                "lineItems": [{"sku": "SEAT", "quantity": 1, "unitListPrice": 5, "unitPrice": 1}],
            }
        },
    ).get_json()
    (error,) = typed["errors"]
    assert error["message"] == (
        "Line 1: the list price of SEAT comes from the price book: leave out unit_list_price."
    )
    assert error["extensions"] == {
        "code": "parameter_invalid",
        "param": "line_items[0].unit_list_price",
    }

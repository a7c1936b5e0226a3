"""The price book over REST and GraphQL: products by SKU with list prices per currency, who may
change them, archiving instead of deleting, and an audit event for every change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.products.models import Product

from .approvals_world import build_world, create
from .conftest import bearer
from .test_graphql import gql

WIDGET = {
    "sku": "WIDGET-1",
    "name": "Widget",
    "description": "A widget, boxed.",
    "prices": [
        {"currency": "usd", "unit_list_price": 12_000},
        {"currency": "EUR", "unit_list_price": 11_000},
    ],
}


def _events(app, *types: str) -> list[Event]:
    with app.app_context():
        statement = select(Event).where(Event.type.in_(types)).order_by(Event.created_at)
        return list(db.session.execute(statement).scalars())


def test_a_product_is_created_read_listed_and_changed(api, app, world):
    created = api("POST", "/v2/products", json=WIDGET)
    assert created.status_code == 201
    product = created.get_json()
    assert product["id"].startswith("prd_")
    assert product == {
        "object": "product",
        "id": product["id"],
        "sku": "WIDGET-1",
        "name": "Widget",
        "description": "A widget, boxed.",
        "active": True,
        # Upper-case currencies, by currency.
        "prices": [
            {"currency": "EUR", "unit_list_price": 11_000},
            {"currency": "USD", "unit_list_price": 12_000},
        ],
        "created": product["created"],
        "updated": product["updated"],
    }
    assert api("GET", f"/v2/products/{product['id']}").get_json() == product
    listed = api("GET", "/v2/products").get_json()
    assert listed["object"] == "list" and listed["data"][0] == product  # newest first

    changed = api(
        "PATCH",
        f"/v2/products/{product['id']}",
        json={"name": "Widget, blue", "prices": [{"currency": "GBP", "unit_list_price": 9_900}]},
    ).get_json()
    assert changed["name"] == "Widget, blue" and changed["sku"] == "WIDGET-1"
    assert changed["prices"] == [{"currency": "GBP", "unit_list_price": 9_900}]  # replaced
    (event,) = _events(app, "product.updated")
    assert event.data == {"product": product["id"], "sku": "WIDGET-1", "fields": ["name", "prices"]}
    assert (event.actor_type, event.surface, event.api_key_id) == (
        "api_key",
        "api",
        event.api_key_id,
    )
    assert [e.data["sku"] for e in _events(app, "product.created")][-1] == "WIDGET-1"


def test_a_patch_that_changes_nothing_records_nothing(api, app, world):
    product = api("POST", "/v2/products", json=WIDGET).get_json()
    same = api("PATCH", f"/v2/products/{product['id']}", json={"name": "Widget"})
    assert same.status_code == 200 and same.get_json()["updated"] == product["updated"]
    assert _events(app, "product.updated", "product.archived") == []


@pytest.mark.parametrize(
    "change, param",
    [
        ({"sku": ""}, "sku"),
        ({"sku": "   "}, "sku"),
        ({"sku": "S" * 101}, "sku"),
        ({"name": ""}, "name"),
        ({"active": "no"}, "active"),
        ({"prices": [{"currency": "XXY", "unit_list_price": 100}]}, "prices[0].currency"),
        ({"prices": [{"currency": "USD", "unit_list_price": 0}]}, "prices[0].unit_list_price"),
        ({"prices": [{"currency": "USD", "unit_list_price": 10**11}]}, "prices[0].unit_list_price"),
        ({"prices": [{"currency": "USD", "unit_list_price": "100"}]}, "prices[0].unit_list_price"),
        (
            {
                "prices": [
                    {"currency": "USD", "unit_list_price": 100},
                    {"currency": "usd", "unit_list_price": 200},
                ]
            },
            "prices",
        ),
        ({"price": 100}, "price"),
    ],
)
def test_bad_products_are_a_400_naming_the_field(api, change, param):
    response = api("POST", "/v2/products", json={**WIDGET, **change})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "parameter_invalid"
    assert response.get_json()["param"] == param


def test_a_sku_is_unique_in_the_organization_only(api, app, world, client):
    assert api("POST", "/v2/products", json=WIDGET).status_code == 201
    again = api("POST", "/v2/products", json={**WIDGET, "name": "Other"})
    assert again.status_code == 409
    assert again.get_json() == {
        "error": "conflict",
        "message": "The price book already has a product with SKU 'WIDGET-1'.",
        "param": "sku",
    }
    other = build_world(app, "globex")
    elsewhere = client.post("/v2/products", json=WIDGET, headers=bearer(other.key))
    assert elsewhere.status_code == 201  # another organization's book
    seat = api("GET", "/v2/products?sku=SEAT").get_json()["data"][0]
    renamed = api("PATCH", f"/v2/products/{seat['id']}", json={"sku": "WIDGET-1"})
    assert renamed.status_code == 409


def test_the_list_filters_by_active_sku_and_text(api, world):
    api("POST", "/v2/products", json=WIDGET)
    api(
        "POST",
        "/v2/products",
        json={**WIDGET, "sku": "GADGET_%", "name": "Gadget", "active": False},
    )

    def skus(query: str) -> list[str]:
        response = api("GET", f"/v2/products{query}")
        assert response.status_code == 200, response.get_json()
        return sorted(product["sku"] for product in response.get_json()["data"])

    assert skus("") == ["GADGET_%", "LICENSE", "SEAT", "WIDGET-1"]
    assert skus("?active=true") == ["LICENSE", "SEAT", "WIDGET-1"]
    assert skus("?active=false") == ["GADGET_%"]
    assert skus("?sku=SEAT") == ["SEAT"]
    assert skus("?sku=seat") == []  # a SKU is exact
    assert skus("?q=widg") == ["WIDGET-1"]  # the name or the SKU, any case
    assert skus("?q=annual") == ["LICENSE", "SEAT"]  # "Seat, annual", "License, annual"
    assert skus("?q=_%25") == ["GADGET_%"]  # LIKE's wildcards are plain text
    assert skus("?q=%25") == ["GADGET_%"]
    assert api("GET", "/v2/products?active=maybe").status_code == 400
    assert api("GET", "/v2/products?limit=1").get_json()["has_more"] is True


def test_members_read_the_book_admins_and_the_owner_change_it(app, world):
    from discountflow.errors import PermissionDenied, ReadOnlyKey
    from discountflow.products import services
    from discountflow.products.schemas import ProductCreate, ProductListQuery, ProductUpdate

    with app.app_context():
        rep = world.actor("rep")
        found, _ = services.list_products(rep, ProductListQuery(), ProductListQuery().page())
        assert {product.sku for product in found} == {"SEAT", "LICENSE"}
        assert services.get_product(rep, world.products["SEAT"]).sku == "SEAT"
        with pytest.raises(PermissionDenied):
            services.create_product(rep, ProductCreate(sku="X", name="X"))
        with pytest.raises(PermissionDenied):
            services.update_product(rep, world.products["SEAT"], ProductUpdate(active=False))
        with pytest.raises(PermissionDenied):
            services.delete_product(rep, world.products["LICENSE"])
        db.session.rollback()
        admin = world.actor("admin")
        assert services.create_product(admin, ProductCreate(sku="X", name="X")).sku == "X"
    client = app.test_client()
    read_only = bearer(world.read_only_key)
    assert client.get("/v2/products", headers=read_only).status_code == 200
    refused = client.post("/v2/products", json=WIDGET, headers=read_only)
    assert refused.status_code == 403 and refused.get_json()["error"] == "read_only_key"
    with app.app_context():
        with pytest.raises(ReadOnlyKey):
            from discountflow.actors import Actor

            reader = Actor.for_api_key(world.organization_id, "key_x", read_only=True)
            services.create_product(reader, ProductCreate(sku="Y", name="Y"))


def test_another_organizations_product_is_not_found(api, app, world, client):
    other = build_world(app, "globex")
    theirs = other.products["SEAT"]
    for method in ("GET", "PATCH", "DELETE"):
        response = api(method, f"/v2/products/{theirs}", json={"name": "Mine"})
        assert response.status_code == 404, method
        assert response.get_json() == {
            "error": "resource_missing",
            "message": f"No such product: {theirs!r}.",
            "param": "id",
        }
    # Nor can a line item name it, by id or by its SKU (which means this book's SEAT).
    body = {
        "title": "Deal",
        "customer": "Initech",
        "currency": "USD",
        "line_items": [{"product": theirs, "quantity": 1, "unit_price": 100}],
    }
    refused = api("POST", "/v2/approvals", json=body)
    assert refused.status_code == 400
    assert refused.get_json()["param"] == "line_items[0].product"
    with app.app_context():
        assert db.session.get(Product, theirs).name == "Seat, annual"


def test_a_product_on_a_line_item_is_archived_not_deleted(api, app, world):
    seat = world.products["SEAT"]
    create(world, "rep", 10)  # a draft whose line names SEAT
    refused = api("DELETE", f"/v2/products/{seat}")
    assert refused.status_code == 409
    assert refused.get_json() == {
        "error": "conflict",
        "message": "Line items of approvals name this product, so it stays in the book: archive "
        'it instead ("active": false).',
    }
    assert api("GET", f"/v2/products/{seat}").status_code == 200
    assert _events(app, "product.deleted") == []  # the refused delete left no event

    archived = api("PATCH", f"/v2/products/{seat}", json={"active": False})
    assert archived.status_code == 200 and archived.get_json()["active"] is False
    (event,) = _events(app, "product.archived")
    assert event.data == {"product": seat, "sku": "SEAT", "fields": ["active"]}
    restored = api("PATCH", f"/v2/products/{seat}", json={"active": True})
    assert restored.get_json()["active"] is True
    assert _events(app, "product.updated")[-1].data["fields"] == ["active"]

    unused = world.products["LICENSE"]
    deleted = api("DELETE", f"/v2/products/{unused}")
    assert deleted.get_json() == {"object": "product", "id": unused, "deleted": True}
    assert api("GET", f"/v2/products/{unused}").status_code == 404
    (event,) = _events(app, "product.deleted")
    assert event.data == {"product": unused, "sku": "LICENSE"}


def test_a_product_of_a_deleted_draft_can_be_deleted(api, world):
    draft = create(world, "rep", 10)
    assert api("DELETE", f"/v2/approvals/{draft}").status_code == 200
    assert api("DELETE", f"/v2/products/{world.products['SEAT']}").status_code == 200


# --- GraphQL: the same resource, rules and events ----------------------------------------------

PRODUCT_FIELDS = (
    "id sku name description active prices(first: 20) { currency unitListPrice } created updated"
)


def test_graphql_creates_reads_changes_and_deletes_a_product(app, client, world, api):
    def ask(query, variables=None, key=world.key):
        response = gql(client, key, query, variables)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    created = ask(
        "mutation($input: ProductCreateInput!) { createProduct(input: $input) { "
        + PRODUCT_FIELDS
        + " } }",
        {"input": {**WIDGET, "prices": [{"currency": "USD", "unitListPrice": 12000}]}},
    )["data"]["createProduct"]
    rest = api("GET", f"/v2/products/{created['id']}").get_json()
    assert created["sku"] == rest["sku"] and created["prices"] == [
        {"currency": "USD", "unitListPrice": 12000}
    ]
    assert created["created"] == rest["created"]
    found = ask(f'{{ product(id: "{created["id"]}") {{ {PRODUCT_FIELDS} }} }}')["data"]["product"]
    assert found == created
    listed = ask('{ products(first: 10, q: "widg") { edges { node { sku } } } }')
    assert listed["data"]["products"]["edges"] == [{"node": {"sku": "WIDGET-1"}}]
    product_id = created["id"]
    archived = ask(
        f'mutation {{ updateProduct(id: "{product_id}", input: {{active: false}}) {{ active }} }}'
    )
    assert archived["data"]["updateProduct"] == {"active": False}
    (event,) = _events(app, "product.archived")
    assert event.surface == "graphql"
    create(world, "rep", 10)
    in_use = ask(f'mutation {{ deleteProduct(id: "{world.products["SEAT"]}") {{ id }} }}')
    assert in_use["data"] == {"deleteProduct": None}
    assert in_use["errors"][0]["extensions"] == {"code": "conflict"}
    deleted = ask(f'mutation {{ deleteProduct(id: "{created["id"]}") {{ object id deleted }} }}')
    assert deleted["data"]["deleteProduct"] == {
        "object": "product",
        "id": created["id"],
        "deleted": True,
    }
    duplicate = ask('mutation { createProduct(input: {sku: "SEAT", name: "Again"}) { id } }')
    assert duplicate["errors"][0]["extensions"] == {"code": "conflict", "param": "sku"}
    bad = ask(
        'mutation { createProduct(input: {sku: "Z", name: "Z", prices: [{currency: "USD", '
        "unitListPrice: 0}]}) { id } }"
    )
    assert bad["errors"][0]["extensions"]["param"] == "input.prices[0].unitListPrice"


# --- the dashboard: Settings → Products, and the request form ---------------------------------


def _signed_in(app, who: str):
    from .dashboard import sign_in

    client = app.test_client()
    assert sign_in(client, f"{who}@acme.example").status_code == 303
    return client


def test_admins_keep_the_book_in_the_dashboard(app, world):
    from .dashboard import nav_links, post_form

    admin = _signed_in(app, "admin")
    page = admin.get("/settings/products")
    assert "Products" in nav_links(page, "Settings")
    assert "SEAT" in page.text and "100.00 USD" in page.text
    more = post_form(
        admin,
        "/settings/products/new",
        {
            "sku": "WIDGET-1",
            "name": "Widget",
            "description": "",
            "active": "y",
            "prices-0-currency": "USD",
            "prices-0-amount": "1,250.00",
            "prices-1-currency": "EUR",
            "prices-1-amount": "",
            "action": "add_price",
        },
    )
    assert more.status_code == 200 and 'name="prices-1-amount"' in more.text  # another row
    added = post_form(
        admin,
        "/settings/products/new",
        {
            "sku": "WIDGET-1",
            "name": "Widget",
            "active": "y",
            "prices-0-currency": "USD",
            "prices-0-amount": "1,250.00",
            "prices-1-currency": "EUR",
            "prices-1-amount": "1100",
        },
    )
    assert added.status_code == 303
    with app.app_context():
        product = db.session.execute(select(Product).filter_by(sku="WIDGET-1")).scalar_one()
        assert {p.currency: p.unit_list_price for p in product.prices} == {
            "USD": 125_000,
            "EUR": 110_000,
        }
    found = admin.get("/settings/products?q=widg")
    assert "WIDGET-1" in found.text and ">SEAT<" not in found.text
    archived_only = admin.get("/settings/products?active=false")
    assert "WIDGET-1" not in archived_only.text and "No product matches." in archived_only.text

    edit = admin.get(f"/settings/products/{product.id}")
    assert 'value="1250.00"' in edit.text and 'value="WIDGET-1"' in edit.text
    bad = post_form(
        admin,
        f"/settings/products/{product.id}",
        {"sku": "WIDGET-1", "name": "Widget", "prices-0-currency": "USD", "prices-0-amount": "1e9"},
    )
    assert bad.status_code == 400 and "Enter an amount such as 1,250.00" in bad.text
    taken = post_form(
        admin, f"/settings/products/{product.id}", {"sku": "SEAT", "name": "Widget", "active": "y"}
    )
    assert taken.status_code == 400 and "already has a product with SKU" in taken.text
    saved = post_form(
        admin,
        f"/settings/products/{product.id}",
        {
            "sku": "WIDGET-1",
            "name": "Widget, blue",
            "prices-0-currency": "USD",
            "prices-0-amount": "1,300",
        },
    )
    assert saved.status_code == 303
    with app.app_context():
        product = db.session.get(Product, product.id)
        assert (product.name, product.active) == ("Widget, blue", False)  # the box was unticked
        assert {p.currency: p.unit_list_price for p in product.prices} == {"USD": 130_000}
    restored = post_form(admin, f"/settings/products/{product.id}/restore")
    assert restored.status_code == 303
    archived = post_form(admin, f"/settings/products/{product.id}/archive")
    assert archived.status_code == 303
    create(world, "rep", 10)  # SEAT is on a line now
    in_use = post_form(admin, f"/settings/products/{world.products['SEAT']}/delete")
    assert in_use.status_code == 303
    assert "archive it instead" in admin.get(in_use.headers["Location"]).text
    gone = post_form(admin, f"/settings/products/{product.id}/delete")
    assert gone.status_code == 303
    assert admin.get(f"/settings/products/{product.id}").status_code == 404
    assert post_form(admin, f"/settings/products/{product.id}/explode").status_code == 404
    other = build_world(app, "globex")
    assert admin.get(f"/settings/products/{other.products['SEAT']}").status_code == 404
    assert (
        post_form(admin, f"/settings/products/{other.products['SEAT']}/archive").status_code == 404
    )
    with app.app_context():
        kinds = [
            e.type for e in db.session.execute(select(Event).order_by(Event.created_at)).scalars()
        ]
    assert kinds.count("product.archived") == 2 and kinds.count("product.deleted") == 1


def test_the_request_form_picks_products_and_marks_custom_lines(app, world, api):
    from .dashboard import post_form

    rep = _signed_in(app, "rep")
    form = rep.get("/approvals/new")
    assert '<option value="">Custom line (no product)</option>' in form.text
    assert '<option value="SEAT" >SEAT — Seat, annual</option>' in form.text
    assert 'data-prices=\'{"CHF": "100.00 CHF"' in form.text  # for the searchable field
    data = {
        "title": "Mixed",
        "customer": "Initech",
        "currency": "USD",
        "line_items-0-sku": "SEAT",
        "line_items-0-quantity": "1",
        "line_items-0-unit_price": "99",
        "line_items-1-sku": "",
        "line_items-1-description": "On-site workshop",
        "line_items-1-quantity": "1",
        "line_items-1-unit_list_price": "500",
        "line_items-1-unit_price": "500",
        "action": "submit",
    }
    created = post_form(rep, "/approvals/new", data)
    assert created.status_code == 303
    page = rep.get(created.headers["Location"])
    assert ">Custom</span>" in page.text and "<code>SEAT</code>" in page.text
    assert 'data-testid="status">Pending<' in page.text  # 1 % off, but a custom line

    api("PATCH", "/v2/organization", json={"custom_line_items": "forbidden"})
    form = rep.get("/approvals/new")
    assert '<option value="">Choose a product</option>' in form.text
    assert "unit list price (custom line)" not in form.text
    refused = post_form(rep, "/approvals/new", data)
    assert refused.status_code == 400
    assert "Line 2: this organization takes every list price from the price book" in refused.text

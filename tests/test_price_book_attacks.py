"""What an outside attack on the price book found, each now a test: races on PostgreSQL, stale
drafts, renamed SKUs, exact CSV round trips, searches in every alphabet, and input edges."""

from __future__ import annotations

import io
import threading

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import OperationalError

from discountflow.approvals.models import LineItem
from discountflow.extensions import db
from discountflow.products.csv_files import COLUMNS, ImportRefused, import_products
from discountflow.products.models import Product

from .approvals_world import create
from .conftest import ON_POSTGRESQL, bearer
from .dashboard import post_form, sign_in

HEADER = ",".join(COLUMNS)
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="a race SQLite cannot have")


def _body(*lines, currency="USD", **fields) -> dict:
    return {
        "title": "Deal",
        "customer": "Initech",
        "currency": currency,
        "line_items": list(lines),
        **fields,
    }


# --- stale drafts: a submit measures the discount against today's book --------------------------


def test_a_draft_whose_product_was_archived_or_repriced_cannot_be_submitted(api, world):
    draft = api(
        "POST", "/v2/approvals", json=_body({"sku": "SEAT", "quantity": 1, "unit_price": 10_000})
    )
    approval_id = draft.get_json()["id"]
    seat = world.products["SEAT"]
    api(
        "PATCH",
        f"/v2/products/{seat}",
        json={"prices": [{"currency": "USD", "unit_list_price": 50_000}]},
    )
    for path in ("/preview", "/submit"):
        method = "GET" if path == "/preview" else "POST"
        refused = api(method, f"/v2/approvals/{approval_id}{path}")
        assert refused.status_code == 400, path
        assert refused.get_json() == {
            "error": "parameter_invalid",
            "message": "Line 1: the price book's list price of SEAT is now 500.00 USD (the line "
            "took 100.00 USD when it was saved): save the line items again.",
            "param": "line_items[0].unit_list_price",
        }
    assert api("GET", f"/v2/approvals/{approval_id}").get_json()["status"] == "draft"
    api("PATCH", f"/v2/products/{seat}", json={"active": False})
    archived = api("POST", f"/v2/approvals/{approval_id}/submit")
    assert archived.get_json()["message"] == (
        "Line 1: SEAT is no longer an active product: edit the line items."
    )
    api("PATCH", f"/v2/products/{seat}", json={"active": True})
    resaved = api(
        "PATCH",
        f"/v2/approvals/{approval_id}",
        json={"line_items": [{"sku": "SEAT", "quantity": 1, "unit_price": 10_000}]},
    )
    assert resaved.get_json()["line_items"][0]["discount_percent"] == 80.0
    submitted = api("POST", f"/v2/approvals/{approval_id}/submit").get_json()
    assert submitted["status"] == "pending"  # 80 % off today's book: no auto-approval


def test_a_submitted_approval_keeps_its_frozen_prices(api, world):
    pending = create(world, "rep", 20, submit=True)
    api(
        "PATCH",
        f"/v2/products/{world.products['SEAT']}",
        json={"prices": [{"currency": "USD", "unit_list_price": 99_999}]},
    )
    shown = api("GET", f"/v2/approvals/{pending}").get_json()
    assert shown["line_items"][0]["unit_list_price"] == 10_000
    assert api("GET", f"/v2/approvals/{pending}/preview").status_code == 200  # not editable


def test_a_draft_with_a_custom_line_previews_what_the_submit_would_say(api, world):
    custom = {"description": "Workshop", "quantity": 1, "unit_list_price": 100, "unit_price": 100}
    draft = api("POST", "/v2/approvals", json=_body(custom)).get_json()
    api("PATCH", "/v2/organization", json={"custom_line_items": "forbidden"})
    preview = api("GET", f"/v2/approvals/{draft['id']}/preview")
    assert preview.status_code == 400 and preview.get_json()["param"] == "line_items[0].product"


# --- the dashboard ------------------------------------------------------------------------------


def test_editing_a_draft_keeps_its_product_when_the_sku_moved_to_another(app, api, world):
    draft = create(world, "rep", 10)
    seat = world.products["SEAT"]
    api("PATCH", f"/v2/products/{seat}", json={"sku": "SEAT-OLD"})
    other = api(
        "POST",
        "/v2/products",
        json={
            "sku": "SEAT",
            "name": "Other",
            "prices": [{"currency": "USD", "unit_list_price": 20_000}],
        },
    ).get_json()
    rep = app.test_client()
    sign_in(rep, "rep@acme.example")
    page = rep.get(f"/approvals/{draft}/edit")
    assert '<option value="SEAT-OLD" selected>' in page.text
    form = {
        "title": "Renamed",
        "customer": "Initech",
        "currency": "USD",
        "line_items-0-sku": "SEAT-OLD",
        "line_items-0-description": "Line 1",
        "line_items-0-quantity": "2",
        "line_items-0-unit_price": "90",
        "action": "draft",
    }
    saved = post_form(rep, f"/approvals/{draft}/edit", form, token_from=f"/approvals/{draft}")
    assert saved.status_code == 303
    with app.app_context():
        (line,) = db.session.execute(
            select(LineItem).where(LineItem.approval_id == draft)
        ).scalars()
        assert (line.product_id, line.sku, line.unit_list_price) == (seat, "SEAT-OLD", 10_000)
        assert line.product_id != other["id"]


def test_a_product_with_many_prices_opens_in_the_dashboard(app, api, world):
    currencies = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN"]
    currencies += ["CZK", "HUF", "RON", "BGN", "TRY", "ILS", "AED", "SAR", "INR", "CNY", "HKD"]
    currencies += ["SGD", "KRW", "TWD", "THB", "MYR", "IDR", "PHP", "VND", "NZD", "ZAR", "BRL"]
    prices = [{"currency": code, "unit_list_price": 1000} for code in currencies]
    product = api("POST", "/v2/products", json={"sku": "MANY", "name": "Many", "prices": prices})
    assert product.status_code == 201 and len(currencies) > 30
    admin = app.test_client()
    sign_in(admin, "admin@acme.example")
    page = admin.get(f"/settings/products/{product.get_json()['id']}")
    assert page.status_code == 200 and page.text.count('name="prices-') >= 2 * len(currencies)


def test_the_request_form_stays_small_with_a_large_book(app, world):
    rows = "\n".join(f"BIG-{n:05d},Big {n},,USD,1.00,true" for n in range(1500))
    with app.app_context():
        import_products(world.actor("admin"), io.StringIO(HEADER + "\n" + rows + "\n"))
    rep = app.test_client()
    sign_in(rep, "rep@acme.example")
    page = rep.get("/approvals/new")
    assert page.status_code == 200
    assert '<select name="line_items-0-sku"' not in page.text  # a SKU field instead
    assert page.text.count('<option value="BIG-') <= 1000
    assert len(page.text) < 400_000


def test_the_live_preview_checks_the_currency(app, world):
    rep = app.test_client()
    sign_in(rep, "rep@acme.example")
    form = {
        "currency": "XXX",
        "line_items-0-description": "Workshop",
        "line_items-0-quantity": "1",
        "line_items-0-unit_list_price": "100",
        "line_items-0-unit_price": "100",
    }
    preview = post_form(rep, "/approvals/preview", form)
    assert "Choose the request" in preview.text or "Not a valid choice" in preview.text


# --- CSV ----------------------------------------------------------------------------------------


def test_text_that_starts_with_a_quote_survives_the_round_trip(app, api, world):
    from discountflow.products.csv_files import export_products

    api(
        "POST",
        "/v2/products",
        json={
            "sku": "'=QUOTED",
            "name": "'-minus name",
            "description": "'@at",
            "prices": [{"currency": "USD", "unit_list_price": 100}],
        },
    )
    out = io.StringIO()
    with app.app_context():
        export_products(world.actor("admin"), out)
        exported = out.getvalue()
        assert "''=QUOTED,''-minus name,''@at,USD,1.00,true" in exported
        result = import_products(world.actor("admin"), io.StringIO(exported))
        assert (result.created, result.changed) == (0, 0)
        assert db.session.execute(select(Product).filter_by(sku="=QUOTED")).first() is None


def test_the_cli_reads_whole_files_with_exact_line_numbers_and_bounds(
    app, world, runner, tmp_path, monkeypatch
):
    latin = tmp_path / "latin.csv"
    good_rows = "".join(f"OK-{n},Ok,,USD,1.00,true\n" for n in range(5000))
    latin.write_bytes((HEADER + "\n" + good_rows).encode() + b"CAFE,Caf\xe9,,USD,1.00,true\n")
    refused = runner.invoke(args=["products", "import", "--org", "acme", str(latin)])
    assert refused.exit_code == 1 and "line 5002: the file is not UTF-8 text" in refused.output
    monkeypatch.setattr("discountflow.products.csv_files.MAX_FILE_BYTES", 1024)
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "\n" + "x" * 5000)
    refused = runner.invoke(args=["products", "import", "--org", "acme", str(big)])
    assert refused.exit_code == 1 and "the file is larger than" in refused.output
    missing = runner.invoke(
        args=["products", "export", "--org", "acme", str(tmp_path / "no" / "x.csv")]
    )
    assert missing.exit_code == 1 and "Cannot write" in missing.output
    assert "Traceback" not in missing.output


def test_amounts_take_ascii_digits_only(app, world):
    with app.app_context(), pytest.raises(ImportRefused) as refused:
        import_products(
            world.actor("admin"),
            io.StringIO(HEADER + "\nAR,Arabic,,USD,٣,true\nFW,Wide,,USD,１２.５０,true\n"),
        )
    assert refused.value.lines() == [
        "line 2: unit_list_price: Enter an amount such as 1,250.00",
        "line 3: unit_list_price: Enter an amount such as 1,250.00",
    ]


@pytest.mark.parametrize("sku", ["A\tB", "A\nB", "A\u202eB", "A\u200bB", "A\u2028B"])
def test_skus_are_visible_text(api, sku):
    response = api("POST", "/v2/products", json={"sku": sku, "name": "X"})
    assert response.status_code == 400 and response.get_json()["param"] == "sku"


def test_a_rename_conflict_names_the_sku_asked_for(api, world):
    response = api("PATCH", f"/v2/products/{world.products['SEAT']}", json={"sku": "LICENSE"})
    assert response.status_code == 409
    assert (
        response.get_json()["message"] == "The price book already has a product with SKU 'LICENSE'."
    )


def test_searches_fold_every_alphabet(api, world):
    api("POST", "/v2/products", json={"sku": "ÜBER-1", "name": "Café Ärger"})
    for query in ("ü", "Ü", "über", "ärger", "ÄRGER", "café"):
        found = api("GET", f"/v2/products?q={query}").get_json()["data"]
        assert [each["sku"] for each in found] == ["ÜBER-1"], query


# --- races on PostgreSQL ------------------------------------------------------------------------


@postgresql_only
def test_a_product_on_a_line_being_saved_cannot_be_deleted_meanwhile(app, world):
    from discountflow.actors import writing
    from discountflow.approvals.schemas import LineItemInput
    from discountflow.approvals.services import price_lines
    from discountflow.products import services as products

    priced, release = threading.Event(), threading.Event()

    def save_lines():
        with app.app_context():
            actor = world.actor("rep")
            writing(actor)
            price_lines(actor, "USD", [LineItemInput(sku="SEAT", quantity=1, unit_price=1)])
            priced.set()
            release.wait(10)
            db.session.rollback()

    saver = threading.Thread(target=save_lines)
    saver.start()
    assert priced.wait(10)
    try:
        with app.app_context():
            from discountflow.database import begin_write

            begin_write()
            db.session.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with pytest.raises(OperationalError) as blocked:  # the row is held for the lines
                db.session.execute(delete(Product).where(Product.id == world.products["SEAT"]))
            assert "lock" in str(blocked.value).lower()
            db.session.rollback()
    finally:
        release.set()
        saver.join(10)
    with app.app_context():
        assert products.delete_product(world.actor("admin"), world.products["SEAT"])


@postgresql_only
def test_concurrent_price_changes_are_not_taken_for_a_sku_conflict(app, world):
    client = app.test_client
    seat = world.products["SEAT"]
    statuses = []

    def change(n):
        response = client().patch(
            f"/v2/products/{seat}",
            json={
                "prices": [
                    {"currency": "USD", "unit_list_price": 1000 + n},
                    {"currency": "EUR", "unit_list_price": 900},
                ]
            },
            headers=bearer(world.key),
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 12


@postgresql_only
def test_an_import_racing_a_new_product_is_a_conflict_not_a_500(app, world, monkeypatch):
    from discountflow.errors import Conflict
    from discountflow.products import csv_files

    real = csv_files.upsert_products

    def racing(actor, rows, now, *progress):
        counts = real(actor, rows, now, *progress)  # RACE is new to this transaction…
        with db.engine.connect() as other:  # …and another request creates it meanwhile
            other.execute(
                text(
                    "INSERT INTO products (id, organization_id, sku, name, description, active, "
                    "created_at, updated_at) VALUES ('prd_race', :org, 'RACE', 'Race', '', true, "
                    "now(), now())"
                ),
                {"org": world.organization_id},
            )
            other.commit()
        return counts

    monkeypatch.setattr(csv_files, "upsert_products", racing)
    with app.app_context(), pytest.raises(Conflict):
        import_products(world.actor("admin"), io.StringIO(HEADER + "\nRACE,Race,,USD,1.00,true\n"))

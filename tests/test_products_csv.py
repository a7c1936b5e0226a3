"""The price book as a CSV file: import (upsert by SKU, all or nothing, every bad row named) and
export (the same format, safe to open in a spreadsheet), from the CLI and the dashboard."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.products.csv_files import (
    COLUMNS,
    ImportRefused,
    export_products,
    import_products,
)
from discountflow.products.models import Product

from .approvals_world import build_world
from .dashboard import csrf_token, sign_in

HEADER = ",".join(COLUMNS)


def _book(app, organization_id: str) -> dict[str, tuple]:
    """SKU → (name, description, active, {currency: price}) of an organization's book."""
    with app.app_context():
        products = db.session.execute(
            select(Product).where(Product.organization_id == organization_id)
        ).scalars()
        return {
            p.sku: (
                p.name,
                p.description,
                p.active,
                {price.currency: price.unit_list_price for price in p.prices},
            )
            for p in products
        }


def _import(app, world, text: str, who: str = "admin"):
    with app.app_context():
        return import_products(world.actor(who), io.StringIO(text, newline=""))


def _export(app, world) -> str:
    out = io.StringIO()
    with app.app_context():
        export_products(world.actor("admin"), out)
    return out.getvalue()


GOOD = f"""{HEADER}
SEAT,"Seat, annual",,USD,"1,250.00",true
WIDGET,Widget,"A widget, boxed",USD,99.5,yes
WIDGET,Widget,"A widget, boxed",EUR,89,yes
GADGET,Gadget,,JPY,1200,false

BARE,No prices yet,,,,
"""


def test_a_good_file_creates_and_updates_by_sku(app, world):
    before = _book(app, world.organization_id)
    result = _import(app, world, GOOD)
    assert (result.rows, result.created, result.changed) == (4, 3, 1)
    book = _book(app, world.organization_id)
    # SEAT: the USD price is set; its other currencies stay.
    seat_prices = dict(before["SEAT"][3], USD=125_000)
    assert book["SEAT"] == ("Seat, annual", "", True, seat_prices)
    assert book["WIDGET"] == ("Widget", "A widget, boxed", True, {"USD": 9_950, "EUR": 8_900})
    assert book["GADGET"] == ("Gadget", "", False, {"JPY": 1_200})  # JPY has no minor units
    assert book["BARE"] == ("No prices yet", "", True, {})
    assert book["LICENSE"] == before["LICENSE"]  # not in the file: untouched
    with app.app_context():
        types = db.session.execute(
            select(Event.type, func.count())
            .where(Event.type.like("product.%"))
            .group_by(Event.type)
        ).all()
    assert dict(types) == {"product.created": 2 + 3, "product.updated": 1}  # the world's two
    again = _import(app, world, GOOD)
    assert (again.rows, again.created, again.changed) == (4, 0, 0)  # nothing to change


BAD = f"""{HEADER}
SEAT,Seat,,USD,100.00,true
,Nameless SKU,,USD,1.00,true
TOOLONG{"X" * 100},Long,,USD,1.00,true
A,A,,XXY,1.00,true
B,B,,USD,,true
C,C,,,1.00,true
D,D,,USD,1e5,true
E,E,,USD,1.001,true
F,F,,USD,0.00,true
G,G,,USD,-5,true
H,H,,USD,1.00,maybe
I,,,USD,1.00,true
J,J,{"d" * 501},USD,1.00,true
K,K,,USD,1.00
SEAT,Another name,,EUR,1.00,true
SEAT,Seat,,USD,2.00,true
L,L,,USD,"12,34.00",true
M,M,,USD,10000000000.01,true
"""


def test_a_bad_file_changes_nothing_and_names_every_bad_row(app, world):
    before = _book(app, world.organization_id)
    with pytest.raises(ImportRefused) as refused:
        _import(app, world, BAD)
    lines = refused.value.lines()
    assert (
        refused.value.message
        == "The file was not imported: 17 rows are wrong. Nothing was changed."
    )
    assert [line.split(":")[0] for line in lines] == [f"line {n}" for n in range(3, 20)]
    reasons = "\n".join(lines)
    for expected in (
        "line 3: sku: must not be empty",
        "line 4: sku: String should have at most 100 characters",
        "line 5: currency: XXY is not an ISO 4217 currency code",
        "line 6: unit_list_price: a currency needs its price",
        "line 7: currency: a price needs its currency",
        "line 8: unit_list_price: Enter an amount such as 1,250.00",
        "line 9: unit_list_price: USD amounts have at most 2 decimals",
        "line 10: unit_list_price: 0.00 is not a list price",
        "line 11: unit_list_price: Enter an amount such as 1,250.00",
        "line 12: active: 'maybe' is not true or false",
        "line 13: name: must not be empty",
        "line 14: description: String should have at most 500 characters",
        "line 15: 5 cells, the header has 6",
        "line 16: SKU 'SEAT': name, description or active differ from line 2",
        "line 17: SKU 'SEAT': a second USD price",
        "line 18: unit_list_price: Enter an amount such as 1,250.00",
        "line 19: unit_list_price: 10000000000.01 is not a list price",
    ):
        assert expected in reasons, expected
    assert _book(app, world.organization_id) == before
    with app.app_context():
        assert (
            db.session.execute(
                select(func.count()).select_from(Event).where(Event.type.like("product.%"))
            ).scalar()
            == 2
        )


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "line 1: the file is empty"),
        (
            "name,description\nA,A\n",
            "line 1: missing column(s) sku (the header names sku and name, and any of "
            "description, currency with unit_list_price, and active, in any order)",
        ),
        ("sku,name,currency\nA,A,USD\n", "line 1: missing column(s) unit_list_price ("),
        ("Unit_List_Price,sku,name\n5,A,A\n", "line 1: missing column(s) currency ("),
        (f"{HEADER},price\n", "line 1: unknown column(s) 'price'"),
        (f"{HEADER},sku\n", "line 1: column(s) named twice: sku"),
        (f'{HEADER}\nA,"unterminated,,USD,1.00,true\n', "line 2: not a well-formed CSV row"),
    ],
)
def test_a_file_that_is_no_price_book_says_why(app, world, text, reason):
    with pytest.raises(ImportRefused) as refused:
        _import(app, world, text)
    assert refused.value.lines()[0].startswith(reason), refused.value.lines()


def test_the_header_may_be_in_any_order_and_case(app, world):
    text = "Active,Unit_List_Price,Currency,Description,Name,SKU\ntrue,5.00,USD,,Five,FIVE\n"
    assert _import(app, world, text).created == 1
    assert _book(app, world.organization_id)["FIVE"] == ("Five", "", True, {"USD": 500})


def test_only_sku_and_name_are_required_in_any_order_and_case(app, world):
    _import(app, world, GOOD)
    seat = _book(app, world.organization_id)["SEAT"]
    created = _import(app, world, "Name,SKU\nFive,FIVE\nSeat renamed,SEAT\n")
    assert (created.rows, created.created, created.changed) == (2, 1, 1)
    book = _book(app, world.organization_id)
    assert book["FIVE"] == ("Five", "", True, {})  # a new product takes the defaults
    # A known product keeps what the file leaves out: description, active, its prices.
    assert book["SEAT"] == ("Seat renamed", *seat[1:])
    archived = _import(app, world, "ACTIVE,sku,NAME\nfalse,WIDGET,Widget\n")
    assert (archived.created, archived.changed) == (0, 1)
    widget = ("Widget", "A widget, boxed", False, {"USD": 9950, "EUR": 8900})
    assert _book(app, world.organization_id)["WIDGET"] == widget
    priced = _import(app, world, "sku,Currency,name,unit_list_price\nFIVE,EUR,Five,4.50\n")
    assert priced.changed == 1
    assert _book(app, world.organization_id)["FIVE"] == ("Five", "", True, {"EUR": 450})


def test_a_member_cannot_import(app, world):
    from discountflow.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        _import(app, world, GOOD, who="rep")


@pytest.mark.slow
def test_ten_thousand_rows_import_in_one_transaction(app, world):
    rows = [f"SKU-{n:05d},Product {n},Row {n},USD,{n + 1}.00,true" for n in range(10_000)]
    commits = []

    def count(session):
        commits.append(session)

    event.listen(Session, "after_commit", count)
    try:
        result = _import(app, world, HEADER + "\n" + "\n".join(rows) + "\n")
    finally:
        event.remove(Session, "after_commit", count)
    assert (result.rows, result.created) == (10_000, 10_000)
    assert len(commits) == 1
    book = _book(app, world.organization_id)
    assert book["SKU-09999"] == ("Product 9999", "Row 9999", True, {"USD": 1_000_000})
    # The last row bad: not one of the 10,000 is imported.
    rows[-1] = "SKU-09999,Product 9999,,USD,free,true"
    renamed = [row.replace("Product", "Item") for row in rows]
    with pytest.raises(ImportRefused) as refused:
        _import(app, world, HEADER + "\n" + "\n".join(renamed) + "\n")
    assert refused.value.lines() == [
        "line 10001: unit_list_price: Enter an amount such as 1,250.00"
    ]
    assert _book(app, world.organization_id)["SKU-00000"][0] == "Product 0"


def test_the_export_imports_back_to_the_same_book(app, world):
    _import(app, world, GOOD)
    tricky = (
        f"{HEADER}\n"
        '"=HYPERLINK(""http://evil.example"")",Formula SKU,"+1 line",USD,1.00,true\n'
        '-DASH,"@name","line one\nline two",EUR,"1,234,567.89",false\n'
    )
    _import(app, world, tricky)
    exported = _export(app, world)
    assert exported.splitlines()[0] == HEADER
    # A spreadsheet would run these as formulas: written behind a quote.
    assert '\'=HYPERLINK(""http://evil.example"")' in exported
    assert "'-DASH,'@name,\"line one\nline two\",EUR,1234567.89,false" in exported
    assert "BARE,No prices yet,,,,true" in exported
    before = _book(app, world.organization_id)
    result = _import(app, world, exported)
    assert (result.created, result.changed) == (0, 0)
    assert _book(app, world.organization_id) == before
    assert before['=HYPERLINK("http://evil.example")'][0] == "Formula SKU"
    # Into an empty book of another organization: the same book.
    other = build_world(app, "globex")
    with app.app_context():
        from discountflow.products import services

        for product_id in other.products.values():
            services.delete_product(other.actor("admin"), product_id)
    _import(app, other, exported)
    assert _book(app, other.organization_id) == before


# --- the command line --------------------------------------------------------------------------


def test_the_cli_imports_and_exports(app, world, runner, tmp_path):
    good = tmp_path / "book.csv"
    good.write_text("\ufeff" + GOOD, encoding="utf-8")  # a spreadsheet's byte-order mark
    result = runner.invoke(args=["products", "import", "--org", "acme", str(good)])
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == f"Imported 4 products from {good}: 3 new, 1 changed, 0 already as the file says.\n"
    )
    exported = runner.invoke(args=["products", "export", "--org", "acme"])
    assert exported.exit_code == 0
    assert exported.output == _export(app, world)
    target = tmp_path / "out.csv"
    to_file = runner.invoke(args=["products", "export", "--org", "acme", str(target)])
    assert to_file.exit_code == 0 and target.read_text() == exported.output

    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    refused = runner.invoke(args=["products", "import", "--org", "acme", str(bad)])
    assert refused.exit_code == 1
    assert f"{bad}: line 3: sku: must not be empty" in refused.output
    assert (
        "Error: The file was not imported: 17 rows are wrong. Nothing was changed."
        in refused.output
    )
    assert "Traceback" not in refused.output

    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\nCAFE,Caf\xe9,,USD,1.00,true\n".encode("latin-1"))
    refused = runner.invoke(args=["products", "import", "--org", "acme", str(latin)])
    assert refused.exit_code == 1 and "the file is not UTF-8 text" in refused.output
    missing = runner.invoke(args=["products", "import", "--org", "acme", str(tmp_path / "no.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_the_cli_shows_progress_on_stderr_and_keeps_stdout_as_it_was(
    app, world, runner, tmp_path, monkeypatch
):
    rows = [f"SKU-{n:05d},Product {n},,USD,{n + 1}.00,true" for n in range(2_500)]
    book = tmp_path / "book.csv"
    book.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    quiet = runner.invoke(args=["products", "export", "--org", "acme"])
    assert quiet.stderr == ""  # work done within 2 seconds shows no progress
    monkeypatch.setattr("discountflow.cli.PROGRESS_EVERY_SECONDS", 0)  # a line every 1,000

    imported = runner.invoke(args=["products", "import", "--org", "acme", str(book)])
    assert imported.exit_code == 0, imported.output
    assert imported.stdout == (
        f"Imported 2500 products from {book}: 2500 new, 0 changed, 0 already as the file says.\n"
    )
    assert imported.stderr.splitlines() == [
        "1,000 rows read…",
        "2,000 rows read…",
        "1,000 of 2,500 products checked…",
        "2,000 of 2,500 products checked…",
        "Saving 2,500 products…",
    ]
    exported = runner.invoke(args=["products", "export", "--org", "acme"])
    assert exported.exit_code == 0
    assert exported.stdout == _export(app, world)  # the CSV, byte for byte
    total = len(_book(app, world.organization_id))
    assert total == 2_502  # the file's and the world's two
    assert exported.stderr.splitlines() == [
        f"1,000 of {total:,} products written…",
        f"2,000 of {total:,} products written…",
    ]


# --- the dashboard: Settings → Products --------------------------------------------------------


def _as(app, who: str):
    client = app.test_client()
    assert sign_in(client, f"{who}@acme.example").status_code == 303
    return client


def _upload(client, text: bytes | str):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/settings/products/import",
        data={
            "csrf_token": csrf_token(client, "/settings/products/import"),
            "file": (io.BytesIO(data), "book.csv"),
        },
        content_type="multipart/form-data",
    )


def test_admins_import_and_export_in_the_dashboard(app, world):
    admin = _as(app, "admin")
    uploaded = _upload(admin, GOOD)
    assert uploaded.status_code == 303
    page = admin.get("/settings/products")
    assert "Imported 4 products: 3 new, 1 changed." in page.text
    assert "WIDGET" in page.text and "99.50 USD" in page.text
    refused = _upload(admin, BAD)
    assert refused.status_code == 400
    assert "The file was not imported: 17 rows are wrong. Nothing was changed." in refused.text
    assert (
        "line 16: SKU &#39;SEAT&#39;: name, description or active differ from line 2"
        in refused.text
    )
    not_utf8 = _upload(admin, b"sku\n\xff\xfe\n")
    assert not_utf8.status_code == 400 and "line 2: the file is not UTF-8 text" in not_utf8.text
    empty = admin.post(
        "/settings/products/import",
        data={"csrf_token": csrf_token(admin, "/settings/products/import")},
    )
    assert empty.status_code == 400 and "Choose a CSV file to import." in empty.text
    exported = admin.get("/settings/products/export.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert exported.headers["Content-Disposition"].startswith(
        'attachment; filename="price-book-acme-'
    )
    assert exported.get_data(as_text=True) == _export(app, world)


def test_members_have_no_products_pages(app, world):
    rep = _as(app, "rep")
    for path in ("/settings/products", "/settings/products/new", "/settings/products/export.csv"):
        assert rep.get(path).status_code == 403, path
    assert _upload(rep, GOOD).status_code == 403
    assert "WIDGET" not in _book(app, world.organization_id)

"""The approvals list's "Download CSV": the filtered approvals a member may see, a row per line
item, with cells a spreadsheet would run written behind a quote (the price book's rule)."""

from __future__ import annotations

import csv
import io

from .approvals_world import act, create
from .dashboard import sign_in


def _rows(client, query: str = "") -> list[dict[str, str]]:
    export = client.get(f"/approvals/export.csv{query}")
    assert export.status_code == 200
    assert export.mimetype == "text/csv"
    assert export.headers["Content-Disposition"].startswith("attachment;")
    return list(csv.DictReader(io.StringIO(export.text)))


def test_the_list_downloads_as_csv_a_row_per_line(client, world):
    pending = create(world, "rep", 10, 20, submit=True, title="Two lines")
    create(world, "rep2", 5, title="A draft")
    sign_in(client, "admin@acme.example")
    page = client.get("/approvals?status=pending")
    assert 'href="/approvals/export.csv?status=pending" download>Download CSV</a>' in page.text
    rows = _rows(client, "?status=pending")
    assert [(r["approval"], r["line"], r["line_discount_percent"]) for r in rows] == [
        (pending, "1", "10.0"),
        (pending, "2", "20.0"),
    ]
    first = rows[0]
    assert (first["status"], first["currency"], first["list_total"], first["net_total"]) == (
        "pending",
        "USD",
        "400.00",
        "340.00",
    )
    assert (first["sku"], first["unit_list_price"], first["unit_price"]) == (
        "SEAT",
        "100.00",
        "90.00",
    )
    assert len(_rows(client)) == 3  # every status, every line


def test_a_member_downloads_only_their_own(client, world):
    create(world, "rep", 10, submit=True)
    create(world, "rep2", 10, submit=True)
    sign_in(client, "rep2@acme.example")
    rows = _rows(client)
    assert {r["requested_by"] for r in rows} == {"rep2@acme.example"}


def test_formula_cells_are_quoted(client, world):
    approval = create(
        world, "rep", 10, title='=HYPERLINK("http://evil.example")', customer="@SUM(A1)"
    )
    act(world, "rep", "submit", approval)
    sign_in(client, "admin@acme.example")
    (row,) = _rows(client)
    assert row["title"] == '\'=HYPERLINK("http://evil.example")'
    assert row["customer"] == "'@SUM(A1)"


def test_bad_filters_are_refused(client, world):
    sign_in(client, "admin@acme.example")
    assert client.get("/approvals/export.csv?status=nope").status_code == 400


def test_the_requesters_names_are_read_once_a_batch_not_once_a_requester(app, client, world):
    """Each requester's name was read with a query of its own: as many queries as members."""
    from sqlalchemy import event

    from discountflow.extensions import db

    for who in ("rep", "rep2", "manager"):
        create(world, who, 10, submit=True)
    sign_in(client, "admin@acme.example")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        rows = _rows(client)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert {r["requested_by"] for r in rows} == {
        "rep@acme.example",
        "rep2@acme.example",
        "manager@acme.example",
    }
    names = [each for each in statements if "users.name" in each and "IN (" in each]
    assert len(names) == 1, names

"""The price book as a CSV file: import (upsert by SKU, all or nothing) and export.

One row per product and currency, columns ``sku,name,description,currency,unit_list_price,
active`` in any order and case (only ``sku`` and ``name`` are required: a column left out
leaves that field as it is, or at its default for a new product); prices in major units as
people write them (``1,250.00`` or ``1250.00``). A product without prices is one row with
``currency`` and ``unit_list_price`` left empty. The file is read
with the standard ``csv`` module; a file with any bad row changes nothing, and the refusal
names every bad row by its line number.

Exported cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, a tab or
a carriage return first) are written behind a single quote, as OWASP advises; the import takes
that quote off again, so an export imports back to exactly the same book.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..actors import Actor, writing
from ..csv_files import unquoted, write_csv
from ..currencies import CURRENCIES, format_major_units, parse_major_units
from ..database import utcnow
from ..errors import Conflict, InvalidParameter
from ..extensions import db
from ..schemas import MAX_UNIT_PRICE
from .models import Product
from .schemas import PriceInput, ProductCreate
from .services import MANAGE_PRODUCTS, upsert_products

COLUMNS = ("sku", "name", "description", "currency", "unit_list_price", "active")
REQUIRED = ("sku", "name")  # a file may leave the others out: what it leaves out stays
PRICE_COLUMNS = ("currency", "unit_list_price")  # both, or neither
MAX_ROWS = 100_000
MAX_FILE_BYTES = 64 * 1024 * 1024  # read whole (a file larger than this is refused)
MAX_CELL = 10_000  # characters; the longest column holds 500
_TRUE = {"", "true", "yes", "1", "active"}
_FALSE = {"false", "no", "0", "archived"}
HEADER_RULE = (
    "the header names sku and name, and any of description, currency with unit_list_price, "
    "and active, in any order"
)


# Long work tells how far it is: ``progress(stage, done, total)`` every ``PROGRESS_EVERY``
# items, stage "read" (rows; no total), "checked" (products), "saving" and "written".
Progress = Callable[[str, int, "int | None"], None]
PROGRESS_EVERY = 1_000


def _quiet(stage: str, done: int, total: int | None) -> None:
    """No progress shown (the dashboard's upload)."""


class ImportRefused(InvalidParameter):
    """A file that was not imported, with every bad row: ``problems`` is ``[(line, reason)]``."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        rows = "row is" if count == 1 else "rows are"
        super().__init__(
            f"The file was not imported: {count} {rows} wrong. Nothing was changed.",
            param="file",
        )

    def lines(self) -> list[str]:
        return [f"line {line}: {reason}" for line, reason in self.problems]


@dataclass(frozen=True)
class ImportResult:
    """How many products the file named, and how many of them it created or changed."""

    rows: int
    created: int
    changed: int  # the others were already as the file says


# --- reading -----------------------------------------------------------------------------------


def _reason(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    field = {"prices.currency": "currency", "prices.unit_list_price": "unit_list_price"}
    message = first["msg"].removeprefix("Value error, ").rstrip(".")
    if first["type"] == "string_too_short" and first.get("ctx", {}).get("min_length") == 1:
        message = "must not be empty"
    return f"{field.get(where, where)}: {message}"


def _header(row: list[str]) -> tuple[dict[str, int], str | None]:
    names = [cell.strip().lower().lstrip("\ufeff") for cell in row]
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in names]
    prices = [name for name in PRICE_COLUMNS if name in names]
    if len(prices) == 1:
        missing += [name for name in PRICE_COLUMNS if name not in names]
    twice = sorted({name for name in names if names.count(name) > 1})
    if unknown or missing or twice:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s) " + ", ".join(repr(name) for name in unknown))
        if twice:
            parts.append("column(s) named twice: " + ", ".join(twice))
        return {}, "; ".join(parts) + f" ({HEADER_RULE})"
    return {name: names.index(name) for name in COLUMNS if name in names}, None


def _active(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"active: {text!r} is not true or false")


def _price(currency: str, amount: str) -> PriceInput | None:
    currency, amount = currency.strip().upper(), amount.strip()
    if not currency and not amount:
        return None
    if not currency:
        raise ValueError("currency: a price needs its currency")
    if currency not in CURRENCIES:
        raise ValueError(f"currency: {currency} is not an ISO 4217 currency code")
    if not amount:
        raise ValueError("unit_list_price: a currency needs its price")
    try:
        minor = parse_major_units(amount, currency)
    except ValueError as error:
        raise ValueError(f"unit_list_price: {error}") from None
    if not 1 <= minor <= MAX_UNIT_PRICE:
        most = format_major_units(MAX_UNIT_PRICE, currency)
        raise ValueError(
            f"unit_list_price: {amount} is not a list price (above 0, at most {most} {currency})"
        )
    return PriceInput(currency=currency, unit_list_price=minor)


@dataclass
class _Product:
    line: int
    fields: tuple[str, str, bool]  # name, description, active
    prices: dict[str, PriceInput]


def read_products(text: Iterable[str], progress: Progress = _quiet) -> list[ProductCreate]:
    """Parse a price book file (an iterable of lines, such as an open text file); refuse it
    with every bad row when any is bad."""
    problems: list[tuple[int, str]] = []
    reader = csv.reader(text, strict=True)
    products: dict[str, _Product] = {}
    line = 1
    try:
        header_row = next(reader, None)
        if header_row is None:
            raise ImportRefused([(1, f"the file is empty ({HEADER_RULE})")])
        columns, problem = _header(header_row)
        if problem:
            raise ImportRefused([(1, problem)])
        line = reader.line_num + 1
        rows = 0
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank lines are ignored
            rows += 1
            if rows % PROGRESS_EVERY == 0:
                progress("read", rows, None)
            if rows > MAX_ROWS:
                problems.append((start, f"a file holds at most {MAX_ROWS:,} rows"))
                break
            if len(row) != len(header_row):
                problems.append((start, f"{len(row)} cells, the header has {len(header_row)}"))
                continue
            if any(len(cell) > MAX_CELL for cell in row):
                problems.append((start, f"a cell longer than {MAX_CELL:,} characters"))
                continue
            cell = {name: unquoted(row[index]) for name, index in columns.items()}
            try:
                price = _price(cell.get("currency", ""), cell.get("unit_list_price", ""))
                given = {name: cell[name] for name in ("description",) if name in cell}
                if "active" in cell:
                    given["active"] = _active(cell["active"])
                product = ProductCreate(
                    sku=cell["sku"], name=cell["name"], prices=[price] if price else [], **given
                )
            except ValidationError as error:
                problems.append((start, _reason(error)))
                continue
            except ValueError as error:
                problems.append((start, str(error)))
                continue
            fields = (product.name, product.description, product.active)
            known = products.get(product.sku)
            if known is None:
                products[product.sku] = _Product(
                    start, fields, {p.currency: p for p in product.prices}
                )
                continue
            if known.fields != fields:
                problems.append(
                    (
                        start,
                        f"SKU {product.sku!r}: name, description or active differ from "
                        f"line {known.line}",
                    )
                )
            elif price and price.currency in known.prices:
                problems.append((start, f"SKU {product.sku!r}: a second {price.currency} price"))
            elif price:
                known.prices[price.currency] = price
    except csv.Error as error:
        problems.append((line, f"not a well-formed CSV row ({error})"))
    except UnicodeDecodeError:
        problems.append((line, "the file is not UTF-8 text"))
    if problems:
        raise ImportRefused(problems)
    # A column the file leaves out is left out of each product too (``model_fields_set``):
    # a new product takes its default, a known one keeps what it has.
    left_out = {name for name in ("description", "active") if name not in columns}
    return [
        ProductCreate(
            sku=sku,
            prices=list(known.prices.values()),
            **{
                name: value
                for name, value in zip(("name", "description", "active"), known.fields, strict=True)
                if name not in left_out
            },
        )
        for sku, known in products.items()
    ]


def import_products(actor: Actor, text: Iterable[str], progress: Progress = _quiet) -> ImportResult:
    """Upsert the file's products by SKU in one transaction; owner and admins only."""
    actor.require_write()
    actor.require_manager(MANAGE_PRODUCTS)
    products = read_products(text, progress)  # parsed before the write transaction begins
    writing(actor)
    created, changed = upsert_products(
        actor,
        products,
        utcnow(),
        lambda done: progress("checked", done, len(products)),
        PROGRESS_EVERY,
    )
    progress("saving", len(products), len(products))
    try:
        db.session.commit()
    except IntegrityError as error:  # another change added one of the file's SKUs meanwhile
        db.session.rollback()
        raise Conflict(
            "Another change added a product with one of the file's SKUs while it was being "
            "imported; nothing was imported. Import the file again."
        ) from error
    return ImportResult(len(products), created, changed)


def read_file(binary: IO[bytes]) -> io.StringIO:
    """A file's text, read whole (at most ``MAX_FILE_BYTES``), decoded as ``decode`` does."""
    data = binary.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        raise ImportRefused([(1, f"the file is larger than {limit} MiB: split it")])
    return decode(data)


def decode(data: bytes) -> io.StringIO:
    """An uploaded file's bytes as text (UTF-8, a byte-order mark allowed)."""
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ImportRefused([(line, "the file is not UTF-8 text")]) from None


# --- writing -----------------------------------------------------------------------------------


def export_products(actor: Actor, out: IO[str], progress: Progress = _quiet) -> tuple[int, int]:
    """Write the whole price book, by SKU, in the import's format; return how many products and
    rows."""
    mine = Product.organization_id == actor.organization_id
    total = None
    if progress is not _quiet:
        total = db.session.execute(select(func.count()).select_from(Product).where(mine)).scalar()
    statement = select(Product).where(mine).order_by(Product.sku).execution_options(yield_per=500)
    count = 0

    def rows():
        nonlocal count
        for product in db.session.execute(statement).scalars():
            count += 1
            if count % PROGRESS_EVERY == 0:
                progress("written", count, total)
            common = [product.sku, product.name, product.description]
            active = "true" if product.active else "false"
            prices = [
                (p.currency, format_major_units(p.unit_list_price, p.currency))
                for p in product.prices
            ]
            for currency, amount in prices or [("", "")]:
                yield [*common, currency, amount, active]

    written = write_csv(out, COLUMNS, rows())
    return count, written

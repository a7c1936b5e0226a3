"""The approvals list as a CSV file: the filtered approvals a member may see, one row per line
item, with the price book's protection against cells a spreadsheet would run as formulas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from ..actors import Actor
from ..csv_files import write_csv
from ..currencies import format_major_units
from ..database import rfc3339, utcnow
from ..organizations.services import member_names
from ..schemas import percent_of
from .models import effective_status
from .queries import listed_with_lines
from .schemas import ApprovalListQuery

COLUMNS = (
    "approval",
    "title",
    "customer",
    "deal_reference",
    "status",
    "requested_by",
    "currency",
    "list_total",
    "net_total",
    "discount_percent",
    "created",
    "submitted",
    "decided",
    "line",
    "sku",
    "description",
    "custom",
    "quantity",
    "unit_list_price",
    "unit_price",
    "line_discount_percent",
)


def export_approvals(actor: Actor, query: ApprovalListQuery, out: IO[str]) -> int:
    """Write the approvals the list shows (all its pages), a row per line item; return how
    many rows."""
    now = utcnow()

    def rows():
        for batch in listed_with_lines(actor, query):
            names = member_names(actor, {approval.requested_by_id for approval, _ in batch})
            for approval, lines in batch:
                yield from _rows(approval, lines, names, now)

    return write_csv(out, COLUMNS, rows())


def _rows(approval, lines: list, names: dict[str, str], now) -> Iterator[list]:
    """The approval's rows: one per line item (one, without an item, if it has none)."""
    cur = approval.currency
    common = [
        approval.id,
        approval.title,
        approval.customer,
        approval.deal_reference,
        effective_status(approval.status, approval.valid_until, now),
        names.get(approval.requested_by_id, approval.requested_by_id),
        cur,
        format_major_units(approval.list_amount, cur),
        format_major_units(approval.amount, cur),
        percent_of(approval.list_amount - approval.amount, approval.list_amount),
        rfc3339(approval.created_at),
        rfc3339(approval.submitted_at),
        rfc3339(approval.decided_at),
    ]
    if not lines:
        yield [*common] + [""] * (len(COLUMNS) - len(common))
    for line in lines:
        off = line.unit_list_price - line.unit_price
        yield [
            *common,
            line.position,
            line.sku,
            line.description,
            "true" if line.custom else "false",
            line.quantity,
            format_major_units(line.unit_list_price, cur),
            format_major_units(line.unit_price, cur),
            percent_of(off, line.unit_list_price),
        ]

"""The approvals list as a CSV file: the filtered approvals a member may see, one row per line
item, with the price book's protection against cells a spreadsheet would run as formulas."""

from __future__ import annotations

from typing import IO

from ..actors import Actor
from ..currencies import format_major_units
from ..database import rfc3339, utcnow
from ..organizations.services import member_names
from ..products.csv_files import write_csv
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
    names: dict[str, str] = {}

    def rows():
        for approval, lines in listed_with_lines(actor, query):
            if approval.requested_by_id not in names:
                names.update(member_names(actor, [approval.requested_by_id]))
            cur = approval.currency
            common = [
                approval.id,
                approval.title,
                approval.customer,
                approval.deal_reference,
                effective_status(approval.status, approval.valid_until, now),
                names.get(approval.requested_by_id, approval.requested_by_id or ""),
                cur,
                format_major_units(approval.list_amount, cur),
                format_major_units(approval.amount, cur),
                percent_of(approval.list_amount - approval.amount, approval.list_amount),
                rfc3339(approval.created_at) or "",
                rfc3339(approval.submitted_at) or "",
                rfc3339(approval.decided_at) or "",
            ]
            for line in lines or [None]:
                if line is None:
                    yield [*common, "", "", "", "", "", "", "", ""]
                    continue
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

    return write_csv(out, COLUMNS, rows())

"""A page of approvals rendered to JSON by SQLite itself, for ``GET /v2/approvals``.

Shaping twenty approvals with their line items and steps in Python costs several times what
reading them does; SQLite's JSON functions build the same objects in C, in one prebuilt query
for the page's ids. The shape here must stay exactly that of ``api.approval_json``:
``tests/test_approval_pages.py`` compares the two, object by object, for every status.

Other databases take the general path (``services.list_approvals`` and ``api.approval_json``).
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    select,
)

from ..database import UTCDateTime
from .models import Approval, ApprovalStatus, LineItem, Step

_approvals, _line_items, _steps = Approval.__table__.c, LineItem.__table__.c, Step.__table__.c


def _constant(value: str | int | float) -> ColumnElement:
    """A constant written into the statement's text rather than bound on every execution.

    The page's statement has some seventy constants (every key of every object, formats,
    factors); bound, SQLAlchemy processed each on every page, about a third of the render's
    CPU. Only this module's own constants come here, never anything a request carries.
    """
    if isinstance(value, str):
        if not value.replace("_", "").replace("%", "").replace("-", "").replace(":", "").isalnum():
            raise ValueError(f"not a plain constant: {value!r}")
        return literal_column(f"'{value}'")
    return literal_column(repr(value))


def _object(fields: dict[str, Any]) -> ColumnElement:
    """``json_object('key', value, …)`` in the order written."""
    return func.json_object(
        *chain.from_iterable(
            (_constant(k), _constant(v) if isinstance(v, str) else v) for k, v in fields.items()
        )
    )


def _rfc3339(column: ColumnElement) -> ColumnElement:
    """Stored UTC times as ``2026-01-31T09:30:00Z`` (NULL stays null), like ``rfc3339()``."""
    return func.strftime(_constant("%Y-%m-%dT%H:%M:%SZ"), column)


def _percent_of(part: ColumnElement, whole: ColumnElement) -> ColumnElement:
    """Like ``schemas.percent_of``: basis points rounded half up, as a percentage."""
    return case(
        (whole <= _constant(0), _constant(0.0)),
        else_=((part * _constant(20_000) + whole) // (whole * _constant(2))) / _constant(100.0),
    )


def _line_items_of(approval_id: ColumnElement) -> ColumnElement:
    item = _line_items
    list_amount = item.quantity * item.unit_list_price
    amount = item.quantity * item.unit_price
    shaped = _object(
        {
            "object": "line_item",
            "id": item.id,
            "product": item.product_id,
            "sku": item.sku,
            "description": item.description,
            "custom": func.json(case((item.custom, _constant("true")), else_=_constant("false"))),
            "quantity": item.quantity,
            "unit_list_price": item.unit_list_price,
            "unit_price": item.unit_price,
            "list_amount": list_amount,
            "amount": amount,
            "discount_amount": list_amount - amount,
            "discount_percent": _percent_of(
                item.unit_list_price - item.unit_price, item.unit_list_price
            ),
        }
    )
    # Rows come in the order of the (approval_id, position) index that finds them.
    rows = select(func.json_group_array(func.json(shaped))).where(item.approval_id == approval_id)
    return func.json(rows.scalar_subquery())


def _steps_of(approval_id: ColumnElement, round_: ColumnElement) -> ColumnElement:
    step = _steps
    shaped = _object(
        {
            "object": "approval_step",
            "id": step.id,
            "position": step.position,
            "approval_level": step.approval_level_id,
            "level_name": step.level_name,
            "level_rank": step.level_rank,
            "status": step.status,
            "decided_by": step.decided_by_id,
            "decided": _rfc3339(step.decided_at),
        }
    )
    # Rows come in the order of the (approval_id, round, position) index that finds them.
    rows = select(func.json_group_array(func.json(shaped))).where(
        step.approval_id == approval_id, step.round == round_
    )
    return func.json(rows.scalar_subquery())


def _approval_json() -> ColumnElement:
    """One approval as JSON text, exactly as ``api.approval_json`` shapes it, at ``:now``."""
    a = _approvals
    expired = and_(
        a.status == _constant(ApprovalStatus.APPROVED.value),
        a.valid_until.is_not(None),
        a.valid_until <= bindparam("now", type_=UTCDateTime),
    )
    discount = a.list_amount - a.amount
    return _object(
        {
            "object": "approval",
            "id": a.id,
            "title": a.title,
            "customer": a.customer,
            "deal_reference": a.deal_reference,
            "currency": a.currency,
            "justification": a.justification,
            "status": case((expired, _constant(ApprovalStatus.EXPIRED.value)), else_=a.status),
            "requested_by": a.requested_by_id,
            "line_items": _line_items_of(a.id),
            "list_amount": a.list_amount,
            "amount": a.amount,
            "discount_amount": discount,
            "discount_percent": _percent_of(discount, a.list_amount),
            "max_line_discount_percent": a.max_line_discount_bps / _constant(100.0),
            "required_approval_level": a.required_level_id,
            "awaiting_approval_level": a.awaiting_level_id,
            "steps": _steps_of(a.id, a.round),
            "submitted": _rfc3339(a.submitted_at),
            "decided": _rfc3339(a.decided_at),
            "valid_until": _rfc3339(a.valid_until),
            "metadata": func.json(a.metadata),
            "created": _rfc3339(a.created_at),
            "updated": _rfc3339(a.updated_at),
        }
    )


# Built once: SQLAlchemy then compiles it once, however many pages are rendered. The ids come
# as one JSON array (``json_each``), not an expanding ``IN`` list that SQLAlchemy would write
# into the statement's text anew for every page.
_IDS = select(func.json_each(bindparam("ids")).table_valued("value").c.value).scalar_subquery()
_RENDER = select(_approvals.id, _approval_json().label("json")).where(_approvals.id.in_(_IDS))


def render(connection: Connection, ids: list[str], now: datetime) -> list[str]:
    """Render the approvals ``ids`` as JSON texts, in the order given."""
    if not ids:
        return []
    rendered = dict(connection.execute(_RENDER, {"ids": json.dumps(ids), "now": now}).all())
    # Same read transaction as the query that found the ids, so none can have gone since.
    return [rendered[id_] for id_ in ids if id_ in rendered]

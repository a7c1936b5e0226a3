"""Cursor pagination, newest first, for every list in the API and the dashboard.

A cursor is the id of an object on the previous page. Rows are ordered by ``(created_at, id)``,
which never changes once a row exists, so pages have no duplicates and no gaps while the rows
change status, and a page costs an index range scan however large the table is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, or_, select

from .database import require_usable_id
from .errors import InvalidParameter
from .extensions import db

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    """Which page to read: at most ``limit`` rows after or before a cursor."""

    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None
    after_param: str = "starting_after"  # what the caller calls the cursor (GraphQL: after)

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
        for param in ("starting_after", "ending_before"):
            if getattr(self, param) is not None:
                require_usable_id(getattr(self, param), param)
        if self.starting_after is not None and self.ending_before is not None:
            raise InvalidParameter(
                "Send starting_after or ending_before, not both.", param="ending_before"
            )


def page_of(model: Any, page: PageRequest, scope: Any, *filters: Any) -> tuple[list[Any], bool]:
    """Return one page of ``model`` objects within ``scope`` (an organization, an approval)
    that match ``filters``, newest first, and whether more follow."""
    rows, has_more = paginate(select(model).where(scope, *filters), model, page, scope=scope)
    return [row[0] for row in rows], has_more


def paginate(
    statement: Select, table: Any, page: PageRequest, *, scope: Any
) -> tuple[list[Any], bool]:
    """Run ``statement`` for one page; return its rows, newest first, and whether more follow.

    ``table`` is the model (or table) with ``id`` and ``created_at`` columns; ``scope`` is the
    condition that limits cursors to the caller's rows (an organization, an approval).
    """
    columns = getattr(table, "c", table)
    created, id_ = columns.created_at, columns.id
    cursor_id = page.starting_after or page.ending_before
    if cursor_id is not None:
        param = page.after_param if page.starting_after else "ending_before"
        cursor_created = db.session.execute(
            select(created).where(id_ == cursor_id, scope)
        ).scalar_one_or_none()
        if cursor_created is None:
            raise InvalidParameter(f"No such object: {cursor_id!r}.", param=param)
        if page.starting_after:
            statement = statement.where(
                created <= cursor_created,
                or_(created < cursor_created, and_(created == cursor_created, id_ < cursor_id)),
            )
        else:
            statement = statement.where(
                created >= cursor_created,
                or_(created > cursor_created, and_(created == cursor_created, id_ > cursor_id)),
            )
    if page.ending_before:
        statement = statement.order_by(created.asc(), id_.asc())
    else:
        statement = statement.order_by(created.desc(), id_.desc())
    # A plain-table statement (hot lists) runs on the connection, skipping the ORM's layer.
    execute = db.session.connection().execute if isinstance(table, Table) else db.session.execute
    rows = list(execute(statement.limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if page.ending_before:
        rows.reverse()
    return rows, has_more

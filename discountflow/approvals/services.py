"""Approvals: the rules every surface (API, dashboard, CLI) shares."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import InvalidParameter
from ..extensions import db
from .models import Approval

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10


def list_approvals(
    organization_id: str, *, limit: int = DEFAULT_PAGE_SIZE
) -> tuple[list[Approval], bool]:
    """Return the organization's newest approvals and whether more follow."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidParameter(f"limit must be between 1 and {MAX_PAGE_SIZE}.", param="limit")
    rows = list(
        db.session.execute(
            select(Approval)
            .where(Approval.organization_id == organization_id)
            .order_by(Approval.created_at.desc(), Approval.id.desc())
            .limit(limit + 1)
        ).scalars()
    )
    return rows[:limit], len(rows) > limit

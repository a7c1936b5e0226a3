"""``/v2/approvals``: the organization's discount requests as JSON."""

from __future__ import annotations

from flask import Blueprint, request

from ..auth.services import current_api_key
from ..database import rfc3339
from ..errors import InvalidParameter
from . import services
from .models import Approval

bp = Blueprint("approvals_api", __name__, url_prefix="/approvals")


def approval_json(approval: Approval) -> dict:
    return {
        "object": "approval",
        "id": approval.id,
        "title": approval.title,
        "customer": approval.customer,
        "currency": approval.currency,
        "status": approval.status,
        "requested_by": approval.requested_by_id,
        "created": rfc3339(approval.created_at),
        "updated": rfc3339(approval.updated_at),
    }


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 6):
        raise InvalidParameter(f"{name} must be a whole number.", param=name)
    return int(value)


@bp.get("")
def list_approvals():
    """List the organization's approvals, newest first."""
    approvals, has_more = services.list_approvals(
        current_api_key().organization_id,
        limit=_int_arg("limit", services.DEFAULT_PAGE_SIZE),
    )
    return {"object": "list", "data": [approval_json(a) for a in approvals], "has_more": has_more}

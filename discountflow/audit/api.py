"""``/v2/events``: the organization's audit trail as JSON (owner and admins)."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..openapi import operation
from . import services
from .schemas import EventList, EventListQuery

bp = Blueprint("audit_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

HISTORY = "History"


@bp.get("/events")
@operation(EventList, tag=HISTORY)
def list_events(query: EventListQuery):
    """List the organization's audit trail, newest first (owner and admins; filter by type)."""
    return EventList.page(*services.list_events(current_actor(), query.page(), query.type))

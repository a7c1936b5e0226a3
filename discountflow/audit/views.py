"""Settings → Audit: the organization's audit trail in the dashboard (owner and admins)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from ..dashboard import current_actor, list_query, pager
from ..organizations.services import member_names
from . import services
from .schemas import EventListQuery

bp = Blueprint("audit", __name__, template_folder="templates")

PAGE_SIZE = 50


@bp.get("/settings/audit")
@login_required
def index():
    """Every change in the organization, newest first, filtered by type."""
    actor = current_actor()
    kind = request.args.get("type", "").strip()
    query = list_query(EventListQuery, PAGE_SIZE, {"type": [kind]} if kind else {})
    events, has_more = services.list_events(actor, query.page(), query.type)
    people = [event.actor_user_id for event in events]
    return render_template(
        "audit/index.html",
        title="Audit",
        events=events,
        names=member_names(actor, people),
        kind=kind,
        **pager([event.id for event in events], query, has_more),
    )

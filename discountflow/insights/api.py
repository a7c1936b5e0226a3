"""``GET /v2/insights`` as JSON: the figures of a period, in one currency."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..openapi import operation
from . import services
from .schemas import InsightsOut, InsightsQuery

bp = Blueprint("insights_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

INSIGHTS = "Insights"


@bp.get("/insights")
@operation(InsightsOut, tag=INSIGHTS)
def get_insights(query: InsightsQuery):
    """Discount given, depth, speed and outcomes of a period (default: the last 90 days), in
    one currency, optionally for one requester, approval level or product."""
    return services.insights(current_actor(), query)

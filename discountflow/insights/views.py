"""The dashboard's Insights: charts of the figures with their tables, filters in the query
string (a view can be shared by its URL), and each chart's table as a CSV file.

Views are thin: the query string is read with the API's own model, the figures come from the
one service, and what a member may see is the service's to say.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import login_required

from ..approvals.levels import levels_by_rank
from ..dashboard import csv_download, current_actor
from ..dashboard.forms import validated
from ..organizations.services import list_members
from ..pagination import PageRequest
from ..products.services import active_products
from . import services
from .charts import data_uri, tables
from .schemas import InsightsQuery

bp = Blueprint("insights", __name__, template_folder="templates")

PRODUCT_CHOICES = 300  # the filter offers the first active products by SKU
MEMBER_CHOICES = 100  # … and the newest members


@bp.before_request
@login_required
def _signed_in() -> None:
    """Insights are for signed-in members (each sees what the service lets them)."""


def _query() -> tuple[InsightsQuery, dict[str, str]]:
    """The query string as the API's query: blank fields left out."""
    given = {name: value.strip() for name, value in request.args.items() if value.strip()}
    return validated(InsightsQuery, given), given


@bp.get("/insights")
def index():
    """The charts, each with its table and CSV, for the period and filters asked for."""
    actor = current_actor()
    query, given = _query()
    figures = services.insights(actor, query)
    shown = tables(figures)
    manages = actor.manages_organization
    # Members who were removed too: what they asked for still counts, and may be looked at.
    choices = PageRequest(limit=MEMBER_CHOICES)
    members = list_members(actor, choices, with_removed=True)[0] if manages else []
    return render_template(
        "insights/index.html",
        title="Insights",
        figures=figures,
        tables=[(table, data_uri(table)) for table in shown],
        given=given,
        currencies=services.currencies_in_use(actor, figures.currency),
        levels=levels_by_rank(actor),
        products=active_products(actor, limit=PRODUCT_CHOICES),
        members=members,
    )


@bp.get("/insights/<name>.csv")
def download(name: str):
    """One chart's table as a CSV file, for the same period and filters."""
    actor = current_actor()
    query, _ = _query()
    chosen = {table.name: table for table in tables(services.insights(actor, query))}
    table = chosen.get(name)
    if table is None:
        abort(404)
    period = f"{query.start or ''}-{query.end or ''}".strip("-") or "last-90-days"
    return csv_download(f"insights-{name}-{period}.csv", table.write_csv)

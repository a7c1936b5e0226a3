"""The documentation's pages: the home page, each page, and the search index."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from ..config import VERSION
from . import pages

bp = Blueprint(
    "docs",
    __name__,
    url_prefix="/docs",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@bp.get("/")
def home():
    """The home page: what the documentation holds."""
    return _show(pages.HOME)


@bp.get("/<path:slug>")
def page(slug: str):
    """One page of the documentation."""
    if slug == pages.HOME or not pages.exists(slug):
        abort(404)
    return _show(slug)


def _show(slug: str):
    address = pages.base_url(request.host_url)
    return render_template(
        "docs/page.html",
        page=pages.render(slug, address),
        home=slug == pages.HOME,
        contents=pages.contents(),
        search_index=pages.search_index(),
        environment=current_app.config["DISCOUNTFLOW_ENV"].capitalize(),
        version=VERSION,
        title=None,
    )

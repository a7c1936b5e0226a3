"""The documentation site at ``/docs``: the Markdown pages of ``docs/``, readable without
signing in, in the dashboard's look (``pages.py`` renders them for this deployment)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the documentation's pages."""
    from .views import bp

    app.register_blueprint(bp)

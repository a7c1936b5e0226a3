"""Insights: how much discount the organization gives and how fast it decides, as figures over
the API and as charts with their tables in the dashboard."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the figures' API and dashboard page."""
    from . import api, views

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)

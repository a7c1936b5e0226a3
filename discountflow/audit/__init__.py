"""The audit trail: an append-only event for every change, written in the change's transaction."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the audit trail's API and dashboard pages."""
    from . import api, views

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)

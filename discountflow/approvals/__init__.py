"""Approvals: discount requests, their routing through levels of authority, and decisions."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the page cache; register the approvals API, dashboard pages and commands."""
    from . import api, cli, page_cache, views

    page_cache.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.approvals_cli)

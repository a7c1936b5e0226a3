"""Approvals: discount requests, their routing through levels of authority, and decisions."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the approvals API, dashboard pages and commands."""
    from . import api, cli, views

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.approvals_cli)

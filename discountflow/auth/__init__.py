"""API keys (their format, management and authentication) and dashboard sign-in."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the key cache and revision; register the API, dashboard pages and commands."""
    from . import api, authentication, cli, views

    authentication.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.keys_cli)

"""Organizations: their settings, members, roles and who approves at which level."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the organization's API, dashboard pages and commands."""
    from . import api, cli, views

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    for command in cli.COMMANDS:
        app.cli.add_command(command)

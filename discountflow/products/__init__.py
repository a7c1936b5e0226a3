"""Products: the organization's price book, where the list prices of line items come from."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the price book's API, dashboard pages and commands."""
    from . import api, cli, views

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.products_cli)

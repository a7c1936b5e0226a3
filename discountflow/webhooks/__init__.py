"""Webhooks: endpoints that hear the organization's events, signed and delivered at least once
from a transactional outbox by a separate worker."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the outbox; register the webhooks API, dashboard pages and commands."""
    from . import api, cli, outbox, views

    outbox.install()
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.context_processor(views.disabled_endpoints_notice)
    app.cli.add_command(cli.webhooks_cli)

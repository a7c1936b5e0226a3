"""Notifications: members hear of the approvals that wait for them and of their decisions, by
email, written to the outbox with the event that causes them and sent by the worker."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the notifications' outbox; register their API and commands."""
    from . import api, cli, outbox

    outbox.install()
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.notifications_cli)

"""Notifications: members hear of the approvals that wait for them and of their decisions, by
email, and the organization's chat and push destinations hear of them too, written to the
outbox with the event that causes them and sent by the worker."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the notifications' outbox; register their API, pages and commands."""
    from . import api, chat, cli, outbox, views

    outbox.install()
    chat.quiet_libraries()
    chat.guard_connections()
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.notifications_cli)

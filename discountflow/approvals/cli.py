"""``flask approvals …``: work on approvals from the command line (cron)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..cli import reports_domain_errors
from .services import expire_approvals

approvals_cli = AppGroup("approvals", help="Work on approvals.")


@approvals_cli.command("expire")
@reports_domain_errors
def expire_command() -> None:
    """Mark approved prices past their validity as expired (run it daily from cron)."""
    count = expire_approvals()
    click.echo(f"Expired {count} approval{'s' if count != 1 else ''}.")

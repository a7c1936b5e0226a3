"""``flask notifications test EMAIL``: check that MAIL_URL sends."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from . import services

notifications_cli = AppGroup("notifications", help="Check the notifications' email.")


@notifications_cli.command("test")
@click.argument("email")
def test_command(email: str) -> None:
    """Send a test email to EMAIL through MAIL_URL (or the log) and print the outcome."""
    try:
        shown = services.send_test_email(email)
    except services.EmailNotSent as failed:
        raise click.ClickException(str(failed)) from failed
    click.echo(f"Sent a test email to {email} through {shown}.")

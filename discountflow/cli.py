"""Command-line interface (``flask --app app …``): the commands that span features, and the
helpers every feature's commands share. Commands call services and hold no rules.

Each feature registers its own commands (``organizations/cli.py``, ``auth/cli.py``,
``approvals/cli.py``); the CLI acts as the organization's owner (``Actor.for_cli``).
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import sqlite3
import sys
import time
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from .actors import Actor
from .approvals.demo import SIGN_INS, awaiting_the_owner, create_demo_organization
from .auth.services import generate_key
from .config import VERSION
from .database import backup_sqlite
from .errors import DomainError
from .extensions import db
from .organizations.models import Organization

DURATION_PATTERN = re.compile(r"(\d+)([smhd])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


NO_SCHEMA = "The database has no tables yet: run `flask --app app db upgrade` first."


def reports_domain_errors(command):
    """Turn a service's refusal, or a database without its schema, into one clear line and a
    non-zero exit (never a traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            raise click.ClickException(error.message) from error
        except (OperationalError, ProgrammingError) as error:
            text = str(error.orig)
            if "no such table" in text or "does not exist" in text:
                raise click.ClickException(NO_SCHEMA) from error
            raise

    return wrapper


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``90s``, ``15m``, ``24h``, ``7d`` or ``1d12h``."""
    text = text.strip().lower()
    if text == "0":
        return timedelta(0)
    parts = DURATION_PATTERN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 24h or 7d.")
    return sum((timedelta(**{DURATION_UNITS[u]: int(n)}) for n, u in parts), timedelta(0))


class ProgressLines:
    """How far long work is, as lines on stderr (stdout stays the command's output): nothing
    for work done within ``every`` seconds, then a line at most every ``every`` seconds.

    ``lines`` gives each stage's words, formatted with ``done`` and ``total``.
    """

    def __init__(self, lines: dict[str, str], every: float | None = None) -> None:
        self.lines = lines
        self.every = PROGRESS_EVERY_SECONDS if every is None else every
        self.last = time.monotonic()
        self.shown = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        # A stage without counts ("saving") is shown once anything was: the silence after
        # the last count is that stage's.
        if now - self.last >= self.every or (self.shown and "{done" not in self.lines[stage]):
            click.echo(self.lines[stage].format(done=done, total=total), err=True)
            self.last, self.shown = now, True


PROGRESS_EVERY_SECONDS = 2.0


def stdin_is_a_terminal() -> bool:
    """Whether a person types at standard input (then a password is asked, hidden)."""
    return sys.stdin.isatty()


NO_PASSWORD = (
    "No password on standard input: pipe it in as one line "
    '(echo "$PASSWORD" | flask --app app …), or run the command at a terminal.'
)


def read_password(password_stdin: bool = False, prompt: str = "Password") -> str:
    """A password asked twice, hidden, at a terminal; else the first line of standard input.

    Without a terminal there is nobody to prompt: ``click.prompt`` would fall back to
    ``getpass``'s echoing read and warn on stderr, so the line is read as it is.
    ``password_stdin`` reads the line even from a terminal.
    """
    if password_stdin or not stdin_is_a_terminal():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException(NO_PASSWORD)
        return password
    try:
        return click.prompt(f"{prompt} (asked twice)", hide_input=True, confirmation_prompt=True)
    except click.Abort:  # nothing typed before the input ended (Ctrl+D)
        raise click.ClickException("No password was given.") from None


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database schema (the same as ``flask db upgrade``)."""
    upgrade_schema()
    click.echo("Database ready.")


def upgrade_schema() -> None:
    """Run the migrations up to the newest (adopting a database made before migrations)."""
    upgrade()


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False))
def backup_command(path: str) -> None:
    """Copy the SQLite database to PATH while the service runs (a consistent online copy)."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        raise click.ClickException("backup copies an SQLite file; use pg_dump for PostgreSQL.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.ClickException(f"There is no folder {folder}: create it first.")
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"The folder {folder} is not writable.")
    try:
        size = backup_sqlite(url.database, path)
    except (OSError, sqlite3.Error) as error:
        raise click.ClickException(f"The backup failed: {error}") from error
    click.echo(f"Backed up {url.database} to {path} ({size:,} bytes).")


@click.command("demo")
@with_appcontext
@reports_domain_errors
def demo_command() -> None:
    """Create a demo organization (once) and print a fresh staging key and a curl to try."""
    upgrade_schema()
    base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    organization = db.session.execute(
        select(Organization).where(Organization.slug == "demo")
    ).scalar_one_or_none()
    if organization is None:
        password = secrets.token_urlsafe(12)
        organization = create_demo_organization(password)
        click.echo(
            "Created organization demo (Demo Inc.) with members, approval levels, a price book "
            "and approvals."
        )
        click.echo(
            f"Sign in at {base}/sign-in with organization demo (when the page asks for one) "
            f"and everyone's password (printed once): {password}"
        )
        for emails, who in SIGN_INS:
            click.echo(f"  {emails}: {who}")
    else:
        click.echo(
            "Organization demo exists (its sign-ins were printed when it was made; "
            "`flask --app app users reset-password EMAIL --org demo` sets a new password)."
        )
    api_key, key = generate_key(Actor.for_cli(organization))
    environment = current_app.config["DISCOUNTFLOW_ENV"]
    click.echo(f"Generated {environment} API key {api_key.id} (shown only once):")
    click.echo(key)
    owner, level, waiting = awaiting_the_owner(organization)
    if level is None:
        click.echo(
            f"It acts as the owner, {owner.email}, who holds no approval level: sign in as "
            "an approver to decide what waits."
        )
    else:
        count = f"{len(waiting)} approval{' waits' if len(waiting) == 1 else 's wait'}"
        click.echo(
            f"It acts as the owner, {owner.email}, who approves at the {level} level: "
            f"{count} for its decision{':' if waiting else '.'}"
        )
    for view in waiting:
        click.echo(f"  {view.approval.id}  {view.approval.title} ({view.approval.customer})")
    click.echo(f"Dashboard: {base}/  API reference: {base}/v2/docs/")
    click.echo("Try it:")
    bearer = f'-H "Authorization: Bearer {key}"'
    click.echo(f"  curl {bearer} {base}/v2/approvals")
    decisions = (("approve", "Approved for a 3-year term."), ("reject", "Too deep for this deal."))
    for view, (action, comment) in zip(waiting, decisions, strict=False):
        click.echo(
            f'  curl {bearer} -H "Content-Type: application/json" '
            f'-d \'{{"comment": "{comment}"}}\' '
            f"{base}/v2/approvals/{view.approval.id}/{action}"
        )


@click.command("version")
def version_command() -> None:
    """Print DiscountFlow's version (CHANGELOG.md says what each one changed)."""
    click.echo(f"DiscountFlow {VERSION}")


def init_app(app: Flask) -> None:
    """Register the commands that span features on the app's ``flask`` CLI."""
    for command in (init_db_command, backup_command, demo_command, version_command):
        app.cli.add_command(command)

"""Command-line interface (``flask --app app …``). Commands call services and hold no rules."""

from __future__ import annotations

import functools
import os
import re
import secrets
import sys
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from .auth import services as auth
from .auth.models import Organization, Role, User
from .database import rfc3339
from .errors import DomainError
from .extensions import db

DURATION_PATTERN = re.compile(r"(\d+)([smhd])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _reports_domain_errors(command):
    """Turn a service's refusal into a clean error message and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            raise click.ClickException(error.message) from error

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


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _owner(reference: str) -> User:
    return auth.owner_of(auth.find_organization(reference))


def _echo_key(key: str) -> None:
    click.echo("Store this key now; it is shown only once:", err=True)
    click.echo(key)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database schema (the same as ``flask db upgrade``)."""
    upgrade_schema()
    click.echo("Database ready.")


def upgrade_schema() -> None:
    """Run the migrations up to the newest (adopting a database made before migrations)."""
    from flask_migrate import upgrade

    upgrade()


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def backup_command(path: str) -> None:
    """Copy the SQLite database to PATH while the service runs (a consistent online copy)."""
    from .database import backup_sqlite

    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        raise click.ClickException("backup copies an SQLite file; use pg_dump for PostgreSQL.")
    size = backup_sqlite(url.database, path)
    click.echo(f"Backed up {url.database} to {path} ({size:,} bytes).")


@click.command("create-org")
@with_appcontext
@click.argument("name")
@click.option("--owner-email", required=True, help="Email of the organization's owner.")
@click.option("--owner-name", default="", help="The owner's name.")
@click.option("--slug", default="", help="URL name; derived from NAME when omitted.")
@click.option("--password-stdin", is_flag=True, help="Read the owner's password from stdin.")
@_reports_domain_errors
def create_org_command(
    name: str, owner_email: str, owner_name: str, slug: str, password_stdin: bool
) -> None:
    """Create an organization and its owner."""
    organization = auth.create_organization(
        name,
        owner_email=owner_email,
        owner_password=_read_password(password_stdin),
        owner_name=owner_name,
        slug=slug,
    )
    click.echo(f"Created organization {organization.slug} ({organization.id}).")


@click.command("add-member")
@with_appcontext
@click.option("--org", "organization", required=True, help="Organization id or slug.")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--role", type=click.Choice([Role.ADMIN.value, Role.MEMBER.value]), default="member")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_reports_domain_errors
def add_member_command(
    organization: str, email: str, name: str, role: str, password_stdin: bool
) -> None:
    """Add an admin or a member to an organization."""
    member = auth.add_member(
        _owner(organization),
        email=email,
        password=_read_password(password_stdin),
        role=role,
        name=name,
    )
    click.echo(f"Added {member.email} as {member.role} ({member.id}).")


keys_cli = AppGroup("keys", help="Generate, roll, revoke and list an organization's API keys.")
_org_option = click.option("--org", "organization", required=True, help="Organization id or slug.")
_read_only_option = click.option("--read-only", is_flag=True, help="The read-only key slot.")


@keys_cli.command("generate")
@_org_option
@_read_only_option
@click.option("--expires-in-days", type=int, default=None, help="Expire the key after N days.")
@_reports_domain_errors
def keys_generate(organization: str, read_only: bool, expires_in_days: int | None) -> None:
    """Generate a key; the slot's previous key stops working at once."""
    api_key, key = auth.generate_key(
        _owner(organization), read_only=read_only, expires_in_days=expires_in_days
    )
    click.echo(f"Generated {api_key.id}.", err=True)
    _echo_key(key)


@keys_cli.command("roll")
@_org_option
@_read_only_option
@click.option("--grace", required=True, help="How long the old key keeps working (e.g. 24h).")
@_reports_domain_errors
def keys_roll(organization: str, read_only: bool, grace: str) -> None:
    """Issue a new key; the current one keeps working for the grace period."""
    api_key, key = auth.roll_key(
        _owner(organization), read_only=read_only, grace=parse_duration(grace)
    )
    click.echo(f"Rolled to {api_key.id}; the previous key works for {grace} more.", err=True)
    _echo_key(key)


@keys_cli.command("revoke")
@_org_option
@_read_only_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_reports_domain_errors
def keys_revoke(organization: str, read_only: bool, yes: bool) -> None:
    """Revoke a slot's keys at once. There is no undo."""
    owner = _owner(organization)
    if not yes:
        click.confirm(
            "Requests with this key will fail immediately. There is no undo. Revoke?", abort=True
        )
    for key_id in auth.revoke_key(owner, read_only=read_only):
        click.echo(f"Revoked {key_id}.")


@keys_cli.command("list")
@_org_option
@_reports_domain_errors
def keys_list(organization: str) -> None:
    """Show each key slot's status and last use."""
    for slot in auth.key_slots(_owner(organization)):
        label = "read-only" if slot.read_only else "full access"
        click.echo(f"{label}: {slot.status}")
        for api_key in [slot.current, *slot.expiring]:
            if api_key is None:
                continue
            state = "current" if api_key is slot.current else "expiring"
            click.echo(
                f"  {api_key.id} …{api_key.last_four} {state}"
                f" created {rfc3339(api_key.created_at)}"
                f" expires {rfc3339(api_key.expires_at) or 'never'}"
                f" last used {rfc3339(api_key.last_used_at) or 'never'}"
            )


@click.command("demo")
@with_appcontext
@_reports_domain_errors
def demo_command() -> None:
    """Create a demo organization (once) and print a fresh staging key and a curl to try."""
    from .approvals.demo import create_demo_organization

    upgrade_schema()
    organization = db.session.execute(
        select(Organization).where(Organization.slug == "demo")
    ).scalar_one_or_none()
    if organization is None:
        password = secrets.token_urlsafe(12)
        organization = create_demo_organization(password)
        click.echo("Created organization 'demo' with members, approval levels and approvals.")
        click.echo(f"Dashboard sign-in (printed once), everyone's password: {password}")
        click.echo("  owner@demo.example (owner; API Keys), admin@demo.example (admin),")
        click.echo("  rep@demo.example and sam@demo.example (reps), manager@demo.example,")
        click.echo("  vp@demo.example and cfo@demo.example (approvers)")
    owner = auth.owner_of(organization)
    api_key, key = auth.generate_key(owner)
    port = os.environ.get("PORT", "8000")
    environment = current_app.config["DISCOUNTFLOW_ENV"]
    click.echo(f"Generated {environment} API key {api_key.id} (shown only once):")
    click.echo(key)
    click.echo(
        f"Dashboard: http://127.0.0.1:{port}/  API reference: http://127.0.0.1:{port}/v2/docs/"
    )
    click.echo("Try it:")
    click.echo(f'  curl -H "Authorization: Bearer {key}" http://127.0.0.1:{port}/v2/approvals')


approvals_cli = AppGroup("approvals", help="Work on approvals.")


@approvals_cli.command("expire")
@_reports_domain_errors
def expire_command() -> None:
    """Mark approved prices past their validity as expired (run it daily from cron)."""
    from .approvals.services import expire_approvals

    count = expire_approvals()
    click.echo(f"Expired {count} approval{'s' if count != 1 else ''}.")


def register_cli(app: Flask) -> None:
    """Register the commands on the app's ``flask`` CLI."""
    for command in (
        init_db_command,
        backup_command,
        create_org_command,
        add_member_command,
        demo_command,
    ):
        app.cli.add_command(command)
    app.cli.add_command(keys_cli)
    app.cli.add_command(approvals_cli)

"""``flask create-org``, ``flask add-member``, ``flask users reset-password`` and ``flask users
remove``: the organization's commands."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..actors import Actor
from ..cli import read_password, reports_domain_errors
from .models import Role
from .services import (
    add_member,
    create_organization,
    find_member,
    find_organization,
    remove_member,
    reset_password,
)


@click.command("create-org")
@with_appcontext
@click.argument("name")
@click.option("--owner-email", required=True, help="Email of the organization's owner.")
@click.option("--owner-name", default="", help="The owner's name.")
@click.option("--slug", default="", help="URL name; derived from NAME when omitted.")
@click.option("--password-stdin", is_flag=True, help="Read the owner's password from stdin.")
@reports_domain_errors
def create_org_command(
    name: str, owner_email: str, owner_name: str, slug: str, password_stdin: bool
) -> None:
    """Create an organization and its owner."""
    organization = create_organization(
        name,
        owner_email=owner_email,
        owner_password=read_password(password_stdin),
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
@reports_domain_errors
def add_member_command(
    organization: str, email: str, name: str, role: str, password_stdin: bool
) -> None:
    """Add an admin or a member to an organization."""
    actor = Actor.for_cli(find_organization(organization))
    member = add_member(
        actor, email=email, password=read_password(password_stdin), role=role, name=name
    )
    click.echo(f"Added {member.email} as {member.role} ({member.id}).")


@click.group("users")
def users_cli() -> None:
    """Members' accounts: a forgotten password, a member who left."""


@users_cli.command("reset-password")
@with_appcontext
@click.argument("email")
@click.option("--org", "organization", required=True, help="Organization id or slug.")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@reports_domain_errors
def reset_password_command(email: str, organization: str, password_stdin: bool) -> None:
    """Set a member's new password and sign them out of the dashboard everywhere."""
    actor = Actor.for_cli(find_organization(organization))
    member = find_member(actor, email)  # an unknown email is refused before the prompt
    ended = reset_password(actor, member.id, read_password(password_stdin, "New password"))
    sessions = f"{ended} dashboard session{'s' if ended != 1 else ''}"
    click.echo(f"Set a new password for {member.email} ({member.id}); ended {sessions}.")


@users_cli.command("remove")
@with_appcontext
@click.argument("email")
@click.option("--org", "organization", required=True, help="Organization id or slug.")
@reports_domain_errors
def remove_command(email: str, organization: str) -> None:
    """Remove a member who left: signed out everywhere, told nothing more; history stays."""
    actor = Actor.for_cli(find_organization(organization))
    member = remove_member(actor, find_member(actor, email).id)
    click.echo(f"Removed {member.email} ({member.id}); they can no longer sign in.")


COMMANDS = (create_org_command, add_member_command, users_cli)

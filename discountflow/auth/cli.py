"""``flask keys …``: generate, roll, revoke and list an organization's API keys (as its owner)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..actors import Actor
from ..cli import parse_duration, reports_domain_errors
from ..database import rfc3339
from ..organizations.services import find_organization
from . import services

keys_cli = AppGroup("keys", help="Generate, roll, revoke and list an organization's API keys.")
_org_option = click.option("--org", "organization", required=True, help="Organization id or slug.")
_read_only_option = click.option("--read-only", is_flag=True, help="The read-only key slot.")


def _owner(reference: str) -> Actor:
    return Actor.for_cli(find_organization(reference))


def _echo_key(what: str, key: str) -> None:
    """Say what happened (on stderr), then print the key alone on stdout, once."""
    click.echo(what, err=True)
    click.echo("Store this key now; it is shown only once:", err=True)
    click.echo(key)


@keys_cli.command("generate")
@_org_option
@_read_only_option
@click.option("--expires-in-days", type=int, default=None, help="Expire the key after N days.")
@reports_domain_errors
def keys_generate(organization: str, read_only: bool, expires_in_days: int | None) -> None:
    """Generate a key; the slot's previous key stops working at once."""
    owner = _owner(organization)
    api_key, key = services.generate_key(
        owner, read_only=read_only, expires_in_days=expires_in_days
    )
    _echo_key(f"Generated {api_key.id}.", key)


@keys_cli.command("roll")
@_org_option
@_read_only_option
@click.option("--grace", required=True, help="How long the old key keeps working (e.g. 24h).")
@reports_domain_errors
def keys_roll(organization: str, read_only: bool, grace: str) -> None:
    """Issue a new key; the current one keeps working for the grace period."""
    owner = _owner(organization)
    api_key, key = services.roll_key(owner, read_only=read_only, grace=parse_duration(grace))
    _echo_key(f"Rolled to {api_key.id}; the previous key works for {grace} more.", key)


@keys_cli.command("revoke")
@_org_option
@_read_only_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_domain_errors
def keys_revoke(organization: str, read_only: bool, yes: bool) -> None:
    """Revoke a slot's keys at once. There is no undo."""
    owner = _owner(organization)
    if not yes:
        click.confirm(
            "Requests with this key will fail immediately. There is no undo. Revoke?", abort=True
        )
    for key_id in services.revoke_key(owner, read_only=read_only):
        click.echo(f"Revoked {key_id}.")


@keys_cli.command("list")
@_org_option
@reports_domain_errors
def keys_list(organization: str) -> None:
    """Show each key slot's status and last use."""
    for slot in services.key_slots(_owner(organization)):
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

"""``/v2/organization`` and ``/v2/members`` as JSON."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..openapi import operation
from ..schemas import ListQuery
from . import services
from .schemas import MemberList, MemberOut, MemberUpdate, OrganizationOut, OrganizationUpdate

bp = Blueprint("organizations_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

ORGANIZATION = "Organization"


@bp.get("/organization")
@operation(OrganizationOut, tag=ORGANIZATION)
def get_organization():
    """Retrieve the organization and its settings."""
    return OrganizationOut.of(services.get_organization(current_actor()))


@bp.patch("/organization")
@operation(OrganizationOut, tag=ORGANIZATION)
def update_organization(json: OrganizationUpdate):
    """Change the organization's name, auto-approve threshold, default validity, reminder
    interval or whether custom line items are allowed."""
    return OrganizationOut.of(services.update_organization(current_actor(), json))


@bp.get("/members")
@operation(MemberList, tag=ORGANIZATION)
def list_members(query: ListQuery):
    """List the organization's members, newest first (not those who were removed)."""
    return MemberList.page(*services.list_members(current_actor(), query.page()))


@bp.get("/members/<member_id>")
@operation(MemberOut, tag=ORGANIZATION)
def get_member(member_id: str):
    """Retrieve a member (one who was removed too: `removed` says when)."""
    return MemberOut.of(services.get_member(current_actor(), member_id))


@bp.patch("/members/<member_id>")
@operation(MemberOut, tag=ORGANIZATION)
def update_member(member_id: str, json: MemberUpdate):
    """Change a member's role or approval level (owner and admins; the owner's role stays)."""
    return MemberOut.of(services.update_member(current_actor(), member_id, json))


@bp.delete("/members/<member_id>")
@operation(MemberOut, tag=ORGANIZATION)
def remove_member(member_id: str):
    """Remove a member who left (owner and admins; never the owner, nobody themselves): they
    sign in to nothing and are told nothing from now on; history still names them."""
    return MemberOut.of(services.remove_member(current_actor(), member_id))

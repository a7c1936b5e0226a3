"""``/v2/me``, ``/v2/members`` and ``/v2/organization`` as JSON."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, current_app
from pydantic import BaseModel

from ..approvals import services as approvals
from ..approvals.schemas import MemberList, MemberOut, SettingsOut, SettingsUpdate
from ..database import rfc3339
from ..openapi import operation
from ..schemas import ListQuery, to_percent
from . import services
from .services import Actor, current_api_key

bp = Blueprint("auth_api", __name__)

ORGANIZATION = "Organization"


class _OrganizationRef(BaseModel):
    object: Literal["organization"]
    id: str
    name: str
    slug: str


class _RateLimit(BaseModel):
    limit: int
    window_seconds: int


class ApiKeySessionOut(BaseModel):
    object: Literal["api_key_session"]
    organization: _OrganizationRef
    key_id: str
    environment: Literal["staging", "production"]
    read_only: bool
    rate_limit: _RateLimit


def _actor() -> Actor:
    return Actor.for_api_key(current_api_key())


def member_json(member: Any) -> dict[str, Any]:
    return {
        "object": "member",
        "id": member.id,
        "email": member.email,
        "name": member.name,
        "role": member.role,
        "approval_level": member.approval_level_id,
        "created": rfc3339(member.created_at),
    }


def organization_json(organization: Any) -> dict[str, Any]:
    return {
        "object": "organization",
        "id": organization.id,
        "name": organization.name,
        "slug": organization.slug,
        "auto_approve_threshold_percent": to_percent(organization.auto_approve_threshold_bps),
        "default_validity_days": organization.default_validity_days,
        "created": rfc3339(organization.created_at),
        "updated": rfc3339(organization.updated_at),
    }


@bp.get("/me")
@operation(ApiKeySessionOut, tag=ORGANIZATION)
def me():
    """Describe the authenticated key, its organization and its rate limit."""
    principal = current_api_key()
    rate_limit = current_app.extensions["discountflow.api_rate_limit"]
    return {
        "object": "api_key_session",
        "organization": {
            "object": "organization",
            "id": principal.organization_id,
            "name": principal.organization_name,
            "slug": principal.organization_slug,
        },
        "key_id": principal.key_id,
        "environment": principal.environment,
        "read_only": principal.read_only,
        "rate_limit": {
            "limit": rate_limit.amount,
            "window_seconds": rate_limit.get_expiry(),
        },
    }


@bp.get("/members")
@operation(MemberList, tag=ORGANIZATION)
def list_members(query: ListQuery):
    """List the organization's members, newest first."""
    members, has_more = services.list_members(_actor(), query.page())
    return {"object": "list", "data": [member_json(m) for m in members], "has_more": has_more}


@bp.get("/members/<member_id>")
@operation(MemberOut, tag=ORGANIZATION)
def get_member(member_id: str):
    """Retrieve a member."""
    return member_json(services.get_member(_actor(), member_id))


@bp.get("/organization")
@operation(SettingsOut, tag=ORGANIZATION)
def get_organization():
    """Retrieve the organization and its settings."""
    return organization_json(services.get_organization(_actor()))


@bp.patch("/organization")
@operation(SettingsOut, tag=ORGANIZATION)
def update_organization(json: SettingsUpdate):
    """Change the organization's name, auto-approve threshold or default validity."""
    return organization_json(approvals.update_settings(_actor(), json))

"""``/v2/me``: what the presented API key is and may do."""

from __future__ import annotations

from flask import Blueprint, current_app

from .services import current_api_key

bp = Blueprint("auth_api", __name__)


@bp.get("/me")
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

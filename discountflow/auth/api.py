"""``/v2/me``: the key a request authenticated with, its organization and its rate limit."""

from __future__ import annotations

from flask import Blueprint

from ..api import api_rate_limit, current_api_key, per_key_quota
from ..openapi import operation
from .schemas import ApiKeySessionOut

bp = Blueprint("auth_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)


@bp.get("/me")
@operation(ApiKeySessionOut, tag="Organization")
def me():
    """Describe the authenticated key, its organization and its rate limit."""
    return ApiKeySessionOut.of(current_api_key(), api_rate_limit())

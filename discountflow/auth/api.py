"""``/v2/me``: the key a request authenticated with, its organization and its rate limit."""

from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, Response
from limits import RateLimitItem

from ..api import api_rate_limit, current_api_key
from ..openapi import operation
from .schemas import ApiKeySessionOut
from .services import ApiKeyPrincipal

bp = Blueprint("auth_api", __name__, url_prefix="/v2")


@bp.get("/me")
@operation(ApiKeySessionOut, tag="Organization")
def me():
    """Describe the authenticated key, its organization and its rate limit."""
    return Response(_session_json(current_api_key(), api_rate_limit()), mimetype="application/json")


@lru_cache(maxsize=4096)
def _session_json(principal: ApiKeyPrincipal, rate_limit: RateLimitItem) -> str:
    """The answer for one key as it is now (principals compare by value: a renamed
    organization is another entry), built and validated once rather than on every request."""
    return ApiKeySessionOut.of(principal, rate_limit).model_dump_json()

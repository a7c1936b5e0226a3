"""The ``/v2`` JSON API: authentication, the per-key rate limit and the read-only rule.

Each feature's ``api.py`` blueprint is registered under the ``v2`` blueprint, and every request
whose path is below ``/v2`` is authenticated — unknown routes included — so no endpoint can miss
authentication, the rate limit or the read-only rule.

The per-key limit is counted in Flask-Limiter's storage with its configured strategy (moving
window: no burst at window edges), shared by every worker when the storage is Redis. It is
checked here, in one hook, rather than through Flask-Limiter's per-route machinery: that
machinery's before/after-request work measured more than the whole budget of an API request
(see ``bench/auth_overhead.py``), so its hook skips /v2 (``extensions.Limiter``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from limits import RateLimitItem
from limits import parse as parse_limit
from werkzeug.exceptions import BadRequest

from . import idempotency, openapi
from .approvals.api import bp as approvals_bp
from .auth.api import bp as auth_bp
from .auth.services import authenticate
from .errors import InvalidParameter, RateLimited, ReadOnlyKey, is_api_request
from .extensions import limiter
from .ratelimit import STORAGE_ERRORS, storage_unavailable

bp = Blueprint("v2", __name__, url_prefix="/v2")
bp.register_blueprint(auth_bp)
bp.register_blueprint(approvals_bp)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
RATE_LIMIT_SCOPE = "api-key"


@dataclass(frozen=True)
class RateLimitWindow:
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the oldest request in the window leaves it


def _api_rate_limit() -> RateLimitItem:
    return current_app.extensions["discountflow.api_rate_limit"]


def _limit_api_key(key_id: str) -> None:
    """Count one request against the key's budget; refuse with 429 when it is spent."""
    if not limiter.enabled:  # RATELIMIT_ENABLED = False turns every limit off
        return
    item = _api_rate_limit()
    strategy = limiter.limiter
    try:
        allowed = strategy.hit(item, RATE_LIMIT_SCOPE, key_id)
        reset_at, remaining = strategy.get_window_stats(item, RATE_LIMIT_SCOPE, key_id)
    except STORAGE_ERRORS as error:  # fail open (see ratelimit.py), with a log line
        storage_unavailable(error)
        return
    g.rate_limit = RateLimitWindow(item.amount, remaining, math.ceil(reset_at))
    if not allowed:
        raise RateLimited(retry_after=math.ceil(reset_at - time.time()))


def _check_json_body() -> None:
    """Refuse a body that is not one JSON object before any view or validation sees it."""
    if request.method not in BODY_METHODS or not request.get_data(cache=True):
        return
    if not request.is_json:
        raise InvalidParameter("Send the body as JSON, with Content-Type: application/json.")
    try:
        body = request.get_json()
    except BadRequest as error:
        raise InvalidParameter("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")


def _authenticate() -> Response | None:
    if not is_api_request() or openapi.is_public(request.path):
        return None
    g.api_key = principal = authenticate(
        request.headers.get("Authorization"), client_ip=request.remote_addr or ""
    )
    _limit_api_key(principal.key_id)
    if principal.read_only and request.method not in SAFE_METHODS:
        raise ReadOnlyKey()
    _check_json_body()
    if request.method == "POST" and request.url_rule is not None:
        return idempotency.begin(principal.organization_id, principal.key_id)
    return None


def _add_rate_limit_headers(response: Response) -> Response:
    window = g.get("rate_limit")
    if window is not None:
        response.headers["X-RateLimit-Limit"] = str(window.limit)
        response.headers["X-RateLimit-Remaining"] = str(window.remaining)
        response.headers["X-RateLimit-Reset"] = str(window.reset_at)
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the dashboard; none for the stateless, key-authenticated API."""

    def open_session(self, app, request):
        if is_api_request():
            return None  # Flask then uses a null session and never sets a cookie
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the /v2 blueprints, the API hooks and the per-key rate limit."""
    app.extensions["discountflow.api_rate_limit"] = parse_limit(app.config["API_RATE_LIMIT"])
    app.session_interface = SessionInterface()
    app.register_blueprint(bp)
    openapi.init_app(app)
    app.before_request(_authenticate)
    app.after_request(_add_rate_limit_headers)
    app.after_request(idempotency.finish)

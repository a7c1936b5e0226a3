"""The ``/v2`` JSON API: authentication, the per-key rate limit and the read-only rule.

Each feature's ``api.py`` blueprint is registered under the ``v2`` blueprint, and every request
whose path is below ``/v2`` is authenticated — unknown routes included — so no endpoint can miss
authentication, the rate limit or the read-only rule.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, g, request
from flask.sessions import SecureCookieSessionInterface

from .approvals.api import bp as approvals_bp
from .auth.api import bp as auth_bp
from .auth.services import authenticate
from .errors import ReadOnlyKey, is_api_request
from .extensions import limiter

bp = Blueprint("v2", __name__, url_prefix="/v2")
bp.register_blueprint(auth_bp)
bp.register_blueprint(approvals_bp)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _api_rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


# One budget per API key shared by every /v2 route (500/min staging, 1000/min production).
limiter.shared_limit(_api_rate_limit, scope="api-key")(bp)


def _authenticate() -> None:
    if is_api_request():
        g.api_key = authenticate(
            request.headers.get("Authorization"), client_ip=request.remote_addr or ""
        )


def _refuse_writes_from_read_only_keys() -> None:
    if is_api_request() and g.api_key.read_only and request.method not in SAFE_METHODS:
        raise ReadOnlyKey()


class SessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the dashboard; none for the stateless, key-authenticated API."""

    def open_session(self, app, request):
        if request.path.startswith("/v2/") or request.path == "/v2":
            return None  # Flask then uses a null session and never sets a cookie
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the /v2 blueprints and their request hooks."""
    app.session_interface = SessionInterface()
    app.register_blueprint(bp)
    # Authentication runs before Flask-Limiter's hook, which keys the limit by API key; the
    # read-only rule runs after it, so a refused write still carries the rate-limit headers.
    app.before_request_funcs.setdefault(None, []).insert(0, _authenticate)
    app.before_request(_refuse_writes_from_read_only_keys)

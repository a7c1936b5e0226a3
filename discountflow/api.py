"""The ``/v2`` request pipeline: authentication, the per-key quota, the early read-only refusal,
JSON bodies and idempotent POSTs — for every request whose path is below ``/v2``.

Each feature registers its own ``api.py`` blueprint (``url_prefix="/v2"``) and puts
:data:`per_key_quota` on it: one Flask-Limiter limit shared by every ``/v2`` blueprint
(GraphQL's included), so REST and GraphQL spend one budget per key — 500 requests a minute on
staging, 1,000 on production, in a moving window (no burst at a window's edge).

The authentication hook runs for every request below ``/v2`` — unknown routes included, so no
endpoint can miss it — and before Flask-Limiter's own hook, which then counts the request
against the key (a URL that does not exist counts nothing). The request's
:class:`~discountflow.actors.Actor` is the key's (``current_actor``); the services refuse a
read-only key's writes themselves, and this pipeline refuses a read-only key's POST, PATCH, PUT
and DELETE early, before any body is read.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from limits import RateLimitItem
from limits import parse as parse_limit
from werkzeug.exceptions import BadRequest

from . import idempotency, metrics, openapi
from .actors import Actor, Surface
from .auth.authentication import ApiKeyPrincipal, authenticate
from .errors import InvalidParameter, ReadOnlyKey
from .extensions import limiter
from .ratelimit import STORAGE_ERRORS, storage_unavailable

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRAPHQL_PATH = "/v2/graphql"
GRAPHQL_IDE = GRAPHQL_PATH + "/ide"
GRAPHQL_PUBLIC = frozenset({GRAPHQL_PATH + "/schema.graphql", GRAPHQL_IDE})
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})


def api_rate_limit() -> RateLimitItem:
    """The per-key limit of this deployment (500 a minute on staging, 1,000 on production)."""
    return _parsed_limit(current_app.config["API_RATE_LIMIT"])


_parsed_limit = lru_cache(maxsize=8)(parse_limit)


def current_api_key() -> ApiKeyPrincipal:
    """The API key that authenticated the current request."""
    return g.api_key


def current_actor() -> Actor:
    """The actor of the current API request: its key, with the owner's authority."""
    return g.actor


# The quota of every API key, one budget over every /v2 blueprint: ``per_key_quota(bp)``.
per_key_quota = limiter.shared_limit(
    lambda: current_app.config["API_RATE_LIMIT"],
    scope="api-key",
    key_func=lambda: g.api_key.key_id,
    on_breach=lambda _: metrics.count_rate_limited("api_key"),
)


def is_api_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def is_public(path: str) -> bool:
    """The documents and pages that describe the API are readable without a key."""
    return openapi.is_public(path) or path in GRAPHQL_PUBLIC or path.startswith(GRAPHQL_IDE + "/")


def _authenticate() -> None:
    """Who is asking: the key of the ``Authorization`` header (401 otherwise)."""
    path = request.path
    if not is_api_path(path) or is_public(path):
        return
    g.api_key = principal = authenticate(
        request.headers.get("Authorization"), request.remote_addr or ""
    )
    g.actor = Actor.for_api_key(
        principal.organization_id,
        principal.key_id,
        read_only=principal.read_only,
        surface=Surface.GRAPHQL if path == GRAPHQL_PATH else Surface.API,
    )


def _refuse_early() -> Response | None:
    """After the quota: a read-only key's writes, bodies that are not one JSON object, and a
    retried POST (answered with its first response)."""
    principal = g.get("api_key")
    if principal is None or request.path == GRAPHQL_PATH:
        # GraphQL decides by the operation (a query or a mutation), not the method, and reads
        # its own body: a read-only key may query over POST.
        return None
    if principal.read_only and request.method not in SAFE_METHODS:
        raise ReadOnlyKey()
    _check_json_body(request)
    if request.method == "POST" and request.url_rule is not None:
        return idempotency.begin(principal.organization_id, principal.key_id)
    return None


def _check_json_body(current: Request) -> None:
    """Refuse a body that is not one JSON object before any view or validation sees it."""
    if current.method not in BODY_METHODS or not current.get_data(cache=True):
        return
    if not current.is_json:
        raise InvalidParameter("Send the body as JSON, with Content-Type: application/json.")
    try:
        body = current.get_json()
    except BadRequest as error:
        raise InvalidParameter("The request body is not valid JSON.") from error
    except RecursionError as error:  # nested deeper than any request of ours can be
        raise InvalidParameter("The request body is nested too deeply.") from error
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")


def _rate_limit_headers(response: Response) -> Response:
    """The documented ``X-RateLimit-*`` headers of the quota Flask-Limiter counted, and on its
    429 a ``Retry-After``. (Flask-Limiter's own header injection would also send Retry-After on
    every answer and raise a 503's documented ``Retry-After: 5`` to the window's reset.)"""
    counted = limiter.current_limit
    if counted is None:
        return response
    try:
        reset_at, remaining = counted.window
    except STORAGE_ERRORS as error:  # the storage went away since it counted: fail open
        storage_unavailable(error)
        return response
    headers = response.headers
    headers["X-RateLimit-Limit"] = str(counted.limit.amount)
    headers["X-RateLimit-Remaining"] = str(remaining)
    headers["X-RateLimit-Reset"] = str(counted.reset_at)
    if counted.breached:
        headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the dashboard; none for the stateless, key-authenticated API."""

    def open_session(self, app, request):
        if is_api_path(request.path):
            return None  # Flask then uses a null session and never sets a cookie
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Install the /v2 pipeline and the OpenAPI document (Flask-Limiter is bound already)."""
    app.session_interface = SessionInterface()
    openapi.init_app(app)
    # Authentication before Flask-Limiter's hook, which counts the key's quota; the early
    # refusals after it, so that a refused request is a counted one.
    app.before_request_funcs.setdefault(None, []).insert(0, _authenticate)
    app.before_request(_refuse_early)
    app.after_request(_rate_limit_headers)
    app.after_request(idempotency.finish)

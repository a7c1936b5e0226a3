"""The ``/v2`` request pipeline: authentication, the per-key rate limit, the early read-only
refusal, JSON bodies and idempotent POSTs — for every request whose path is below ``/v2``.

Each feature registers its own ``api.py`` blueprint (``url_prefix="/v2"``). The hooks here run
for every request below ``/v2`` — unknown routes included — so no endpoint can miss
authentication or the rate limit. The request's :class:`~discountflow.actors.Actor` is the key's
(``current_actor``); the services refuse a read-only key's writes themselves, and this pipeline
refuses a read-only key's POST, PATCH, PUT and DELETE early, before any body is read.

The per-key limit is counted in Flask-Limiter's storage with its configured strategy (moving
window: no burst at window edges), shared by every worker when the storage is Redis. It is
checked here, in one hook, rather than through Flask-Limiter's per-route machinery: that
machinery's before/after-request work measured more than the whole budget of an API request
(see ``bench/auth_overhead.py``), so its hook skips /v2 (``extensions.Limiter``).
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, NamedTuple

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import BadRequest

from . import idempotency, openapi
from .actors import Actor, Surface
from .auth.services import ApiKeyPrincipal, authenticate
from .auth.verification import key_revision
from .database import organization_revisions
from .errors import InvalidParameter, RateLimited, ReadOnlyKey
from .extensions import limiter
from .ratelimit import STORAGE_ERRORS, hit_and_read, hit_moving_window, storage_unavailable

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRAPHQL_PATH = "/v2/graphql"
GRAPHQL_IDE = GRAPHQL_PATH + "/ide"
GRAPHQL_PUBLIC = frozenset({GRAPHQL_PATH + "/schema.graphql", GRAPHQL_IDE})
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
RATE_LIMIT_SCOPE = "api-key"


class RateLimitWindow(NamedTuple):  # (a tuple: built on every API request)
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the oldest request in the window leaves it


_RATE_LIMIT = "discountflow.api_rate_limit"


def api_rate_limit() -> RateLimitItem:
    """The per-key limit of this deployment (500 a minute on staging, 1,000 on production)."""
    return current_app.extensions[_RATE_LIMIT]


def current_api_key() -> ApiKeyPrincipal:
    """The API key that authenticated the current request."""
    return g.api_key


def current_actor() -> Actor:
    """The actor of the current API request: its key, with the owner's authority."""
    return g.actor


def _limit_api_key(key_id: str, state: Any, item: RateLimitItem) -> None:
    """Count one request against the key's budget; refuse with 429 when it is spent."""
    if not limiter.enabled:  # RATELIMIT_ENABLED = False turns every limit off
        return
    counted = state.pop("counted", None)
    if counted is not None and counted[0] == key_id:  # counted with the key revision's read
        if counted[1] is None:  # the storage did not answer: fail open (logged already)
            return
        allowed, reset_at, remaining = counted[1]
    else:
        try:
            allowed, reset_at, remaining = hit_moving_window(
                limiter.limiter, item, RATE_LIMIT_SCOPE, key_id
            )
        except STORAGE_ERRORS as error:  # fail open (see ratelimit.py), with a log line
            storage_unavailable(error)
            return
    state.rate_limit = RateLimitWindow(item.amount, remaining, math.ceil(reset_at))
    if not allowed:
        raise RateLimited(retry_after=math.ceil(reset_at - time.time()))


def _count_and_read_revision(
    state: Any, item: RateLimitItem, revision_key: str, app: Flask, principal: ApiKeyPrincipal
) -> int | None:
    """Count a remembered key's request and read the key revision and its organization's: one
    round trip to Redis where there were three (``authenticate`` calls this with what it
    remembers of the key; the count is applied once the key is known good, by
    ``_limit_api_key``; the organization's revision is noted for a page of approvals asked
    for later in the request). A key found changed or revoked then has one request counted
    against its own budget, which nothing else uses."""
    key_id = principal.key_id
    revisions = organization_revisions(app)
    organization_keys = revisions.redis_keys(principal.organization_id) or []
    try:
        window, values = hit_and_read(
            limiter.limiter, item, (RATE_LIMIT_SCOPE, key_id), [revision_key, *organization_keys]
        )
    except STORAGE_ERRORS as error:  # fail open, and read the key's row: trust nothing
        storage_unavailable(error)
        state.counted = (key_id, None)
        return None
    state.counted = (key_id, window)
    if organization_keys:
        revisions.noted(principal.organization_id, sum(values[1:]))
    return values[0]


def _revision_key_beside_the_limits(app: Flask) -> str | None:
    """The key revision's Redis key, when the per-key limit is counted in that same Redis."""
    strategy = limiter.limiter
    if isinstance(strategy, MovingWindowRateLimiter) and isinstance(strategy.storage, RedisStorage):
        return key_revision(app).redis_key()
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


def is_public(path: str) -> bool:
    """The documents and pages that describe the API are readable without a key."""
    return openapi.is_public(path) or path in GRAPHQL_PUBLIC or path.startswith(GRAPHQL_IDE + "/")


def _is_api_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")  # errors.is_api_request, given the path


# The hooks below run on every API request: each looks the request (and ``g``, the app) up once
# and reads them directly; every read through Flask's context proxies measured about 1 µs.


def _authenticate() -> Response | None:
    current = request._get_current_object()
    path = current.path
    if not _is_api_path(path) or is_public(path):
        return None
    environ = current.environ
    state = g._get_current_object()
    app = current_app._get_current_object()
    routed = current.url_rule is not None
    item = app.extensions[_RATE_LIMIT]
    reader = None
    if routed and limiter.enabled:  # (a URL that does not exist (404, 405) costs nothing)
        revision_key = _revision_key_beside_the_limits(app)
        if revision_key is not None:
            reader = partial(_count_and_read_revision, state, item, revision_key, app)
    # (what request.headers.get("Authorization") reads, without a KeyError when it is missing)
    state.api_key = principal = authenticate(
        environ.get("HTTP_AUTHORIZATION"),
        client_ip=current.remote_addr or "",
        read_revision=reader,
    )
    graphql = path == GRAPHQL_PATH
    state.actor = Actor.for_api_key(
        principal.organization_id,
        principal.key_id,
        read_only=principal.read_only,
        surface=Surface.GRAPHQL if graphql else Surface.API,
    )
    if routed:
        _limit_api_key(principal.key_id, state, item)
    if graphql:
        # The endpoint decides by the operation (a query or a mutation), not the method, and
        # reads its own body: a read-only key may query over POST.
        return None
    method = current.method
    if principal.read_only and method not in SAFE_METHODS:
        raise ReadOnlyKey()
    _check_json_body(current)
    if method == "POST" and routed:
        return idempotency.begin(principal.organization_id, principal.key_id)
    return None


def _add_rate_limit_headers(response: Response) -> Response:
    window = g.get("rate_limit")
    if window is not None:
        headers = response.headers
        headers["X-RateLimit-Limit"] = str(window.limit)
        headers["X-RateLimit-Remaining"] = str(window.remaining)
        headers["X-RateLimit-Reset"] = str(window.reset_at)
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the dashboard; none for the stateless, key-authenticated API."""

    def open_session(self, app, request):
        if _is_api_path(request.path):
            return None  # Flask then uses a null session and never sets a cookie
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Install the /v2 pipeline, the per-key rate limit and the OpenAPI document."""
    app.extensions[_RATE_LIMIT] = parse_limit(app.config["API_RATE_LIMIT"])
    app.session_interface = SessionInterface()
    openapi.init_app(app)
    app.before_request(_authenticate)
    app.after_request(_add_rate_limit_headers)
    app.after_request(idempotency.finish)

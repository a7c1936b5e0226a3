"""Domain errors raised by services, and the one place that answers every error.

Every error on an API path answers ``{"error": "<code>", "message": "<text>"}`` (plus ``param``
where one input is at fault), the shape the public Authentication page documents. Elsewhere
(the dashboard) the same errors are the page ``templates/errors/error.html``. Which of the two
a request gets is decided once, in :func:`answer`. This module imports no surface.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from . import metrics
from .extensions import discard_work

log = logging.getLogger(__name__)

INVALID_API_KEY_MESSAGE = "The provided API key is invalid or expired."


class DomainError(Exception):
    """A refusal that a service raises and every surface reports to its user."""

    status = 400
    code = "parameter_invalid"
    message = "The request is invalid."
    headers: dict[str, str] = {}  # sent with the answer (never changed in place)

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.param = param


class InvalidParameter(DomainError):
    status, code = 400, "parameter_invalid"


class InvalidApiKey(DomainError):
    status, code, message = 401, "invalid_api_key", INVALID_API_KEY_MESSAGE


class ReadOnlyKey(DomainError):
    status, code = 403, "read_only_key"
    message = "This API key is read-only: it can read, but not change anything."


class PermissionDenied(DomainError):
    status, code, message = 403, "permission_denied", "You are not allowed to do this."


class NotFound(DomainError):
    status, code, message = 404, "resource_missing", "No such object."


class InvalidStateTransition(DomainError):
    status, code = 409, "invalid_state_transition"


class Conflict(DomainError):
    status, code = 409, "conflict"


class RateLimited(DomainError):
    status, code = 429, "rate_limit_exceeded"
    message = "Too many requests. Retry after the time in Retry-After."
    limit = "api_key"  # which limit refused (a label of the metrics)

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyFailedAuthentications(RateLimited):
    message = "Too many failed authentication attempts from this address. Retry later."
    limit = "authentication"


# Codes and messages for HTTP errors raised by routing, Werkzeug or Flask-Limiter.
_HTTP_ERRORS = {
    400: ("parameter_invalid", "The request could not be understood."),
    401: ("invalid_api_key", INVALID_API_KEY_MESSAGE),
    403: ("permission_denied", "You are not allowed to do this."),
    404: ("resource_missing", "Unrecognized request URL."),
    405: ("method_not_allowed", "This method is not allowed on this URL."),
    413: ("request_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send a JSON body with Content-Type: application/json."),
    429: ("rate_limit_exceeded", "Too many requests. Retry after the time in Retry-After."),
    500: ("api_error", "An unexpected error occurred on our side."),
    503: ("service_unavailable", "The service is temporarily unavailable. Retry shortly."),
}


def is_api_request() -> bool:
    """Tell whether the current request is addressed to the JSON API."""
    return request.path == "/v2" or request.path.startswith("/v2/")


_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Unavailable",
}
# Headers an error answer keeps from the response it replaces.
_KEPT_HEADERS = (
    "Allow",
    "Retry-After",
    "WWW-Authenticate",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


def answer(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    base: Response | None = None,
    page_message: str | None = None,
) -> Response:
    """Answer an error: the documented JSON on the API, a page of the dashboard elsewhere.

    Headers of ``base`` (``Allow``, ``Retry-After`` …) are kept; a 401 says ``Bearer``.
    """
    if is_api_request() or request_ctx.url_adapter is None:
        # The API; or a request whose Host was refused (TRUSTED_HOSTS): no page can be built.
        body = {"error": code, "message": message}
        if param is not None:
            body["param"] = param
        response = jsonify(body)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
    else:
        page = render_template(
            "errors/error.html",
            status=status,
            title=_TITLES.get(status, "Error"),
            message=page_message or message,
        )
        response = make_response(page)
    response.status_code = status
    if base is not None:
        for name in _KEPT_HEADERS:
            if name in base.headers and name not in response.headers:
                response.headers[name] = base.headers[name]
    return response


def _discard_work() -> None:
    """Undo what the request left half-done before its error is answered. A database gone
    meanwhile does not change that answer: the failure is logged and counted, and the page
    that gives it does not ask the database again (``g.database_unavailable``)."""
    failed = discard_work()
    if failed is not None:
        g.database_unavailable = True
        metrics.count_backend_error("database")
        log.error(
            "the database failed as the work of %s %s was undone: %s",
            request.method,
            request.path,
            failed,
        )


def _handle_domain_error(error: DomainError) -> Response:
    _discard_work()  # a refusal leaves nothing half-done behind
    response = answer(error.status, error.code, error.message, param=error.param)
    response.headers.update(error.headers)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
        metrics.count_rate_limited(error.limit)
    elif isinstance(error, InvalidApiKey):
        metrics.count_auth_failure("api_key")
    return response


# What people are told, instead of Werkzeug's description, for some HTTP errors.
_PAGE_MESSAGES = {
    404: "There is no such page.",
    429: "Too many attempts. Wait a moment, then try again.",
}
_CSRF_MESSAGE = (
    "The form was not accepted: its security token is missing or does not match. "
    "Go back, reload the page and try again."
)


def _handle_http_exception(error: HTTPException) -> Response | HTTPException:
    if error.code is None or error.code < 400 or request.path.startswith("/static/"):
        return error
    code, message = _HTTP_ERRORS.get(error.code, ("api_error", error.description or ""))
    if error.code == 404:
        message = f"Unrecognized request URL ({request.method} {request.path})."
    elif error.code == 405:
        message = f"{request.method} is not allowed on {request.path}."
    page_message = (
        _CSRF_MESSAGE
        if isinstance(error, CSRFError)
        else _PAGE_MESSAGES.get(error.code, error.description)
    )
    return answer(error.code, code, message, base=error.get_response(), page_message=page_message)


def _handle_internal_error(error: InternalServerError) -> Response:
    # The session may hold half a unit of work: throw it away before anything else runs.
    _discard_work()
    original = getattr(error, "original_exception", None)
    if original is not None:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
    code, message = _HTTP_ERRORS[500]
    return answer(
        500, code, message, page_message="The server could not finish this. Nothing was changed."
    )


def init_app(app: Flask) -> None:
    """Answer every error: the documented JSON shape on the API, a page elsewhere."""
    app.register_error_handler(DomainError, _handle_domain_error)
    app.register_error_handler(InternalServerError, _handle_internal_error)
    app.register_error_handler(HTTPException, _handle_http_exception)

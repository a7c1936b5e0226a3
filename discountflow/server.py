"""gunicorn's worker for DiscountFlow: its own refusals in the API's JSON error shape.

gunicorn refuses some requests before the app sees them — a request line longer than
``limit_request_line`` (414), headers beyond ``limit_request_field_size`` (431), a request
line or header it cannot read (400) — and answers them with an HTML page. This worker (the
threaded one the configuration already uses) answers them with the documented
``{"error": "<code>", "message": "<text>"}`` instead: the request was not read far enough to
know its path, so the dashboard gets JSON for them too. Nothing of the request is echoed back.
"""

from __future__ import annotations

import json
from ssl import SSLError

from gunicorn import util
from gunicorn.http.errors import (
    ConfigurationProblem,
    ExpectationFailed,
    ForbiddenProxyRequest,
    LimitRequestHeaders,
    LimitRequestLine,
    UnsupportedTransferCoding,
)
from gunicorn.workers.gthread import ThreadWorker

# (exception, status, reason, code, message), most specific first; other client errors: 400.
_REFUSALS = [
    (LimitRequestLine, 414, "URI Too Long", "request_too_large", "The request URL is too long."),
    (
        LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "request_too_large",
        "The request headers are too large.",
    ),
    (ForbiddenProxyRequest, 403, "Forbidden", "permission_denied", "The request is forbidden."),
    (SSLError, 403, "Forbidden", "permission_denied", "The request is forbidden."),
    (
        UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "parameter_invalid",
        "This transfer coding is not supported.",
    ),
    (
        ExpectationFailed,
        417,
        "Expectation Failed",
        "parameter_invalid",
        "This expectation cannot be met.",
    ),
    (
        ConfigurationProblem,
        500,
        "Internal Server Error",
        "api_error",
        "The server is misconfigured.",
    ),
]
_MALFORMED = (400, "Bad Request", "parameter_invalid", "The request could not be read as HTTP.")
_FAILED = (500, "Internal Server Error", "api_error", "An unexpected error occurred on our side.")


def refusal_for(error: BaseException, client_error: bool) -> tuple[int, str, str, str]:
    """The status, reason, code and message to answer a request gunicorn could not serve."""
    for exception, *answer in _REFUSALS:
        if isinstance(error, exception):
            return tuple(answer)
    return _MALFORMED if client_error else _FAILED


def json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP response with the documented JSON error, closing the connection."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker, answering its own refusals in JSON."""

    def handle_error(self, req, client, addr, exc) -> None:
        client_error = not isinstance(exc, Exception) or type(exc).__module__.startswith(
            ("gunicorn.http", "ssl")
        )
        status, reason, code, message = refusal_for(exc, client_error)
        if status >= 500 and not isinstance(exc, ConfigurationProblem):
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, json_error(status, reason, code, message))
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("Failed to send error message.")

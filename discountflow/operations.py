"""Running the service: health checks, request ids, the access log, proxies, and outages.

* ``/healthz`` answers while the process is alive; ``/readyz`` when the database and the
  rate-limit storage answer too. Neither needs a key or counts against a limit.
* Every response carries a ``Request-Id`` (the client's own, when it sent a sane one).
* One JSON line per request goes to stdout (``discountflow.access``): request id, method, path
  (never the query string), status, duration, client address, and the API key's public lookup
  id — never a key.
* ``TRUSTED_PROXY_COUNT`` proxies in front (Heroku's router is one) are trusted for the client
  address and scheme (Werkzeug's ``ProxyFix``), so per-address limits see the client.
* A database that does not answer gets ``503`` in the documented error shape, and the service
  recovers by itself when it is back (the broken connection is dropped from the pool). That
  holds to the end of the request: its session is released while the answer can still become
  the 503 (``_release_database``), not in a teardown whose error would escape as a 500.
* ``/metrics`` serves Prometheus (``metrics.py``) to a scraper holding ``METRICS_TOKEN``, or to
  loopback with ``METRICS_ALLOW_LOOPBACK``; otherwise it does not exist (404).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import sys
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, g, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .database import committed_work, utcnow
from .errors import answer
from .extensions import db, discard_work, limiter, release_session
from .ratelimit import STORAGE_ERRORS
from .webhooks.worker import outbox_backlog

bp = Blueprint("operations", __name__)
access_log = logging.getLogger("discountflow.access")
log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
RETRY_AFTER_SECONDS = 5


@bp.get("/healthz")
def healthz():
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database and the rate-limit storage answer."""
    checks = {"database": "ok", "rate_limit_storage": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as error:
        checks["database"] = "unreachable"
        log.warning("readiness: database unreachable: %s", error.__class__.__name__)
    if discard_work() is not None:
        checks["database"] = "unreachable"
    try:
        if limiter.enabled and not limiter.storage.check():
            checks["rate_limit_storage"] = "unreachable"
    except STORAGE_ERRORS:
        checks["rate_limit_storage"] = "unreachable"
    ready = all(state == "ok" for state in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", **checks)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus's scrape: with ``METRICS_TOKEN`` as a Bearer token, or from loopback when
    ``METRICS_ALLOW_LOOPBACK`` is set; not there at all otherwise. Never an API key."""
    config = current_app.config
    token = config["METRICS_TOKEN"]
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), str(token).encode()
        ):
            # JSON for a scraper (this is not a page of the dashboard).
            response = jsonify(
                error="invalid_metrics_token", message="Send the metrics token as a Bearer token."
            )
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    elif not (config["METRICS_ALLOW_LOOPBACK"] and _from_loopback()):
        abort(404)  # as any URL that does not exist
    body = metrics.exposition(_figures_now)
    return current_app.response_class(body, mimetype=None, content_type=metrics.CONTENT_TYPE)


def _from_loopback() -> bool:
    """The scrape comes from this machine itself, not relayed by a proxy on it."""
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False  # a proxy on this box relays someone else's request
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _figures_now():
    """What a scrape reads from the database: the webhook outbox's backlog."""
    try:
        backlog = outbox_backlog(utcnow())
    except (OperationalError, InterfaceError) as error:
        discard_work()
        metrics.count_backend_error("database")
        log.warning("metrics: the outbox backlog could not be read: %s", error.__class__.__name__)
        return []
    discard_work()  # the read ends here
    pending = metrics.GaugeMetricFamily(
        "discountflow_webhook_outbox_pending",
        "Webhook deliveries not yet delivered or given up, by whether their attempt is due.",
        labels=["state"],
    )
    pending.add_metric(["due"], backlog.due)
    pending.add_metric(["scheduled"], backlog.scheduled)
    oldest = metrics.GaugeMetricFamily(
        "discountflow_webhook_outbox_oldest_due_seconds",
        "How long the oldest due delivery has waited for its attempt (0 when none is due).",
    )
    waited = (utcnow() - backlog.oldest_due).total_seconds() if backlog.oldest_due else 0
    oldest.add_metric([], max(0.0, waited))
    return [pending, oldest]


def _measure(response):
    """Count the request and its duration, by route template (``metrics.observe_request``)."""
    started = g.get("started")
    rule = request.url_rule
    metrics.observe_request(
        rule.rule if rule is not None else None,
        request.method,
        response.status_code,
        time.perf_counter() - started if started else 0.0,
    )
    return response


def _start() -> None:
    g.started = time.perf_counter()
    offered = request.headers.get("Request-Id") or request.headers.get("X-Request-Id")
    g.request_id = offered if offered and REQUEST_ID.fullmatch(offered) else _new_request_id()


def _new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def _finish(response):
    """The ``Request-Id`` header, and the request's access line (never a key or a query)."""
    request_id = g.get("request_id") or _new_request_id()
    response.headers["Request-Id"] = request_id
    if current_app.config["ACCESS_LOG"]:
        api_key, started = g.get("api_key"), g.get("started")
        fields = {
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "remote_addr": request.remote_addr,
            "api_key": api_key.key_id if api_key is not None else None,
        }
        access_log.info("%(method)s %(path)s %(status)s", fields, extra={"fields": fields})
    return response


def _relative_redirect(response):
    """Redirects name a path on this site, never a host: the request's Host is the client's
    to say (``Host: evil.example`` must not send anyone to evil.example)."""
    for name, _ in response.headers:  # (cheaper than get() for the usual answer, without one)
        if name.lower() == "location":
            break
    else:
        return response
    location = response.headers.get("Location")
    if location and "//" in location:
        parts = urlsplit(location)
        if parts.netloc:
            path = parts.path or "/"
            response.headers["Location"] = path + (f"?{parts.query}" if parts.query else "")
    return response


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers an answer replaced by the 503 keeps: the site's and the limits', not its body's.
SITE_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Cache-Control",  # (only ever no-store: pages and secrets shown once)
    "Pragma",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Vary",
)


def _release_database(response):
    """End the request's session while a failure can still be its answer: ``503``, logged and
    counted like any other request the database failed (``database.release_session``).

    Two answers stand: a server error's, and a write's whose work was committed (what failed is
    the rollback of what it read afterwards): a 503 would tell its client to send it again.
    """
    error = release_session()
    if error is None:
        return response
    status = response.status_code
    if status >= 500 or (request.method not in SAFE_METHODS and status < 400 and committed_work()):
        metrics.count_backend_error("database")
        log.error(
            "the database failed as the session of %s %s was closed (its %s stands): %s",
            request.method,
            request.path,
            status,
            error,
        )
        return response
    unavailable = database_unavailable(error)
    for name in SITE_HEADERS:
        if name in response.headers and name not in unavailable.headers:
            unavailable.headers[name] = response.headers[name]
    return unavailable


def database_unavailable(error: Exception):
    """The database did not answer (or refused the connection): 503, try again shortly."""
    discard_work()  # the connection may be gone already: that must not fail this answer
    metrics.count_backend_error("database")
    g.database_unavailable = True  # the page that says so must not need the database either
    log.error("database unavailable on %s %s: %s", request.method, request.path, error)
    # Another write held the lock too long: SQLite's busy timeout, PostgreSQL's lock_timeout.
    if "database is locked" in str(error) or _sqlstate(error) == LOCK_NOT_AVAILABLE:
        message = "The database is busy with another change just now. Try again shortly."
    else:
        message = "The database is not reachable just now. Try again shortly."
    return _unavailable(message)


LOCK_NOT_AVAILABLE = "55P03"


def _sqlstate(error: Exception) -> str | None:
    return getattr(getattr(error, "orig", None), "sqlstate", None)


def _storage_unavailable(error: Exception):
    """The rate-limit storage did not answer where its limits are required (sign-in)."""
    log.error("rate-limit storage unavailable on %s %s: %r", request.method, request.path, error)
    return _unavailable(
        "Sign-in is paused: its attempt limits cannot be checked. Try again shortly."
    )


def _unusable_value(error: DataError):
    """A value the database cannot take (such as text with NUL in a URL): 400, never a 500."""
    db.session.rollback()
    log.info("refused a value the database cannot use on %s %s", request.method, request.path)
    message = "The request contains a value that cannot be used here."
    return answer(400, "parameter_invalid", message)


def _unavailable(message: str):
    response = answer(503, "service_unavailable", message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class JsonLines(logging.Formatter):
    """A record's ``fields`` (``extra={"fields": …}``) as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record.fields, separators=(",", ":"))


def configure_logging() -> None:
    """Set the service's logging up once per process, before anything logs.

    The access log is one JSON line per request on stdout and goes nowhere else (as does the
    webhook worker's, one line per delivery attempt); the service's own messages
    (``discountflow`` and below) go to stderr. Having a handler of its own, the
    ``discountflow`` logger — Flask's ``app.logger`` — is not given Flask's default one on the
    first error, which would print every access line a second time.
    """
    for json_lines in (access_log, logging.getLogger("discountflow.deliveries")):
        if not json_lines.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(JsonLines())
            json_lines.addHandler(handler)
            json_lines.setLevel(logging.INFO)
            json_lines.propagate = False
    service_log = logging.getLogger("discountflow")
    if not service_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        service_log.addHandler(handler)
        service_log.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    """Register the health checks, request ids, the access log, proxies and outage answers."""
    proxies = int(app.config["TRUSTED_PROXY_COUNT"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    configure_logging()
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_relative_redirect)
    # The access line, the Request-Id and the metrics describe the response as sent: these run
    # after every other hook (Flask runs them last to first), whichever registered later — an
    # Idempotency-Key whose work could not commit turns a 201 into a 503 (idempotency.finish).
    after = app.after_request_funcs.setdefault(None, [])
    after.insert(0, _finish)
    # The session is released after every other hook (an Idempotency-Key's answer commits in
    # one), just before the access line: a failure there is the answer the line records.
    after.insert(1, _release_database)
    if app.config["METRICS_TOKEN"] or app.config["METRICS_ALLOW_LOOPBACK"]:
        after.insert(0, _measure)
    for error in (OperationalError, InterfaceError):  # refused, dropped, or locked too long
        app.register_error_handler(error, database_unavailable)
    app.register_error_handler(DataError, _unusable_value)
    for error in STORAGE_ERRORS:  # where limits are required (sign-in): 503
        app.register_error_handler(error, _storage_unavailable)

"""Prometheus metrics: what the service is doing right now, for ``GET /metrics``.

Every gunicorn worker counts in its own files under ``PROMETHEUS_MULTIPROC_DIR``
(``prometheus_client``'s multiprocess mode; ``gunicorn.conf.py`` sets the folder up and cleans
it at start), and a scrape adds them up, so every worker is counted whichever one answers. The
webhook worker counts there too when it has the same folder (the ``Procfile`` gives both
``instance/metrics``). A process without that folder (``flask run``, the tests) counts in memory.

What is counted never holds key text, lookup ids, emails or paths with ids in them: requests are
labelled by their route's template (``/v2/approvals/<approval_id>``), so the number of series
stays bounded whatever clients send.

The counters are always kept (an increment costs about a microsecond); ``/metrics`` serves them
only when ``METRICS_TOKEN`` or ``METRICS_ALLOW_LOOPBACK`` is set, and the per-request timing is
installed only then (``operations.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

FOLDER = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
MULTIPROCESS = bool(FOLDER)
if MULTIPROCESS:
    # The counters below write their files at once, and the webhook worker may get here before
    # gunicorn has made the folder they share (the Procfile starts both together).
    os.makedirs(FOLDER, mode=0o700, exist_ok=True)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # a URL no route has: its path is the client's to choose

# This process's own metrics; a scrape in multiprocess mode reads every process's files instead.
registry = CollectorRegistry(auto_describe=True)

requests_total = Counter(
    "discountflow_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
    registry=registry,
)
request_seconds = Histogram(
    "discountflow_http_request_duration_seconds",
    "Time from the request's arrival in the app to its response, by route template.",
    ("route",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=registry,
)
auth_failures = Counter(
    "discountflow_authentication_failures_total",
    "Refused API keys and sign-ins (counts only: never key text, lookup ids or emails).",
    ("kind",),
    registry=registry,
)
rate_limited = Counter(
    "discountflow_rate_limit_refusals_total",
    "Requests refused with 429, by the limit that refused them.",
    ("limit",),
    registry=registry,
)
bcrypt_checks = Counter(
    "discountflow_bcrypt_verifications_total",
    "bcrypt verifications run (API keys not yet verified in this process, and sign-ins).",
    ("kind",),
    registry=registry,
)
webhook_deliveries = Counter(
    "discountflow_webhook_delivery_attempts_total",
    "Webhook delivery attempts by outcome: succeeded, retrying, failed (for good), claim_lost.",
    ("outcome",),
    registry=registry,
)
notifications = Counter(
    "discountflow_notifications_total",
    "Notifications by channel (email, chat) and outcome: sent, retrying, failed (for good), "
    "skipped (no longer true when their turn came), digest (held for a daily digest), "
    "released (not attempted in its batch's time), claim_lost.",
    ("channel", "outcome"),
    registry=registry,
)
backend_errors = Counter(
    "discountflow_backend_errors_total",
    "Database and Redis (rate-limit storage) errors met while answering.",
    ("backend",),
    registry=registry,
)

for kind in ("api_key", "sign_in"):
    auth_failures.labels(kind)
    bcrypt_checks.labels(kind)
for backend in ("database", "redis"):
    backend_errors.labels(backend)
for limit in ("api_key", "authentication", "sign_in"):
    rate_limited.labels(limit)
for channel in ("email", "chat"):
    for outcome in ("sent", "failed"):
        notifications.labels(channel, outcome)

_requests: dict[tuple[str, str, int], Callable[[float], None]] = {}


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration (the label children are looked up once)."""
    key = (route or UNMATCHED, method if method in METHODS else "OTHER", status)
    record = _requests.get(key)
    if record is None:
        record = _requests.setdefault(key, _recorder(*key))
    record(seconds)


def _recorder(route: str, method: str, status: int) -> Callable[[float], None]:
    count = requests_total.labels(route, method, str(status)).inc
    timing = request_seconds.labels(route).observe

    def record(seconds: float) -> None:
        count()
        timing(seconds)

    return record


def count_auth_failure(kind: str) -> None:
    auth_failures.labels(kind).inc()


def count_rate_limited(limit: str) -> None:
    rate_limited.labels(limit).inc()


def count_bcrypt(kind: str) -> None:
    bcrypt_checks.labels(kind).inc()


def count_delivery(outcome: str) -> None:
    webhook_deliveries.labels(outcome).inc()


def count_notification(channel: str, outcome: str) -> None:
    notifications.labels(channel, outcome).inc()


def count_backend_error(backend: str) -> None:
    backend_errors.labels(backend).inc()


class Collected:
    """Figures read when Prometheus scrapes (the outbox's backlog lives in the database, which
    every worker and host shares, not in any one process)."""

    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Any]:
        return self._read()

    def describe(self) -> list[Any]:
        return []  # read at every scrape: nothing to describe ahead


def exposition(read_now: Callable[[], Iterable[GaugeMetricFamily]]) -> bytes:
    """The text a scrape gets: every process's counters and the figures read now."""
    if MULTIPROCESS:
        scrape = CollectorRegistry()
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape = CollectorRegistry()
        scrape.register(_This())
    scrape.register(Collected(read_now))
    return generate_latest(scrape)


class _This:
    """This process's registry, as one collector of a scrape's registry."""

    def collect(self) -> Iterable[Any]:
        return registry.collect()

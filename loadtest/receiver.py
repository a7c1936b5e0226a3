"""The webhook receiver of a load run: an HTTP server on loopback, in threads, that verifies each
delivery's Standard Webhooks signature with the endpoint's secret (as an integrator would, the
README's receiver) and remembers every ``webhook-id`` it got, per endpoint path.

Each answer is held back ``delay`` seconds, so a delivery is in flight long enough for a fault
to kill the webhook worker in the middle of one (``in_flight`` says how many are).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got."""

    path: str  # /hooks/<organization slug>
    webhook_id: str
    event_type: str
    verified: bool
    received_at: float

    @property
    def slug(self) -> str:
        """The organization the endpoint belongs to: the last segment of its path."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class WebhookReceiver:
    """``with WebhookReceiver(secrets) as receiver: receiver.url`` — ``secrets`` maps a path's
    last segment (the organization's slug) to its endpoint's ``whsec_…`` secret."""

    def __init__(self, secrets: dict[str, str] | None = None, delay: float = 0.02) -> None:
        self.secrets: dict[str, str] = dict(secrets or {})
        self.delay = delay
        self.deliveries: list[Delivery] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with outer._lock:
                    outer.in_flight += 1
                try:
                    length = int(self.headers.get("content-length", 0))
                    raw = self.rfile.read(length)
                    if len(raw) < length:  # the sender went away mid-body (a killed worker):
                        return  # nothing was delivered, and its retry will be
                    body = raw.decode()
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    outer._record(self.path, headers, body)
                    if outer.delay:
                        time.sleep(outer.delay)
                    self.send_response(204)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker went away mid-delivery (a fault): it will retry
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL; an endpoint's URL is ``<url>/<slug>``."""
        return f"http://127.0.0.1:{self.server.server_port}/hooks"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, path: str, headers: dict[str, str], body: str) -> None:
        secret = self.secrets.get(path.rstrip("/").rsplit("/", 1)[-1])
        verified, event_type = False, ""
        if secret:
            try:
                event = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                event = None
            if isinstance(event, dict):
                verified, event_type = True, str(event.get("type", ""))
        delivery = Delivery(path, headers.get("webhook-id", ""), event_type, verified, time.time())
        with self._lock:
            self.deliveries.append(delivery)

    def snapshot(self) -> list[Delivery]:
        """A copy of everything received so far."""
        with self._lock:
            return list(self.deliveries)

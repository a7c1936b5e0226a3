"""The webhook worker (``flask --app app webhooks work``): sends pending deliveries, at least
once, on the retry schedule, never the same one twice at a time, several at once.

1. **Claim**, in a short transaction, as many due deliveries of enabled endpoints as the worker
   has free slots (``WEBHOOK_CONCURRENCY``), shared out by ``pacing.py``: at most 2 in flight
   per endpoint, half the slots per organization, the organizations in turn, none for an
   endpoint whose circuit is open (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on
   several hosts each take their own; ``BEGIN IMMEDIATE`` on SQLite). Each is marked with this
   claim and due again only when the lease (``WEBHOOK_LEASE_SECONDS``) ends: no other worker
   takes it meanwhile, and if this one dies mid-delivery the row is simply due again then.
2. **Send**, outside any transaction, on a pool of threads: signed (Standard Webhooks), to a
   checked address, the whole exchange within ``WEBHOOK_TIMEOUT_SECONDS`` (an answer whose body
   is still coming at the deadline failed), redirects not followed, 4 KiB of the answer kept.
3. **Record**, in a short transaction as attempts end, if the claim is still ours: a 2xx
   delivers it; anything else schedules the next attempt — at once, then 5 s, 5 min, 30 min,
   2 h, 5 h, 10 h, then every 12 h, each ±10 % — until 3 days after the event, when it fails.
   An endpoint whose every attempt failed for 3 days is disabled, and its owner is told. An
   endpoint paused by its circuit has its waiting deliveries moved to the end of the pause.

Only the loop's thread uses the database; the pool's threads only send.

One JSON line per attempt goes to stdout (``discountflow.deliveries``): delivery, endpoint,
event type, attempt, outcome, HTTP status, duration — never the secret or the payload.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpcore
from flask import current_app
from sqlalchemy import func, select, update

from .. import attempts, metrics
from ..actors import Actor
from ..audit.services import EventLog
from ..database import begin_write, rfc3339, utcnow
from ..extensions import db
from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage
from .pacing import Due, Pacer
from .safety import GuardedBackend, UnsafeDestination
from .services import destination_rules, signing_secrets
from .signing import UnreadableSecret, signature_headers

deliveries_log = logging.getLogger("discountflow.deliveries")
log = logging.getLogger(__name__)

RESPONSE_KEPT = 4096
USER_AGENT = "DiscountFlow-Webhooks/2"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    response: str
    error: str
    duration_ms: int

    @property
    def delivered(self) -> bool:
        """A 2xx, and the whole answer within the time allowed."""
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


class _ThreadDeadlines(GuardedBackend):
    """The guarded backend with one deadline per sending thread (several deliveries at once,
    each within its own time; a kept-alive connection reads the deadline of its user)."""

    def __init__(self, allow_private: bool) -> None:
        self._local = threading.local()
        super().__init__(allow_private)

    @property
    def deadline(self) -> float:
        return getattr(self._local, "deadline", float("inf"))

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._local.deadline = value


class Sender:
    """POSTs over httpcore, on kept-alive connections, to checked addresses only; safe to use
    from several threads at once (one connection each)."""

    def __init__(self, timeout: float, allow_private: bool, connections: int = 16) -> None:
        self.timeout = timeout
        self.backend = _ThreadDeadlines(allow_private)
        self.pool = httpcore.ConnectionPool(
            network_backend=self.backend,
            max_connections=connections,
            keepalive_expiry=30.0,
            retries=0,
        )

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        started = time.monotonic()
        self.backend.deadline = started + self.timeout
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        status, kept, error = None, b"", ""
        try:
            with self.pool.stream(
                "POST",
                url,
                headers=list(headers.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response:
                status = response.status
                for chunk in response.iter_stream():
                    kept += chunk
                    if len(kept) >= RESPONSE_KEPT:
                        break
        except httpcore.TimeoutException:
            if status is None:
                error = f"no answer within {self.timeout:g} s"
            else:  # headers came, then the body did not end in time: not an answer
                error = f"HTTP {status}, but the answer did not end within {self.timeout:g} s"
        except UnsafeDestination as refused:
            error = str(refused)
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as e:
            error = f"{type(e).__name__}: {e}"[:500]
        if status is not None and not 200 <= status < 300 and not error:
            error = f"HTTP {status}"
            if 300 <= status < 400:
                error += ": redirects are not followed"
        duration = round((time.monotonic() - started) * 1000)
        text = kept[:RESPONSE_KEPT].decode("utf-8", errors="replace")
        return Outcome(status, text, error, duration)

    def close(self) -> None:
        self.pool.close()


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds, with all it needs to send it."""

    delivery_id: str
    claim: str
    attempt: int
    organization_id: str
    endpoint_id: str
    url: str
    message_id: str
    event_type: str
    payload: str
    created_at: datetime
    first_attempt_at: datetime | None
    secrets: tuple[str, ...]
    unreadable: str = ""


# Due deliveries read per free slot when claiming: enough that one busy endpoint's backlog
# rarely hides the others' (the busy ones are left out of the query besides). The query still
# reads past the due deliveries of the endpoints it leaves out (SQLite: ~25 ms a claim behind
# 50,000 of them); a paused endpoint's are moved out of the due range, a busy one's are not.
WINDOW_PER_SLOT = 4


class Worker:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        sender: Sender | None = None,
        concurrency: int | None = None,
    ) -> None:
        config = current_app.config
        self.clock = clock
        self.rng = rng or random.Random()
        self.rules = destination_rules()
        self.lease = timedelta(seconds=float(config["WEBHOOK_LEASE_SECONDS"]))
        slots = self.slots = int(concurrency or config["WEBHOOK_CONCURRENCY"])
        self.pacer = Pacer(slots)
        self.sender = sender or Sender(
            float(config["WEBHOOK_TIMEOUT_SECONDS"]), self.rules.allow_private, slots
        )
        self.pool = ThreadPoolExecutor(slots, thread_name_prefix="webhook-send")

    # --- one pass ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim what may be sent now (every free slot), send it all at once, wait for every
        attempt to end and record them; return how many were attempted."""
        in_flight: dict[Future, Claimed] = {}
        self.start_due(in_flight)
        if not in_flight:
            return 0
        wait(in_flight)
        self.finish([(each, self._outcome(future)) for future, each in in_flight.items()])
        return len(in_flight)

    def start_due(self, in_flight: dict[Future, Claimed]) -> int:
        """Claim due deliveries for the free slots and start sending them; return how many."""
        started = 0
        while self.pacer.free() > 0:
            claimed = self.claim()
            if not claimed:
                break
            for each in claimed:
                in_flight[self.pool.submit(self.send, each)] = each
            started += len(claimed)
        return started

    def _outcome(self, future: Future) -> Outcome:
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 - one delivery's bug must not end the worker
            log.exception("webhook worker: sending a delivery failed")
            return Outcome(None, "", f"the worker could not send it: {type(error).__name__}", 0)

    def finish(self, done: list[tuple[Claimed, Outcome]]) -> None:
        """Free the attempts' slots, then record them."""
        now = self.clock()
        paused = {}
        for each, outcome in done:
            until = self.pacer.finished(each, outcome.delivered, now)
            if until is not None:
                paused[each.endpoint_id] = until
        self.record(done, paused)

    def claim(self) -> list[Claimed]:
        """Claim the due deliveries the pacer lets start now, at most one per free slot."""
        now = self.clock()
        free = self.pacer.free()
        if free <= 0:
            return []
        endpoints, organizations = self.pacer.held_back(now)
        begin_write()  # BEGIN IMMEDIATE on SQLite: one claimer at a time
        due = (
            select(WebhookDelivery.id, WebhookDelivery.endpoint_id, WebhookDelivery.organization_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
                WebhookEndpoint.enabled.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)  # the same on both
            .limit(free * WINDOW_PER_SLOT)
        )
        if endpoints:
            due = due.where(WebhookDelivery.endpoint_id.not_in(endpoints))
        if organizations:
            due = due.where(WebhookDelivery.organization_id.not_in(organizations))
        due = attempts.skipping_locked(due, of=WebhookDelivery)
        picked = self.pacer.pick([Due(*row) for row in db.session.execute(due)], now)
        if not picked:
            db.session.rollback()
            return []
        ids = [each.delivery_id for each in picked]
        claim = attempts.claim(WebhookDelivery, ids, now, self.lease)
        rows = db.session.execute(
            select(WebhookDelivery, WebhookEndpoint, WebhookMessage.payload)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
            .where(WebhookDelivery.id.in_(ids))
        ).all()
        order = {delivery_id: number for number, delivery_id in enumerate(ids)}
        rows.sort(key=lambda row: order[row[0].id])
        claimed = []
        for delivery, endpoint, payload in rows:
            unreadable, keys = "", ()
            try:
                keys = tuple(signing_secrets(endpoint, now))
            except UnreadableSecret as error:
                unreadable = str(error)
            claimed.append(
                Claimed(
                    delivery_id=delivery.id,
                    claim=claim,
                    attempt=delivery.attempts + 1,
                    organization_id=delivery.organization_id,
                    endpoint_id=endpoint.id,
                    url=endpoint.url,
                    message_id=delivery.message_id,
                    event_type=delivery.event_type,
                    payload=payload,
                    created_at=delivery.created_at,
                    first_attempt_at=delivery.first_attempt_at,
                    secrets=keys,
                    unreadable=unreadable,
                )
            )
        db.session.commit()
        for each in claimed:
            self.pacer.started(each)
        return claimed

    def send(self, each: Claimed) -> Outcome:
        if each.unreadable:
            return Outcome(None, "", each.unreadable, 0)
        if self.rules.https_only and not each.url.startswith("https://"):
            return Outcome(None, "", "refused: webhook URLs must use https in production", 0)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # Signed at the wall clock's time, which receivers check (within 5 minutes).
            **signature_headers(
                each.message_id, datetime.now(UTC), each.payload, list(each.secrets)
            ),
        }
        return self.sender.post(each.url, headers, each.payload.encode())

    def record(
        self, done: list[tuple[Claimed, Outcome]], paused: dict[str, datetime] | None = None
    ) -> None:
        """Record attempts' outcomes in one transaction (only where the claim is still ours),
        and move the waiting deliveries of the endpoints just ``paused`` to the pause's end."""
        now = self.clock()
        begin_write()
        self._endpoints: dict[str, WebhookEndpoint | None] = {}
        lines = []
        for each, outcome in done:
            values: dict = {
                "attempts": each.attempt,
                "claim": None,
                "first_attempt_at": each.first_attempt_at or now,
                "last_attempt_at": now,
                "last_status_code": outcome.status_code,
                "last_error": outcome.error[:500],
                "last_duration_ms": outcome.duration_ms,
                "last_response": outcome.response,
            }
            if outcome.delivered:
                values |= {"status": DeliveryStatus.SUCCEEDED.value, "delivered_at": now}
                values["next_attempt_at"] = None
                result = "succeeded"
            else:
                again = attempts.retry_at(each.attempt, each.created_at, now, self.rng)
                if again is None:
                    values |= {"status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
                    result = "failed"
                else:
                    values["next_attempt_at"] = again
                    result = "retrying"
            written = attempts.record_if_claimed(
                WebhookDelivery, each.delivery_id, each.claim, values
            )
            if written:
                self._endpoint_after(
                    each,
                    outcome,
                    now,
                    given_up=result == "failed",
                    since=each.first_attempt_at or now,
                )
            lines.append(
                {
                    "delivery": each.delivery_id,
                    "endpoint": each.endpoint_id,
                    "event_type": each.event_type,
                    "attempt": each.attempt,
                    "result": result if written else "claim_lost",
                    "status": outcome.status_code,
                    "error": outcome.error or None,
                    "duration_ms": outcome.duration_ms,
                }
            )
        for endpoint_id, until in (paused or {}).items():
            # Out of the due deliveries until then: no claim reads past them meanwhile, and
            # the API shows when they will be tried (the rows another worker holds are its).
            db.session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    WebhookDelivery.claim.is_(None),
                    WebhookDelivery.next_attempt_at < until,
                )
                .values(next_attempt_at=until)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        for line in lines:
            metrics.count_delivery(line["result"])
            deliveries_log.info("%(delivery)s %(result)s", line, extra={"fields": line})
        for endpoint_id, until in (paused or {}).items():
            log.warning(
                "webhook endpoint %s paused until %s: its last attempts failed",
                endpoint_id,
                rfc3339(until),
            )

    def _endpoint_after(
        self, each: Claimed, outcome: Outcome, now: datetime, *, given_up: bool, since: datetime
    ) -> None:
        """Track the endpoint's failures; disable it once every delivery failed for 3 days:
        its first failure since the last success is 3 days old, or a delivery just spent its
        whole window failing with no success since its first attempt."""
        endpoint = self._endpoints.get(each.endpoint_id)
        if endpoint is None:  # read fresh once per batch; this transaction's changes stay
            endpoint = db.session.get(WebhookEndpoint, each.endpoint_id, populate_existing=True)
            self._endpoints[each.endpoint_id] = endpoint
        if endpoint is None:
            return
        if outcome.delivered:
            endpoint.failing_since = None
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        failing = endpoint.failing_since
        spent = now - failing >= attempts.WINDOW
        if endpoint.enabled and (spent or (given_up and failing <= since)):
            started = rfc3339(failing)
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"Every delivery failed from {started} for 3 days, so the service disabled it. "
                "Enable it again once it answers."
            )
            endpoint.updated_at = now
            db.session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                )
                .values(
                    status=DeliveryStatus.FAILED.value,
                    next_attempt_at=None,
                    claim=None,
                    last_error="The endpoint was disabled.",
                )
                .execution_options(synchronize_session=False)
            )
            EventLog(Actor.system(each.organization_id), now).add(
                "webhook_endpoint.disabled", endpoint=endpoint.id, failing_since=started
            )
            log.warning("webhook endpoint %s disabled: failing since %s", endpoint.id, started)

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, poll: float, burst: bool = False) -> int:
        """Work until ``stop`` is set (or, with ``burst``, until nothing is due); return how
        many attempts were made. Stopping, it starts nothing more and records the attempts in
        flight once they end (each within the timeout)."""
        total = 0
        in_flight: dict[Future, Claimed] = {}
        try:
            while True:
                started = 0
                if not stop.is_set():
                    try:
                        started = self.start_due(in_flight)
                    except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                        log.exception("webhook worker: claiming failed; trying again")
                        db.session.rollback()
                        if burst:
                            raise
                if not in_flight:
                    if stop.is_set() or (burst and not started):
                        break
                    stop.wait(poll)
                    continue
                # Until an attempt ends, or a poll's time passes (new deliveries may be due).
                ended, _ = wait(in_flight, timeout=poll, return_when=FIRST_COMPLETED)
                if not ended:
                    continue
                done = [(in_flight.pop(future), self._outcome(future)) for future in ended]
                total += len(done)
                try:
                    self.finish(done)
                except Exception:  # noqa: BLE001 - unrecorded: due again when the lease ends
                    log.exception("webhook worker: recording failed; trying again")
                    db.session.rollback()
                    if burst:
                        raise
        finally:
            self.close()
        return total

    def close(self) -> None:
        """Wait for the attempts in flight (each ends within the timeout), then let go."""
        self.pool.shutdown(wait=True)
        self.sender.close()


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the worker finishes the deliveries in hand, then
    stops."""
    stop = threading.Event()

    def handle(signum, frame):  # noqa: ARG001
        log.info("webhook worker: stopping after the deliveries in hand")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


@dataclass(frozen=True)
class Backlog:
    due: int
    scheduled: int
    oldest_due: datetime | None
    failed_last_day: int
    succeeded_last_day: int
    disabled_endpoints: int


@dataclass(frozen=True)
class Outbox:
    due: int
    scheduled: int
    oldest_due: datetime | None


def outbox_backlog(now: datetime) -> Outbox:
    """The pending deliveries, due and scheduled, and the oldest due attempt (two reads of
    the ``(status, next_attempt_at)`` index: cheap enough for every Prometheus scrape)."""
    pending = WebhookDelivery.status == DeliveryStatus.PENDING.value
    due = db.session.execute(
        select(func.count(), func.min(WebhookDelivery.next_attempt_at)).where(
            pending, WebhookDelivery.next_attempt_at <= now
        )
    ).one()
    scheduled = db.session.execute(
        select(func.count()).where(pending, WebhookDelivery.next_attempt_at > now)
    ).scalar_one()
    return Outbox(due=due[0], scheduled=scheduled, oldest_due=due[1])


def backlog(now: datetime | None = None) -> Backlog:
    """What the workers have before them (``webhooks status``)."""
    now = now or utcnow()
    outbox = outbox_backlog(now)
    day = now - timedelta(days=1)

    def finished(status: DeliveryStatus) -> int:
        return db.session.execute(
            select(func.count()).where(
                WebhookDelivery.status == status.value, WebhookDelivery.last_attempt_at >= day
            )
        ).scalar_one()

    disabled = db.session.execute(
        select(func.count()).where(
            WebhookEndpoint.enabled.is_(False), WebhookEndpoint.disabled_reason != ""
        )
    ).scalar_one()
    return Backlog(
        due=outbox.due,
        scheduled=outbox.scheduled,
        oldest_due=outbox.oldest_due,
        failed_last_day=finished(DeliveryStatus.FAILED),
        succeeded_last_day=finished(DeliveryStatus.SUCCEEDED),
        disabled_endpoints=disabled,
    )

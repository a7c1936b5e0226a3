"""Faults injected while the load runs, and the windows in which their symptoms are expected.

Four kinds, each undone the way an operator or a supervisor (systemd's ``Restart=always``)
would, never by restarting the service:

``worker_kill``          one gunicorn worker gets SIGKILL; the master starts another.
``database``             PostgreSQL unreachable for ``outage`` seconds: the service's
                         ``DATABASE_URL`` points at a ``TcpProxy``, which is cut (every
                         connection reset, new ones refused) and then restored.
``redis``                the same for the rate-limit storage (``RATELIMIT_STORAGE_URI``).
``webhook_worker_kill``  the webhook worker gets SIGKILL while a delivery is in flight at the
                         receiver (waited for), and is started again after ``restart_after`` s.

``FaultInjector`` runs a plan (``plan_faults``) in a thread beside the load and records a
``FaultEvent`` per fault: what, when it began, when it was undone, and a detail.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psutil

from loadtest.checks import Window
from loadtest.proxy import TcpProxy

OUTAGE_SECONDS = 10.0
GAP_SECONDS = 5.0  # between two faults of a compressed plan
MINIMUM_SECONDS = 45.0  # the shortest run that takes every fault


@dataclass
class FaultEvent:
    """One fault as it happened (epoch seconds)."""

    kind: str
    name: str
    started: float
    ended: float
    detail: str

    @property
    def window(self) -> Window:
        return Window(self.kind, self.started, self.ended)


@dataclass(frozen=True)
class PlannedFault:
    """A fault to inject ``offset`` seconds after the load started."""

    offset: float
    kind: str


class Restartable(Protocol):
    """A supervised process (the webhook worker): killable and startable again."""

    @property
    def pid(self) -> int | None: ...

    def kill(self) -> int | None: ...

    def start(self) -> int: ...


class InFlight(Protocol):
    """Something that knows how many deliveries are being received right now."""

    in_flight: int


@dataclass
class Targets:
    """What the faults act on; a missing target means that fault does not apply."""

    gunicorn_master: int
    database_proxy: TcpProxy | None = None
    redis_proxy: TcpProxy | None = None
    webhook_worker: Restartable | None = None
    receiver: InFlight | None = None


def kinds_for(targets: Targets) -> list[str]:
    """The faults that apply to these targets, in the order they are injected."""
    kinds = ["worker_kill"]
    if targets.database_proxy is not None:
        kinds.append("database")
    if targets.redis_proxy is not None:
        kinds.append("redis")
    if targets.webhook_worker is not None:
        kinds.append("webhook_worker_kill")
    return kinds


def plan_faults(duration: float, kinds: list[str]) -> list[PlannedFault]:
    """When to inject each fault in a run of ``duration`` seconds.

    Runs of three minutes or more spread the faults over the middle of the run (one at each of
    20 %, 40 %, 60 %, 80 % … of it), so the service is under steady load before and after
    each. Shorter runs take them one after another from 10 s on, ``GAP_SECONDS`` apart.
    """
    if duration < MINIMUM_SECONDS:
        raise ValueError(f"a run with faults needs at least {MINIMUM_SECONDS:g} s")
    if duration >= 180:
        step = duration / (len(kinds) + 1)
        return [PlannedFault(step * (n + 1), kind) for n, kind in enumerate(kinds)]
    plan, offset = [], 10.0
    for kind in kinds:
        plan.append(PlannedFault(offset, kind))
        offset += GAP_SECONDS + (OUTAGE_SECONDS if kind in ("database", "redis") else 2.0)
    return plan


def _busyness(process: psutil.Process) -> int:
    """How many TCP connections a process holds (0 if it cannot be read)."""
    try:
        return len(process.net_connections(kind="tcp"))
    except psutil.Error:
        return 0


def kill_gunicorn_worker(master: int, timeout: float = 30.0) -> FaultEvent:
    """SIGKILL one gunicorn worker; end when the master has started its replacement."""
    children = psutil.Process(master).children()
    if not children:
        raise RuntimeError("gunicorn has no worker to kill")
    before = {child.pid for child in children}
    victim = max(children, key=_busyness).pid  # the one holding most connections
    started = time.time()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    replacement = None
    while time.monotonic() < deadline:
        now = {child.pid for child in psutil.Process(master).children()}
        new = now - before
        if new and victim not in now:
            replacement = min(new)
            break
        time.sleep(0.05)
    ended = time.time()
    detail = (
        f"killed worker {victim}; replacement {replacement} started after {ended - started:.1f} s"
        if replacement
        else f"killed worker {victim}; no replacement within {timeout:g} s"
    )
    return FaultEvent("worker_kill", "gunicorn worker SIGKILL", started, ended, detail)


def proxy_outage(proxy: TcpProxy, kind: str, seconds: float = OUTAGE_SECONDS) -> FaultEvent:
    """Make the proxied server unreachable for ``seconds``, then reachable again."""
    connections = proxy.open_connections // 2
    started = time.time()
    proxy.cut()
    time.sleep(seconds)
    proxy.restore()
    ended = time.time()
    what = {"database": "PostgreSQL", "redis": "Redis"}.get(kind, kind)
    return FaultEvent(
        kind,
        f"{what} unreachable for {seconds:g} s",
        started,
        ended,
        f"{connections} open connections reset, new ones refused, port {proxy.port} "
        f"listening again after {ended - started:.1f} s",
    )


def kill_webhook_worker(
    worker: Restartable,
    receiver: InFlight | None,
    restart_after: float = 2.0,
    wait_for_delivery: float = 15.0,
) -> FaultEvent:
    """SIGKILL the webhook worker while a delivery is in flight (waited for up to
    ``wait_for_delivery`` s), then start it again after ``restart_after`` s."""
    deadline = time.monotonic() + wait_for_delivery
    while receiver is not None and receiver.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    mid_delivery = receiver is not None and receiver.in_flight > 0
    started = time.time()
    victim = worker.kill()
    time.sleep(restart_after)
    new_pid = worker.start()
    ended = time.time()
    return FaultEvent(
        "webhook_worker_kill",
        "webhook worker SIGKILL",
        started,
        ended,
        f"killed {victim} {'mid-delivery' if mid_delivery else 'with no delivery in flight'}; "
        f"restarted as {new_pid} after {ended - started:.1f} s",
    )


def inject(kind: str, targets: Targets) -> FaultEvent:
    """Inject one fault of ``kind`` now and return what happened."""
    if kind == "worker_kill":
        return kill_gunicorn_worker(targets.gunicorn_master)
    if kind == "database" and targets.database_proxy is not None:
        return proxy_outage(targets.database_proxy, kind)
    if kind == "redis" and targets.redis_proxy is not None:
        return proxy_outage(targets.redis_proxy, kind)
    if kind == "webhook_worker_kill" and targets.webhook_worker is not None:
        return kill_webhook_worker(targets.webhook_worker, targets.receiver)
    raise ValueError(f"fault {kind!r} does not apply here")


class FaultInjector(threading.Thread):
    """Injects a plan's faults at their offsets from ``begin`` (epoch seconds)."""

    def __init__(
        self,
        plan: list[PlannedFault],
        targets: Targets,
        begin: float,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.plan = plan
        self.targets = targets
        self.begin = begin
        self.log = log
        self.events: list[FaultEvent] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        for planned in self.plan:
            if self._halt.wait(max(0.0, self.begin + planned.offset - time.time())):
                return
            try:
                event = inject(planned.kind, self.targets)
            except Exception as error:  # noqa: BLE001 - reported, the run goes on
                self.errors.append(f"{planned.kind}: {error!r}")
                self.log(f"fault {planned.kind} could not be injected: {error!r}")
                continue
            self.events.append(event)
            self.log(f"fault: {event.name} at +{event.started - self.begin:.1f} s: {event.detail}")

    def stop(self) -> list[FaultEvent]:
        """Skip the faults not yet injected; wait for the one in progress; return them all."""
        self._halt.set()
        if self.is_alive():
            self.join(60)
        return list(self.events)

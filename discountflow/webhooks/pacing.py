"""How one worker shares its sending out, so that no receiver can hold anyone else's deliveries.

A worker sends up to ``WEBHOOK_CONCURRENCY`` deliveries at once (its slots). Of those, one
endpoint has at most ``PER_ENDPOINT`` in flight and one organization at most half the slots;
due deliveries are taken oldest first within each organization, the organizations in turn.
An endpoint that keeps failing is paused (its circuit opens): after ``FAILURES_TO_PAUSE``
failed attempts in a row none of its deliveries is started for ``FIRST_PAUSE``; then one
attempt is made (half-open): a success closes the circuit, a failure pauses it again for twice
as long, up to ``LONGEST_PAUSE``. Each worker keeps this in its own memory.

Pure bookkeeping: no database, no clock of its own (the worker passes ``now``).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

PER_ENDPOINT = 2
FAILURES_TO_PAUSE = 5
FIRST_PAUSE = timedelta(seconds=30)
LONGEST_PAUSE = timedelta(minutes=5)


class Sendable(Protocol):
    endpoint_id: str
    organization_id: str


@dataclass(frozen=True)
class Due:
    """A due delivery, as the claim first reads it."""

    delivery_id: str
    endpoint_id: str
    organization_id: str


@dataclass
class Circuit:
    failures: int = 0  # failed attempts in a row
    paused_until: datetime | None = None  # set once open; past it, one attempt at a time
    pause: timedelta = FIRST_PAUSE  # how long the next pause lasts


class Pacer:
    def __init__(
        self,
        slots: int,
        *,
        per_endpoint: int = PER_ENDPOINT,
        per_organization: int | None = None,
    ) -> None:
        self.slots = slots
        self.per_endpoint = per_endpoint
        self.per_organization = per_organization or max(1, slots // 2)
        self.endpoints: Counter[str] = Counter()  # in flight, by endpoint
        self.organizations: Counter[str] = Counter()  # in flight, by organization
        self.in_flight = 0
        self.circuits: dict[str, Circuit] = {}

    def free(self) -> int:
        return self.slots - self.in_flight

    def room(self, endpoint_id: str, now: datetime) -> int:
        """How many of the endpoint's deliveries may be in flight now."""
        circuit = self.circuits.get(endpoint_id)
        if circuit is None or circuit.paused_until is None:
            return self.per_endpoint
        if now < circuit.paused_until:
            return 0
        return 1  # half-open: one attempt tells whether it answers again

    def paused(self, now: datetime) -> dict[str, datetime]:
        """The endpoints paused now, and until when."""
        return {
            endpoint_id: circuit.paused_until
            for endpoint_id, circuit in self.circuits.items()
            if circuit.paused_until is not None and now < circuit.paused_until
        }

    def held_back(self, now: datetime) -> tuple[list[str], list[str]]:
        """The endpoints and the organizations none of whose deliveries may start now."""
        endpoints = set(self.paused(now))
        endpoints |= {e for e, n in self.endpoints.items() if n >= self.room(e, now)}
        organizations = [o for o, n in self.organizations.items() if n >= self.per_organization]
        return sorted(endpoints), sorted(organizations)

    def pick(self, due: list[Due], now: datetime) -> list[Due]:
        """Which of ``due`` (oldest first) to start now: the organizations in turn, each its
        oldest delivery whose endpoint has room, within every limit."""
        queues: dict[str, deque[Due]] = {}
        for each in due:
            queues.setdefault(each.organization_id, deque()).append(each)
        endpoints, organizations = Counter(self.endpoints), Counter(self.organizations)
        picked: list[Due] = []
        free = self.free()
        while free > 0 and queues:
            for organization in list(queues):
                if free <= 0:
                    break
                queue = queues[organization]
                while queue and organizations[organization] < self.per_organization:
                    each = queue.popleft()
                    if endpoints[each.endpoint_id] < self.room(each.endpoint_id, now):
                        picked.append(each)
                        endpoints[each.endpoint_id] += 1
                        organizations[organization] += 1
                        free -= 1
                        break
                if not queue or organizations[organization] >= self.per_organization:
                    del queues[organization]
        return picked

    def started(self, each: Sendable) -> None:
        self.endpoints[each.endpoint_id] += 1
        self.organizations[each.organization_id] += 1
        self.in_flight += 1

    def finished(self, each: Sendable, delivered: bool, now: datetime) -> datetime | None:
        """Count an attempt's end; return until when its endpoint is paused if this attempt
        paused it."""
        for counter, key in (
            (self.endpoints, each.endpoint_id),
            (self.organizations, each.organization_id),
        ):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        self.in_flight -= 1
        if delivered:
            self.circuits.pop(each.endpoint_id, None)
            return None
        circuit = self.circuits.setdefault(each.endpoint_id, Circuit())
        circuit.failures += 1
        if circuit.paused_until is not None:
            if now < circuit.paused_until:
                return None  # paused already (an attempt started before it was)
        elif circuit.failures < FAILURES_TO_PAUSE:
            return None
        circuit.paused_until = now + circuit.pause
        circuit.pause = min(circuit.pause * 2, LONGEST_PAUSE)
        return circuit.paused_until

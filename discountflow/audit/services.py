"""Recording and reading the audit trail. Every service that changes something records here,
in its own transaction, so the change and its event commit (or roll back) together."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_

from ..actors import Actor
from ..extensions import db
from ..pagination import PageRequest, page_of
from .models import Event


class EventLog:
    """The events of one transaction, stamped in order (a microsecond apart)."""

    def __init__(self, actor: Actor, now: datetime) -> None:
        self.actor = actor
        self.recorded = actor.recorded_as()
        self.now = now
        self.count = 0

    def add(
        self,
        type_: str,
        *,
        approval_id: str | None = None,
        organization_id: str | None = None,
        by: Actor | None = None,
        **data: Any,
    ) -> Event:
        """Add an event of this transaction (``by`` another actor, such as the system)."""
        event = Event(
            organization_id=organization_id or self.actor.organization_id,
            approval_id=approval_id,
            type=type_,
            data=data,
            created_at=self.now + timedelta(microseconds=self.count),
            **(by.recorded_as() if by is not None else self.recorded),
        )
        self.count += 1
        db.session.add(event)
        return event


def _of_types(types: list[str]):
    """The condition for events of these types (``kind.*`` for every type of a kind)."""
    exact = [wanted for wanted in types if not wanted.endswith(".*")]
    kinds = [wanted[:-1] for wanted in types if wanted.endswith(".*")]
    conditions = [Event.type.in_(exact)] if exact else []
    conditions += [Event.type.startswith(kind, autoescape=True) for kind in kinds]
    return or_(*conditions)


def list_events(
    actor: Actor, page: PageRequest, types: list[str] | None = None
) -> tuple[list[Event], bool]:
    """Return one page of the organization's audit trail, newest first; owner and admins."""
    actor.require_manager("read the organization's audit trail")
    filters = [_of_types(types)] if types else []
    return page_of(Event, page, Event.organization_id == actor.organization_id, *filters)


def events_of_approval(
    organization_id: str, approval_id: str, page: PageRequest
) -> tuple[list[Event], bool]:
    """Return one page of an approval's events (the caller has checked it may see it)."""
    scope = and_(Event.organization_id == organization_id, Event.approval_id == approval_id)
    return page_of(Event, page, scope)

"""The transactional outbox's listener: the events a transaction adds are handed, just before
it commits, to each outbox writer (webhook deliveries, notifications), which add their rows in
that same transaction.

They commit with the change and its events, or roll back with them: a change that is undone
sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from .audit.models import Event
from .database import new_id

Writer = Callable[[Session, list[Event]], None]

_EVENTS = "discountflow.outbox_events"
_WRITERS: list[Writer] = []


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    """Before each flush: remember the events the transaction adds."""
    added = [each for each in session.new if isinstance(each, Event)]
    if added:
        session.info.setdefault(_EVENTS, []).extend(added)


def _write(session: Session) -> None:
    """Before the commit: hand the transaction's events to each writer."""
    collected = session.info.pop(_EVENTS, [])
    collected += [each for each in session.new if isinstance(each, Event)]
    if not collected:
        return
    events = list({id(each): each for each in collected}.values())
    for each in events:
        if each.id is None:
            each.id = new_id("evt")
    session.flush()  # the change as the transaction leaves it, for the writers' reads
    session.info.pop(_EVENTS, None)
    for writer in _WRITERS:
        writer(session, events)


def _forget(session: Session, *args: Any) -> None:
    """A rollback: the events are gone, and so is what they would have sent."""
    session.info.pop(_EVENTS, None)


def listen(writer: Writer) -> None:
    """Hand every transaction's events to ``writer`` before it commits (once per process)."""
    if writer not in _WRITERS:
        _WRITERS.append(writer)
    if not event.contains(Session, "before_flush", _collect):
        event.listen(Session, "before_flush", _collect)
        event.listen(Session, "before_commit", _write)
        event.listen(Session, "after_rollback", _forget)
        event.listen(Session, "after_soft_rollback", _forget)

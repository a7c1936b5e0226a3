"""What the outbox's workers share: claiming due rows for a lease, the retry schedule, and
recording an attempt only while its claim still holds.

A claim marks the rows with a token and makes them due again only when the lease ends: no other
worker takes them meanwhile, and if this one dies mid-send they are simply due again then.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, update

from .extensions import db

SCHEDULE = [
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
]
THEN_EVERY = timedelta(hours=12)
WINDOW = timedelta(days=3)  # after the event: then it has failed
JITTER = 0.10


def next_delay(attempts: int, rng: random.Random) -> timedelta:
    """How long after its ``attempts``-th failed attempt a row is tried again."""
    base = SCHEDULE[attempts] if attempts < len(SCHEDULE) else THEN_EVERY
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


def retry_at(
    attempt: int, created_at: datetime, now: datetime, rng: random.Random
) -> datetime | None:
    """When to try again after the ``attempt``-th failed attempt; ``None`` if that would be
    past the window (3 days after the event): the row has failed."""
    at = now + next_delay(attempt, rng)
    return None if at > created_at + WINDOW else at


def skipping_locked(due: Select, of: Any = None) -> Select:
    """``due``, on PostgreSQL locking its rows and skipping those another worker is claiming
    (SQLite's ``BEGIN IMMEDIATE`` already lets one claimer in at a time)."""
    if db.engine.dialect.name == "postgresql":
        return due.with_for_update(skip_locked=True, of=of)
    return due


def claim(model: Any, ids: Iterable[str], now: datetime, lease: timedelta) -> str:
    """Mark the rows ``ids`` of ``model`` with a new claim, due again when the lease ends;
    return the claim."""
    token = secrets.token_hex(8)
    db.session.execute(
        update(model)
        .where(model.id.in_(list(ids)))
        .values(claim=token, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return token


def record_if_claimed(model: Any, row_id: str, token: str, values: dict[str, Any]) -> bool:
    """Write an attempt's ``values`` to the row if the claim ``token`` is still its own;
    return whether it was (a worker whose lease ran out has lost it to another)."""
    written = db.session.execute(
        update(model)
        .where(model.id == row_id, model.claim == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(written)

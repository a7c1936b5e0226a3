"""``Idempotency-Key`` on API POSTs: a retry replays the first response instead of acting twice.

The first request with a key records it as in progress (a unique row per organization and
key), runs, and stores its status and body. A retry with the same key and the same request
gets that response back for 24 hours; the same key with another request is refused with 400
``idempotency_key_reused``; a retry while the first is still running gets 409. A first
request that fails with a server error releases its key, since nothing it did was committed.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from functools import partial

from flask import Response, g, request
from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, begin_write, new_id, utcnow
from .errors import DomainError, InvalidParameter
from .extensions import db

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


class IdempotencyKeyReused(DomainError):
    status, code = 400, "idempotency_key_reused"
    message = (
        "This Idempotency-Key was used with a different request. Use a new key for a new request."
    )


class IdempotentRequestInProgress(DomainError):
    status, code = 409, "idempotency_key_in_use"
    message = "A request with this Idempotency-Key is still being processed. Retry shortly."


class IdempotencyKey(db.Model):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "idk"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(32))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while in progress
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _fingerprint() -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def begin(organization_id: str, api_key_id: str) -> Response | None:
    """Claim the request's Idempotency-Key, or answer a retry with the first response."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidParameter(
            "An Idempotency-Key is 1 to 255 printable ASCII characters without spaces.",
            param=HEADER,
        )
    fingerprint = _fingerprint()
    begin_write()
    now = utcnow()
    record = db.session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.organization_id == organization_id, IdempotencyKey.key == key
        )
    ).scalar_one_or_none()
    if record is not None and record.created_at <= now - RETENTION:
        db.session.delete(record)
        db.session.flush()
        record = None
    if record is not None:
        reused, in_progress = record.fingerprint != fingerprint, record.status_code is None
        response = Response(record.body, status=record.status_code, mimetype="application/json")
        db.session.commit()
        if reused:
            raise IdempotencyKeyReused()
        if in_progress:
            raise IdempotentRequestInProgress()
        response.headers["Idempotent-Replayed"] = "true"
        return response
    record_id = new_id("idk")
    record = IdempotencyKey(
        id=record_id,
        organization_id=organization_id,
        key=key,
        fingerprint=fingerprint,
        api_key_id=api_key_id,
        created_at=now,
    )
    db.session.add(record)
    try:
        db.session.commit()
    except IntegrityError as error:  # the same key, claimed a moment ago by a twin request
        db.session.rollback()
        raise IdempotentRequestInProgress() from error
    g.idempotency_record_id = record_id
    return None


def finish(response: Response) -> Response:
    """Store the first response under its key (or release the key after a server error)."""
    record_id = g.pop("idempotency_record_id", None)
    if record_id is None:
        return response
    db.session.rollback()  # whatever the view left behind is not ours to commit
    begin_write()
    if response.status_code >= 500:
        db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == record_id))
    else:
        record = db.session.get(IdempotencyKey, record_id)
        record.status_code = response.status_code
        record.body = response.get_data(as_text=True)
    db.session.commit()
    return response

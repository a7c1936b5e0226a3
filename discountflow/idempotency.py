"""``Idempotency-Key`` on API POSTs: a retry replays the first response instead of acting twice.

The first request with a key records it as in progress (a unique row per organization and
key), runs, and stores its status and body. A retry with the same key and the same request
gets that response back for 24 hours; the same key with another request is refused with 400
``idempotency_key_reused``; a retry while the first is still running gets 409. A first
request that fails with a server error releases its key, since nothing it did was committed.
When the database itself went away mid-request, the key cannot be released then: the process
remembers it and releases it with its next claim once the database answers again (found by the
fault run of ``loadtest/``: the release failed into a 500 and the key stayed claimed).

The request's work and its answer commit in one transaction (``finish``): while a claimed
request runs, its commits are held (each unit of work a SAVEPOINT, ``extensions.Session``), so
a retry finds the work and its answer, or neither. (Found by the fault run: PostgreSQL cut
between the work's commit and the answer's left work done and nothing to replay.)

A claim is a lease of ``LEASE``: when the process holding it dies (a worker killed
mid-request), a retry after the lease takes the key over and runs the request. That is safe
because nothing of the dead request was committed, and a claim stored with its answer is never
taken over: a request whose claim was taken over cannot commit any more (409). A claim marked
``work_committed_at`` with no answer can only be left by a version before the two were one
commit: such a key answers 409 saying so, since running the request again would do it twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from datetime import datetime, timedelta
from functools import partial

from flask import Response, g, has_request_context, request
from flask_sqlalchemy.session import Session
from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, begin_write, new_id, utcnow
from .errors import DomainError, InvalidParameter, answer
from .extensions import HELD_WORK, HOLD_COMMITS, db, discard_work
from .operations import database_unavailable

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
DATABASE_AWAY = (OperationalError, InterfaceError)
# Claims of failed requests this process could not release (the database was away).
_unreleased: set[str] = set()
_unreleased_lock = threading.Lock()
RETENTION = timedelta(hours=24)
# How long a claim stays its request's own without a sign of life from it (see above). Far
# longer than a request takes; short enough that a client retrying for half a minute after
# its worker died gets its answer.
LEASE = timedelta(seconds=10)
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


class IdempotencyKeyReused(DomainError):
    status, code = 400, "idempotency_key_reused"
    message = (
        "This Idempotency-Key was used with a different request. Use a new key for a new request."
    )


class IdempotentRequestInProgress(DomainError):
    status, code = 409, "idempotency_key_in_use"
    message = "A request with this Idempotency-Key is still being processed. Retry shortly."

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__()
        self.headers = {"Retry-After": str(max(1, retry_after))}


class IdempotentRequestTakenOver(IdempotentRequestInProgress):
    message = (
        "This request took too long: a retry with the same Idempotency-Key has taken it over, "
        "so it was not carried out here."
    )


class IdempotentResponseLost(IdempotentRequestInProgress):
    message = (
        "The request with this Idempotency-Key was carried out, but the server stopped before "
        "it could answer. It will not be carried out again: look up its result, or send a new "
        "request with a new key."
    )


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
    # Set in the transaction that commits the request's work: from then on never taken over.
    work_committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


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
    if _unreleased:
        _release_leftovers()
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
    if record is not None and record.status_code is None and _take_over(record, now):
        record = None
    if record is not None:
        reused, in_progress = record.fingerprint != fingerprint, record.status_code is None
        response = Response(record.body, status=record.status_code, mimetype="application/json")
        committed, claimed_at = record.work_committed_at, record.created_at
        db.session.commit()
        if reused:
            raise IdempotencyKeyReused()
        if in_progress and committed is not None and claimed_at <= now - LEASE:
            raise IdempotentResponseLost(retry_after=0)
        if in_progress:
            raise IdempotentRequestInProgress(_seconds_left(claimed_at + LEASE - now))
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
        raise IdempotentRequestInProgress(_seconds_left(LEASE)) from error
    g.idempotency_record_id = record_id
    db.session().info[HOLD_COMMITS] = True  # the work commits with its answer, in finish()
    return None


def _seconds_left(left: timedelta) -> int:
    return int(-(-left.total_seconds() // 1))  # rounded up


def _take_over(record: IdempotencyKey, now: datetime) -> bool:
    """Take over a claim whose lease ran out with none of its work committed (its process
    died): delete it, so that this request claims the key anew. The condition is checked by
    the DELETE itself, so a claimant committing its work at this very moment wins."""
    if record.created_at > now - LEASE or record.work_committed_at is not None:
        return False
    taken = db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.id == record.id,
            IdempotencyKey.status_code.is_(None),
            IdempotencyKey.work_committed_at.is_(None),
        ),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not taken:
        db.session.refresh(record)
        return False
    db.session.expunge(record)
    log.warning(
        "Idempotency-Key claim %s taken over: its request left no sign of life for %s",
        record.id,
        LEASE,
    )
    return True


@event.listens_for(Session, "before_commit")
def _mark_work_committed(session: Session) -> None:
    """As each unit of a claiming request's work commits (held in the request's transaction,
    see ``finish``), mark its claim, which also locks it on PostgreSQL: a take-over waits for
    the request's commit, and then finds its answer. A claim already taken over refuses the
    unit (409)."""
    if not has_request_context():
        return
    record_id = g.get("idempotency_record_id")
    if record_id is None:
        return
    marked = session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == record_id, IdempotencyKey.status_code.is_(None))
        .values(work_committed_at=utcnow()),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not marked:
        raise IdempotentRequestTakenOver(_seconds_left(LEASE))


def finish(response: Response) -> Response:
    """Commit the request's work together with its answer, stored under its key; or, after a
    server error, undo it and release the key.

    The work and the answer commit in one transaction (``extensions.Session`` held the work's
    commits), so a retry finds both or neither. When that commit fails because the database
    went away, nothing was done: the client is told so (503) rather than the answer it would
    have had, and the key is released once the database answers again.
    """
    record_id = g.pop("idempotency_record_id", None)
    if record_id is None:
        return response
    session = db.session()
    held = session.info.pop(HELD_WORK, False)
    session.info.pop(HOLD_COMMITS, None)
    failed = response.status_code >= 500
    try:
        if held and not failed:
            nested = session.get_nested_transaction()
            if nested is not None:  # what a refused unit of work left behind
                nested.rollback()
        else:
            session.rollback()  # whatever the view left behind is not ours to commit
            begin_write()
        if failed:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == record_id))
        elif not _store_answer(record_id, response):  # the claim was taken over meanwhile
            session.rollback()
            return _refusal(IdempotentRequestTakenOver(_seconds_left(LEASE)))
        session.commit()
    except DATABASE_AWAY as error:
        discard_work()
        # Nothing was done (a held work's commit failed with the rest): release the key when
        # the database answers again.
        with _unreleased_lock:
            _unreleased.add(record_id)
        log.warning("Idempotency-Key not settled, the database is away: %s", type(error).__name__)
        if held and not failed:
            return database_unavailable(error)
    return response


def _store_answer(record_id: str, response: Response) -> bool:
    """Store the answer in the claim, unless the claim is no longer this request's."""
    return bool(
        db.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == record_id, IdempotencyKey.status_code.is_(None))
            .values(
                status_code=response.status_code,
                body=response.get_data(as_text=True),
                work_committed_at=utcnow(),
            ),
            execution_options={"synchronize_session": False},
        ).rowcount
    )


def _refusal(error: DomainError) -> Response:
    response = answer(error.status, error.code, error.message)
    response.headers.update(error.headers)
    return response


def _release_leftovers() -> None:
    """Release the claims this process could not release while the database was away."""
    with _unreleased_lock:
        ids = list(_unreleased)
    try:
        begin_write()
        db.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id.in_(ids), IdempotencyKey.status_code.is_(None)
            )
        )
        db.session.commit()
    except DATABASE_AWAY:
        discard_work()
        return
    with _unreleased_lock:
        _unreleased.difference_update(ids)

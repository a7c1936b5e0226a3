"""The database: column types, ids and clocks every feature's models share, SQLite's settings,
and write transactions."""

from __future__ import annotations

import functools
import logging
import re
import secrets
import string
import time
from datetime import UTC, datetime

from flask import Flask, g, has_request_context
from sqlalchemy import DateTime, event
from sqlalchemy.types import TypeDecorator

from . import metrics
from .errors import InvalidParameter
from .extensions import HELD_WORK, HOLD_COMMITS, Session, db, release_session

log = logging.getLogger(__name__)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def random_base62(length: int) -> str:
    """Return ``length`` characters drawn uniformly from the base62 alphabet.

    Random bytes below 248 (four times 62) map evenly onto the alphabet; the others are
    dropped. One call to the OS for the lot, instead of one ``secrets.choice`` per character.
    """
    chosen: list[str] = []
    while len(chosen) < length:
        chosen += [BASE62[byte % 62] for byte in secrets.token_bytes(length + 8) if byte < 248]
    return "".join(chosen[:length])


# Neither control characters (PostgreSQL cannot even compare them) nor a lone UTF-16 surrogate
# (JSON's "\ud800", which no database driver can encode: GraphQL's variables carry them).
_USABLE_ID = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,64}")


def require_usable_id(object_id: str, param: str = "id") -> str:
    """Refuse an id no object can have: empty, too long, with control characters or a lone
    surrogate, so every database answers the same 400."""
    if not isinstance(object_id, str) or not _USABLE_ID.fullmatch(object_id):
        raise InvalidParameter(f"Invalid {param}: not an object id.", param=param)
    return object_id


def new_id(prefix: str) -> str:
    """Return a prefixed object id such as ``apr_0Ahc3kPz9fK2mXc8L0aZ3k``: the time to the
    millisecond (8 base62 characters, so ids sort by creation) and 14 random ones (83 bits).

    Ids that grow with time are appended at the end of every index that holds them, instead of
    landing on a random page of it: each commit writes far fewer pages (measured on the webhook
    outbox, whose rows are all new).
    """
    return f"{prefix}_{_millisecond(time.time_ns() // 1_000_000)}{random_base62(14)}"


@functools.lru_cache(maxsize=4)
def _millisecond(number: int) -> str:
    """A millisecond as 8 base62 characters (enough until the year 8900); ids made in the
    same millisecond share it."""
    digits = []
    for _ in range(8):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def rfc3339(value: datetime | None) -> str | None:
    """Render a UTC timestamp as RFC 3339 with a ``Z`` suffix."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class UTCDateTime(TypeDecorator):
    """Store UTC timestamps; always hand back aware UTC datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def configure_sqlite_connection(dbapi_connection, connection_record) -> None:
    """Turn on foreign keys, WAL and a busy timeout, and size the caches, on a new connection."""
    # Let SQLAlchemy emit BEGIN itself (see begin_sqlite_transaction) instead of the driver's
    # own implicit, deferred BEGIN before the first write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Pages of the file are read into each connection's own cache, kept small (512 KiB), and
    # are not memory-mapped: a mapping made each worker's RSS grow with the file it touched
    # (+6 MB/h of file pages in the 30-minute soak). Neither the mapping nor SQLite's default
    # 2 MiB cache made a page cheaper: a rendered page over 100,000 approvals costs 1.16–1.29 ms
    # in-process either way (the OS page cache serves the reads); the smaller cache is memory
    # spared per pooled connection (it did not change the soak's slope, README).
    cursor.execute("PRAGMA mmap_size=0")
    cursor.execute("PRAGMA cache_size=-512")
    cursor.close()
    # SQLite's own lower() folds ASCII only: searches ("Ärger", "ÜBER") fold every alphabet,
    # as on PostgreSQL.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def count_lost_connections(context) -> None:
    """Treat a connection the driver cannot use any more as lost, so the pool replaces it.

    psycopg marks a connection broken when libpq sees it fail, but not when the wait for an
    answer finds the socket gone (``connection socket closed``: a reset arriving while a query
    waits): the connection is left mid-query, status ACTIVE, and nothing can be done on it.
    When that happened in the pool's pre-ping, SQLAlchemy's ping then tried to switch
    autocommit back on that connection, and the ``ProgrammingError`` it got escaped as a 500
    (found by the fault run while PostgreSQL was cut). A failed ping, or an error that leaves
    the connection mid-query, now counts as a disconnect: the pool drops the connection and the
    request gets a new one, or the 503 of a database that is away.
    """
    if context.is_disconnect:
        return
    if context.is_pre_ping:
        context.is_disconnect = True  # the ping is ";": any failure means the connection is gone
        return
    connection = context.connection
    if connection is None or connection.invalidated:
        return
    info = getattr(connection.connection.dbapi_connection, "info", None)
    status = getattr(getattr(info, "transaction_status", None), "name", None)
    if status == "ACTIVE":
        context.is_disconnect = True


# Execution option that makes the next transaction a writer from its first statement.
WRITE_TRANSACTION = "discountflow_write"


def begin_sqlite_transaction(connection) -> None:
    """Open an SQLite transaction: ``BEGIN IMMEDIATE`` for writers, deferred for readers.

    A deferred transaction that reads and then writes fails with "database is locked" when
    another writer committed in between; taking the write lock first makes such work wait its
    turn (up to the busy timeout) instead.
    """
    immediate = connection.get_execution_options().get(WRITE_TRANSACTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write() -> None:
    """Start a fresh session transaction that will write (``BEGIN IMMEDIATE`` on SQLite).

    Services call this before reading the rows they are about to change, so two requests
    changing the same rows run one after the other. On PostgreSQL the rows are also read
    ``FOR UPDATE``. A transaction the session already had open (authentication's reads) is
    rolled back, never committed: it wrote nothing of its own, and whatever a refused service
    left behind in it (a GraphQL request runs several mutations) must not be saved.

    In a request whose commits are held for its answer (an ``Idempotency-Key``: see
    ``extensions.Session``), the transaction is one for the whole request and each unit of
    work a SAVEPOINT of it.
    """
    session = db.session()
    if session.info.get(HELD_WORK):
        # An idempotent request's earlier work, held for its answer (extensions.Session): its
        # transaction writes already; undo only what a refused unit of work left behind.
        session.rollback()
    else:
        if session.in_transaction():
            session.rollback()
        session.connection(execution_options={WRITE_TRANSACTION: True})
        if session.info.get(HOLD_COMMITS):
            session.begin_nested()


def _release_at_teardown(_: BaseException | None) -> None:
    """The teardown that ends the session (before Flask-SQLAlchemy's, which finds it gone)."""
    error = release_session()
    if error is not None:  # nothing can be answered any more: logged and counted
        metrics.count_backend_error("database")
        log.error("the database failed as its session was closed: %s", error)


def _note_commit(session) -> None:
    if has_request_context():
        g.committed_work = True


def committed_work() -> bool:
    """Whether the current request committed anything (its answer may report work done)."""
    return bool(g.get("committed_work"))


def init_app(app: Flask) -> None:
    """Set SQLite up on every connection (and PostgreSQL's lost connections apart), and end
    each request's session without letting the database's error escape."""
    app.teardown_appcontext(_release_at_teardown)  # runs before Flask-SQLAlchemy's (last first)
    if not event.contains(Session, "after_commit", _note_commit):
        event.listen(Session, "after_commit", _note_commit)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", configure_sqlite_connection)
        event.listen(engine, "begin", begin_sqlite_transaction)
    else:
        event.listen(engine, "handle_error", count_lost_connections)


def backup_sqlite(database_path: str, target: str, *, pages_per_step: int = 1024) -> int:
    """Copy a live SQLite database to ``target`` with SQLite's online backup API; return its size.

    The copy is consistent (one snapshot, even while the service writes) and is checked with
    ``PRAGMA integrity_check`` before it replaces anything at ``target``.
    """
    import os
    import sqlite3

    draft = f"{target}.partial"
    source = sqlite3.connect(database_path)
    copy = sqlite3.connect(draft)
    try:
        source.execute("PRAGMA busy_timeout=5000")
        source.backup(copy, pages=pages_per_step)
        (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {verdict}")
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        copy.close()
        source.close()
    os.replace(draft, target)
    return os.path.getsize(target)

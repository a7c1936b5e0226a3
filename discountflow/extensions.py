"""Flask extensions, created unbound; the application factory binds them with ``init_app``."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so migrations can refer to them (FlaskBB's convention).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Session.info keys of a request whose commits are held (see Session).
HOLD_COMMITS = "discountflow.hold_commits"
HELD_WORK = "discountflow.held_work"


class Session(FlaskSession):
    """Flask-SQLAlchemy's session, able to hold a request's commits until its answer is known.

    A request with an ``Idempotency-Key`` must store its answer in the transaction that commits
    its work: otherwise a process stopped, or a database cut, between the two commits leaves
    work done and no answer to replay (found by the fault run of ``loadtest/``). While
    ``info[HOLD_COMMITS]`` is set, each unit of work runs in a SAVEPOINT of one transaction:
    ``commit()`` releases it (running the ``before_commit`` hooks, as a commit would) and opens
    the next, and ``rollback()`` undoes the current unit only, once an earlier one is held.
    :func:`discountflow.idempotency.finish` commits the lot with the answer.
    """

    def commit(self) -> None:
        if not self.info.get(HOLD_COMMITS):
            return super().commit()
        nested = self.get_nested_transaction()
        (nested if nested is not None else self.begin_nested()).commit()
        self.info[HELD_WORK] = True
        self.expire_all()  # reads after a commit see the database, as after a real one
        self.begin_nested()
        return None

    def rollback(self) -> None:
        if not (self.info.get(HOLD_COMMITS) and self.info.get(HELD_WORK)):
            return super().rollback()
        nested = self.get_nested_transaction()
        if nested is not None:
            nested.rollback()
        self.begin_nested()
        return None


db = SQLAlchemy(model_class=Base, session_options={"class_": Session})


def release_session() -> SQLAlchemyError | None:
    """End the current session: roll back what it left open and give its connections back to
    the pool. Return the error the database answered with instead of raising it.

    Flask-SQLAlchemy does this in its teardown, where an error can no longer become the answer:
    after a cut, the rollback on a connection the cut had reset (``consuming input failed``)
    escaped Flask there, and gunicorn answered a 500 that no access line recorded (found by the
    fault run of ``loadtest/``). It is called earlier, while the answer can still be replaced
    (``operations.py``), and again as a teardown that never raises (``database.init_app``).
    """
    if not db.session.registry.has():
        return None  # this request never used the database
    session = db.session()
    session.info.pop(HOLD_COMMITS, None)  # nothing held is committed any more: undo it all
    session.info.pop(HELD_WORK, None)
    failed: list[SQLAlchemyError] = []
    # What close() does, in steps that fail cleanly: its objects are let go as they are (not
    # expired: what was read stays readable), then the rollback, which gives the connections
    # back even when it fails (the pool drops a broken one) where a failed close() leaves them
    # checked out and the session registered.
    session.expunge_all()
    for step in (session.rollback, db.session.remove):
        try:
            step()
        except SQLAlchemyError as error:
            failed.append(error)
    if failed:
        db.session.registry.clear()  # forget the session whatever state it was left in
    return failed[0] if failed else None


def discard_work() -> SQLAlchemyError | None:
    """Undo the session's unit of work (``Session.rollback``) on a database that may be gone.

    When the rollback fails too (on a connection a cut has reset, it does), the session is
    ended as ``release_session`` ends it, and the error is returned, never raised: the answer
    to an error must not fail in turn (a refusal's rollback failed that way in the fault run,
    and gunicorn answered its bare 500). What was read stays readable for that answer.
    """
    try:
        db.session.rollback()
    except SQLAlchemyError as error:
        release_session()
        return error
    return None


limiter = Limiter(key_func=get_remote_address)
csrf = CSRFProtect()
login_manager = LoginManager()
migrate = Migrate()

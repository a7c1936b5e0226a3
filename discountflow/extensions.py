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
limiter = Limiter(key_func=get_remote_address)
csrf = CSRFProtect()
login_manager = LoginManager()
migrate = Migrate()

"""The real PostgreSQL and Redis servers the scale-out tests need.

Locally a test that needs one skips when it does not answer; under ``CI`` it fails instead.
``TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and
``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) say where they are.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"CI requires it: {message}")
    pytest.skip(message)


def require_postgres() -> str:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "not here"
        unavailable("PostgreSQL", error)
    finally:
        engine.dispose()
    return POSTGRES_URL


@contextmanager
def fresh_postgres_database():
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    base = make_url(require_postgres())
    name = f"discountflow_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def require_redis() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001
        unavailable("Redis", error)
    finally:
        client.close()
    return REDIS_URL


TEMPLATE = "discountflow_template"
_template_ready = False


def copy_of_template(name: str) -> str:
    """A new database ``name`` holding the models' schema (copied from a template built once
    per run by ``create_all``); returns its URL."""
    global _template_ready
    base = make_url(require_postgres())
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if not _template_ready:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
                template = create_engine(base.set(database=TEMPLATE))
                import discountflow.approvals.models  # noqa: F401 - every table
                import discountflow.auth.models  # noqa: F401
                import discountflow.idempotency  # noqa: F401
                from discountflow.extensions import db

                db.metadata.create_all(template)
                template.dispose()
                _template_ready = True
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()

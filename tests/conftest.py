"""Fixtures in flaskr's style: a fresh app and database per test, a client, a CLI runner.

``TEST_DATABASE=postgresql`` runs the whole suite on PostgreSQL (``tests/servers.py`` says
where): each test gets its own database, copied from a template that holds the schema. Tests
that are about SQLite itself are marked ``sqlite_only`` and skip there. Without a server the
run skips, except under ``CI``, where it fails.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta

import pytest

from discountflow import create_app
from discountflow.actors import Actor
from discountflow.auth import services as auth
from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.organizations import services as organizations
from discountflow.organizations.models import Organization, User

PASSWORD = "correct horse battery"


ON_POSTGRESQL = os.environ.get("TEST_DATABASE", "sqlite") == "postgresql"
_APPS: list = []  # apps built by the current test (their pools are closed after it)
_DATABASES: dict[str, str] = {}  # tmp_path → the PostgreSQL database of the current test


def database_url_for(tmp_path, databases: dict[str, str] | None = None) -> str:
    """The database of the test that owns ``tmp_path`` (every app it builds shares it)."""
    if not ON_POSTGRESQL:
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    databases = _DATABASES if databases is None else databases
    key = str(tmp_path)
    if key not in databases:
        from .servers import copy_of_template

        name = "discountflow_t_" + hashlib.sha1(key.encode()).hexdigest()[:16]
        databases[key] = copy_of_template(name)
    return databases[key]


def make_lasting_app(tmp_path, **overrides):
    """An app for a module-scoped fixture: ``release_app`` closes it (and drops its database)."""
    lasting: dict[str, str] = {}
    app = _build_app(database_url_for(tmp_path, lasting), overrides)
    app.extensions["tests.databases"] = lasting
    return app


def release_app(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if app.extensions.get("tests.databases"):
        from .servers import drop_database

        for url in app.extensions["tests.databases"].values():
            drop_database(url)


def make_app(tmp_path, **overrides):
    app = _build_app(database_url_for(tmp_path), overrides)
    _APPS.append(app)
    return app


def _build_app(database_url: str, overrides: dict):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-" + "0" * 32,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "BCRYPT_ROUNDS": 4,
        "DISCOUNTFLOW_ENV": "staging",
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.create_all()  # a copy of the template has every table already: a no-op there
    return app


@pytest.fixture(autouse=True)
def _close_databases():
    """After each test: close the pools of its apps, drop its PostgreSQL database."""
    yield
    while _APPS:
        with _APPS.pop().app_context():
            db.session.remove()
            db.engine.dispose()
    if _DATABASES:
        from .servers import drop_database

        for url in _DATABASES.values():
            drop_database(url)
        _DATABASES.clear()


def pytest_collection_modifyitems(config, items):
    if ON_POSTGRESQL:
        skip = pytest.mark.skip(reason="about SQLite itself (TEST_DATABASE=postgresql)")
        for item in items:
            if "sqlite_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Clock:
    """A controllable clock for the services: ``clock.advance(seconds=61)``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("discountflow.auth.services.utcnow", clock.now)
    monkeypatch.setattr("discountflow.auth.authentication.utcnow", clock.now)
    return clock


def create_org(app, slug: str = "acme") -> tuple[str, str]:
    """Create an organization with its owner; return (organization id, owner id)."""
    with app.app_context():
        organization = organizations.create_organization(
            slug.title(), slug=slug, owner_email=f"owner@{slug}.example", owner_password=PASSWORD
        )
        return organization.id, Actor.for_cli(organization).person_id


def owner_actor(organization_id: str) -> Actor:
    """The owner of an organization, acting through the CLI (call inside an app context)."""
    return Actor.for_cli(db.session.get(Organization, organization_id))


def add_member(app, organization_id: str, email: str, role: str = "member") -> str:
    with app.app_context():
        owner = owner_actor(organization_id)
        return organizations.add_member(owner, email=email, password=PASSWORD, role=role).id


def generate_key(app, user_id: str, **options) -> str:
    """A new key of the organization whose owner is ``user_id``."""
    with app.app_context():
        owner = db.session.get(User, user_id)
        return auth.generate_key(owner_actor(owner.organization_id), **options)[1]


@pytest.fixture
def org(app):
    """(organization id, owner id) of the organization 'acme'."""
    return create_org(app)


@pytest.fixture
def key(app, org):
    """A full-access staging key of 'acme'."""
    return generate_key(app, org[1])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def world(app):
    """The organization 'acme' with people, three approval levels and keys (approvals_world)."""
    from .approvals_world import build_world

    return build_world(app)


@pytest.fixture
def api(client, world):
    """Call the API with the world's full-access key."""

    def call(method: str, path: str, **kwargs):
        headers = {**bearer(world.key), **kwargs.pop("headers", {})}
        return client.open(path, method=method, headers=headers, **kwargs)

    return call

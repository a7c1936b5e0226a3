"""Fixtures in flaskr's style: a fresh app and database per test, a client, a CLI runner."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from discountflow import create_app
from discountflow.auth import services as auth
from discountflow.auth.models import Organization, User
from discountflow.database import utcnow
from discountflow.extensions import db

PASSWORD = "correct horse battery"


def make_app(tmp_path, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.sqlite'}",
        "BCRYPT_ROUNDS": 4,
        "DISCOUNTFLOW_ENV": "staging",
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.create_all()
    return app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.engine.dispose()


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
    return clock


def create_org(app, slug: str = "acme") -> tuple[str, str]:
    """Create an organization with its owner; return (organization id, owner id)."""
    with app.app_context():
        organization = auth.create_organization(
            slug.title(), slug=slug, owner_email=f"owner@{slug}.example", owner_password=PASSWORD
        )
        return organization.id, auth.owner_of(organization).id


def add_member(app, organization_id: str, email: str, role: str = "member") -> str:
    with app.app_context():
        owner = auth.owner_of(db.session.get(Organization, organization_id))
        return auth.add_member(owner, email=email, password=PASSWORD, role=role).id


def generate_key(app, user_id: str, **options) -> str:
    with app.app_context():
        return auth.generate_key(db.session.get(User, user_id), **options)[1]


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

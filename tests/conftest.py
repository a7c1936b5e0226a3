"""Fixtures in flaskr's style: a fresh app and database per test, a client, a CLI runner.

Every test gets its own app and its own database, a copy of a template made once per run (per
pytest-xdist worker) by ``db.create_all()`` (see ``Templates``): copying takes a few
milliseconds where making the schema took about a hundred. A test that asks for ``world`` gets
a copy of a second template instead, holding the approvals world
(``approvals_world.build_world``) built once by an app configured as the ``app`` fixture
configures its own.

``TEST_DATABASE=postgresql`` runs the whole suite on PostgreSQL (``tests/servers.py`` says
where). Tests that are about SQLite itself are marked ``sqlite_only`` and skip there;
``postgresql_only`` ones skip on SQLite. Without a server the run skips, except under ``CI``,
where it fails.
"""

from __future__ import annotations

import copy
import gc
import itertools
import os
import secrets
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

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
_FRESH: set[str] = set()  # databases just copied from a template: no create_all needed
_WORLDS: dict[str, object] = {}  # database URL → the world copied into it (current test)


class Templates:
    """Where each test's database comes from: a template made when first needed.

    "schema" holds the tables (``db.create_all()``), "world" the approvals world as well. On
    SQLite a template is a file in the run's temporary folder, copied for each test. On
    PostgreSQL a database copied from a template costs about 0.3 s of the server's CPU, more
    than most tests: a test's database is therefore given back when the test ends, and the
    next test gets it with exactly the template's rows put back into it (``servers.Contents``;
    one in which a test changed anything besides rows is dropped instead). Databases are named
    for this process, and dropped when the run ends.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.files: dict[str, str] = {}  # SQLite: kind → its template file
        self.contents: dict[str, object] = {}  # PostgreSQL: kind → servers.Contents
        self.made: list[str] = []  # PostgreSQL: every database made by this process
        self.idle: list[str] = []  # PostgreSQL: databases of finished tests
        self.numbers = itertools.count(1)
        self.world = None  # the World in the "world" template, without an app

    def _build(self, kind: str, url: str) -> None:
        """Build the template ``kind`` into the database at ``url`` (a copy of "schema")."""
        app = _build_app(url, {}, create_all=kind == "schema")
        if kind == "world":
            from .approvals_world import build_world

            world = build_world(app)
            world.app = None
            self.world = world
        _close(app)

    def _file(self, kind: str) -> str:
        if kind not in self.files:
            path = str(self.folder / f"{kind}.sqlite")
            if kind != "schema":
                shutil.copyfile(self._file("schema"), path)
            self._build(kind, f"sqlite:///{path}")
            # The file alone is the database: no write-ahead log left beside it.
            connection = sqlite3.connect(path)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
            self.files[kind] = path
        return self.files[kind]

    def _contents(self, kind: str):
        if kind not in self.contents:
            from .servers import Contents, create_database

            if kind == "schema":
                url = create_database(f"discountflow_template_{self.tag}")
                self.made.append(url)
            else:
                url = self.database("schema")
            self._build(kind, url)
            self.contents[kind] = Contents(url)
            if kind != "schema":
                self.give_back(url)
        return self.contents[kind]

    def copy(self, kind: str, url: str) -> None:
        """Make the SQLite file at ``url`` a copy of the template ``kind``."""
        shutil.copyfile(self._file(kind), url.removeprefix("sqlite:///"))
        self.note(kind, url)

    def database(self, kind: str) -> str:
        """A PostgreSQL database holding the template ``kind``, for one test; its URL."""
        from .servers import create_database, drop_database, open_database

        contents = self._contents(kind)
        while self.idle:
            url = self.idle.pop()
            open_database(url)
            if contents.restore(url):
                self.note(kind, url)
                return url
            drop_database(url)  # the test that had it changed more than rows
            self.made.remove(url)
        name = f"discountflow_t_{self.tag}_{next(self.numbers)}"
        url = create_database(name, make_url(self.made[0]).database)
        self.made.append(url)
        if kind != "schema":
            contents.restore(url)
        self.note(kind, url)
        return url

    def give_back(self, url: str) -> None:
        """Take back a PostgreSQL database when its test ends: connections to it, a server
        process's too, are ended and refused until it serves another test."""
        from .servers import close_database

        close_database(url)
        self.idle.append(url)

    def note(self, kind: str, url: str) -> None:
        _FRESH.add(url)
        if kind == "world":
            _WORLDS[url] = self.world

    def drop(self) -> None:
        from .servers import drop_database, end_administration

        for url in self.made:
            drop_database(url)
        end_administration()


_TEMPLATES: Templates | None = None


@pytest.fixture(scope="session", autouse=True)
def _templates(tmp_path_factory):
    """This run's templates (made on first use; dropped at the end)."""
    global _TEMPLATES
    _TEMPLATES = Templates(tmp_path_factory.mktemp("templates"))
    yield
    _TEMPLATES.drop()


def database_url_for(tmp_path, databases: dict[str, str] | None = None, seed="schema") -> str:
    """The database of the test that owns ``tmp_path`` (every app it builds shares it), made
    on first use as a copy of the template ``seed`` ("schema", or "world")."""
    if not ON_POSTGRESQL:
        path = tmp_path / "test.sqlite"
        url = f"sqlite:///{path}"
        if not path.exists():
            _TEMPLATES.copy(seed, url)
        return url
    databases = _DATABASES if databases is None else databases
    key = str(tmp_path)
    if key not in databases:
        databases[key] = _TEMPLATES.database(seed)
    return databases[key]


def make_lasting_app(tmp_path, **overrides):
    """An app for a module-scoped fixture: ``release_app`` closes it (and drops its database)."""
    lasting: dict[str, str] = {}
    app = _build_app(database_url_for(tmp_path, lasting), overrides)
    app.extensions["tests.databases"] = lasting
    return app


def release_app(app) -> None:
    _close(app)
    for url in app.extensions.get("tests.databases", {}).values():
        _TEMPLATES.give_back(url)


MAIL_PUBLIC_URL = "https://approvals.acme.example"  # where the emails' links point


@pytest.fixture
def mailbox():
    """A real SMTP server on loopback (aiosmtpd) keeping what it receives (tests/mailbox.py)."""
    from .mailbox import start_mailbox

    mailbox, controller = start_mailbox()
    yield mailbox
    controller.stop()


def mailing_app(request, tmp_path, mailbox, **overrides):
    """An app sending its emails to ``mailbox``, its links on MAIL_PUBLIC_URL (the world seeded
    with the database when the test asks for it)."""
    if "world" in request.fixturenames:
        database_url_for(tmp_path, seed="world")
    return make_app(tmp_path, MAIL_URL=mailbox.url, PUBLIC_URL=MAIL_PUBLIC_URL, **overrides)


def make_app(tmp_path, **overrides):
    app = _build_app(database_url_for(tmp_path), overrides)
    _APPS.append(app)
    return app


def _build_app(database_url: str, overrides: dict, create_all: bool = True):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-9f4c2e7a1b8d3f6e0a5c9b2d7e4f1a8c",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "BCRYPT_ROUNDS": 4,
        "DISCOUNTFLOW_ENV": "staging",
    }
    config.update(overrides)
    app = create_app(config)
    if config["SQLALCHEMY_DATABASE_URI"] in _FRESH:  # a template's copy has every table
        _FRESH.discard(config["SQLALCHEMY_DATABASE_URI"])
    elif create_all:
        with app.app_context():
            db.create_all()
    return app


def _close(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _close_databases():
    """After each test: close the pools of its apps, give back its PostgreSQL database."""
    yield
    while _APPS:
        _close(_APPS.pop())
    _FRESH.clear()
    _WORLDS.clear()
    for url in _DATABASES.values():
        _TEMPLATES.give_back(url)
    _DATABASES.clear()


def pytest_collection_finish(session):
    """Keep what start-up and collection made (modules, generated cases: most of the heap) out
    of every later garbage collection, and collect less often: each test leaves an app's worth
    of cycles, and scanning the whole heap every 700 allocations took about a fifth of a
    test's time."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's default): one worker per core for the suite, but a run that
    names files or tests stays in this process (its output, ``-s``, ``--pdb`` as usual)."""
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        return 0
    return None  # pytest-xdist's own count


FAST_LOOP = "not slow and not browser"  # the -m of pyproject's addopts


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """In the fast loop, leave a slow or browser test function out before it is collected:
    schemathesis generates a test's cases as it collects it (the two contract tests: about
    9 s of each worker's start), and ``-m`` would only throw them away."""
    result = yield
    marks = getattr(obj, "pytestmark", [])
    names = {mark.name for mark in (marks if isinstance(marks, list) else [marks])}
    if collector.config.option.markexpr == FAST_LOOP and names & {"slow", "browser"}:
        return []
    return result


def pytest_collection_modifyitems(config, items):
    if ON_POSTGRESQL:
        skip = pytest.mark.skip(reason="about SQLite itself (TEST_DATABASE=postgresql)")
        only = "sqlite_only"
    else:
        skip = pytest.mark.skip(reason="about PostgreSQL: runs with TEST_DATABASE=postgresql")
        only = "postgresql_only"
    for item in items:
        if only in item.keywords:
            item.add_marker(skip)
    # The load runs (minutes each) first of all, then the other slow tests, so that the longest
    # start at once rather than after a worker's first half of the suite; pytest-xdist's work
    # stealing then spreads what is left over the workers around them.
    items.sort(
        key=lambda item: (
            only in item.keywords,
            "minutes" not in item.keywords,
            "slow" not in item.keywords,
        )
    )


@pytest.fixture
def app(request, tmp_path):
    if "world" in request.fixturenames:  # its database starts as a copy of the world
        database_url_for(tmp_path, seed="world")
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
def window_start(monkeypatch):
    """The wall clock moved forward to the start of a UTC day (and so of every 5-second, minute,
    15-minute and hour window), running on from there. Failed-attempt budgets count in fixed
    windows and allow a second budget after a window's edge, as documented; a test that counts
    attempts exactly must not straddle one — with the real clock a run of 30 slow checks does,
    a few times in a hundred."""
    import time

    real = time.time
    shift = 86_400 - real() % 86_400
    monkeypatch.setattr(time, "time", lambda: real() + shift)


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
    """The organization 'acme' with people, three approval levels and keys (approvals_world):
    copied with the database when the ``app`` fixture made it, built here otherwise."""
    template = _WORLDS.get(app.config["SQLALCHEMY_DATABASE_URI"])
    if template is None:
        from .approvals_world import build_world

        return build_world(app)
    world = copy.deepcopy(template)
    world.app = app
    return world


@pytest.fixture
def api(client, world):
    """Call the API with the world's full-access key."""

    def call(method: str, path: str, **kwargs):
        headers = {**bearer(world.key), **kwargs.pop("headers", {})}
        return client.open(path, method=method, headers=headers, **kwargs)

    return call


@pytest.fixture
def production(tmp_path):
    """An app in production: https only, public addresses only (webhooks, chat destinations)."""
    return make_app(tmp_path, DISCOUNTFLOW_ENV="production")


@pytest.fixture
def resolving(monkeypatch):
    """Make names resolve as the test says (``resolving["evil.example"] = "10.0.0.7"``, or
    ``"64:ff9b::a00:1"``: IPv6 answers as the resolver gives them, AF_INET6 and a 4-tuple)."""
    import socket

    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host not in names:
            return real(host, port, *args, **kwargs)
        address = names[host]
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr("discountflow.webhooks.safety.socket.getaddrinfo", fake)
    return names

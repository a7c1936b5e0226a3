"""DiscountFlow: a self-hosted discount-approval service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event

MIGRATIONS = Path(__file__).parent / "migrations"


class DiscountFlow(Flask):
    """Flask, remembering which hooks and views are coroutines.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request; with
    the fifteen or so hooks the API, the dashboard and the extensions register, that alone
    measured about 100 µs of an API request. Which function is a coroutine never changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Any, Any] = {}

    def ensure_sync(self, func):  # type: ignore[override]
        try:
            return self._sync[func]
        except KeyError:
            made = self._sync[func] = super().ensure_sync(func)
            return made
        except TypeError:  # an unhashable callable: ask every time
            return super().ensure_sync(func)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: config → extensions → blueprints → error handlers → CLI."""
    app = DiscountFlow(__name__, instance_relative_config=True)

    from .config import load_config

    load_config(app, test_config)
    app.json.sort_keys = False  # keep "object" first, as written

    from .approvals.page_cache import PageCache
    from .auth.verification import KeyCache, KeyRevision
    from .database import (
        announce_changes,
        begin_sqlite_transaction,
        configure_sqlite_connection,
        forget_changes,
    )
    from .extensions import db, limiter, migrate
    from .revisions import OrganizationRevisions, counters_path

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", configure_sqlite_connection)
            event.listen(db.engine, "begin", begin_sqlite_transaction)
        app.extensions["discountflow.key_revision"] = KeyRevision(
            db.engine, app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_KEY_PREFIX"]
        )
        app.extensions["discountflow.organization_revisions"] = OrganizationRevisions(
            counters_path(db.engine, "-orgrev")
        )
    app.extensions["discountflow.key_cache"] = KeyCache()
    app.extensions["discountflow.page_cache"] = PageCache(
        int(app.config["PAGE_CACHE_MB"]) * 1024 * 1024
    )
    # db.session is one for every app in the process: listen once.
    if not event.contains(db.session, "after_commit", announce_changes):
        event.listen(db.session, "after_commit", announce_changes)
        event.listen(db.session, "after_rollback", forget_changes)
    limiter.init_app(app)

    from .ratelimit import sweep_from_one_thread

    if limiter.enabled:
        sweep_from_one_thread(limiter.storage)

    from . import api

    api.init_app(app)

    from . import dashboard

    dashboard.init_app(app)

    from .errors import register_error_handlers

    register_error_handlers(app)

    from . import operations

    operations.init_app(app)

    from .cli import register_cli

    register_cli(app)
    return app

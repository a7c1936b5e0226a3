"""DiscountFlow: a self-hosted discount-approval service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

MIGRATIONS = Path(__file__).parent / "migrations"


class DiscountFlow(Flask):
    """Flask, remembering which hooks and views are coroutines.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request; with
    the fifteen or so hooks the API, the dashboard and the extensions register, that alone
    measured about 100 µs of an API request. Which function is a coroutine never changes.

    Only functions defined once, at the top of a module or a class, are remembered: a function
    made anew for each request (``after_this_request``'s) would make the memory grow without
    end, and is asked about each time instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Any, Any] = {}

    def ensure_sync(self, func):  # type: ignore[override]
        try:
            return self._sync[func]
        except KeyError:
            made = super().ensure_sync(func)
            if "<locals>" not in getattr(func, "__qualname__", "<locals>"):
                self._sync[func] = made
            return made
        except TypeError:  # an unhashable callable: ask every time
            return super().ensure_sync(func)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: config → extensions → features → error handlers → CLI."""
    from . import (
        api,
        approvals,
        audit,
        auth,
        cli,
        dashboard,
        database,
        errors,
        graphql,
        operations,
        organizations,
        products,
        ratelimit,
        webhooks,
    )
    from .config import load_config
    from .extensions import db, limiter, migrate

    app = DiscountFlow(__name__, instance_relative_config=True)
    load_config(app, test_config)
    app.json.sort_keys = False  # keep "object" first, as written

    db.init_app(app)
    database.init_app(app)  # SQLite's settings, write transactions, organization revisions
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    limiter.init_app(app)
    ratelimit.init_app(app)

    api.init_app(app)  # the /v2 pipeline: authentication, limits, OpenAPI
    dashboard.init_app(app)  # the dashboard's shell: sessions, CSRF, layout
    for feature in (organizations, auth, products, approvals, audit, webhooks):
        feature.init_app(app)  # each registers its API, pages and commands
    graphql.init_app(app)  # /v2/graphql: every feature's queries and mutations

    errors.init_app(app)
    operations.init_app(app)
    cli.init_app(app)
    return app

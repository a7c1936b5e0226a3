"""DiscountFlow: a self-hosted discount-approval service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from .config import VERSION as __version__  # noqa: F401 - the package's version, as usual

MIGRATIONS = Path(__file__).parent / "migrations"


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
        docs,
        errors,
        graphql,
        insights,
        notifications,
        operations,
        organizations,
        products,
        ratelimit,
        webhooks,
    )
    from .config import load_config
    from .extensions import db, limiter, migrate

    app = Flask(__name__, instance_relative_config=True)
    load_config(app, test_config)
    app.json.sort_keys = False  # keep "object" first, as written

    db.init_app(app)
    database.init_app(app)  # SQLite's settings and write transactions
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    limiter.init_app(app)
    ratelimit.init_app(app)

    api.init_app(app)  # the /v2 pipeline: authentication, limits, OpenAPI
    dashboard.init_app(app)  # the dashboard's shell: sessions, CSRF, layout
    for feature in (
        organizations,
        auth,
        products,
        approvals,
        audit,
        webhooks,
        notifications,
        insights,
    ):
        feature.init_app(app)  # each registers its API, pages and commands
    graphql.init_app(app)  # /v2/graphql: every feature's queries and mutations
    docs.init_app(app)  # /docs: the documentation, from docs/*.md

    errors.init_app(app)
    operations.init_app(app)
    cli.init_app(app)
    return app

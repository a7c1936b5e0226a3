"""Migrations (Flask-Migrate) own the schema: they build exactly the models' schema, on SQLite
and PostgreSQL, upgrade a database holding data without losing any, and adopt a database that
the first releases created without them."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import inspect, select, text

from discountflow.approvals.models import Approval
from discountflow.extensions import db
from discountflow.organizations.models import Organization

from .conftest import make_app
from .servers import fresh_postgres_database

HEAD = "0015"


def _app_on(tmp_path, database: str):
    # No create_all: the migrations alone build the schema.
    from discountflow import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": database,
            "BCRYPT_ROUNDS": 4,
            "DISCOUNTFLOW_ENV": "staging",
        }
    )
    _APPS.append(app)
    return app


_APPS: list = []  # the apps a test built, whose pooled connections it must close


def _dispose_all() -> None:
    while _APPS:
        with _APPS.pop().app_context():
            db.engine.dispose()


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    _dispose_all()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite_only),
        pytest.param("postgresql", marks=pytest.mark.postgresql_only),
    ]
)
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.sqlite'}"
        return
    with fresh_postgres_database() as url:
        yield url
        _dispose_all()  # before the database is dropped


def _drift(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def _version(app) -> str:
    with app.app_context():
        return db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def test_the_migrations_build_exactly_the_models_schema(tmp_path, database):
    app = _app_on(tmp_path, database)
    with app.app_context():
        upgrade()
    assert _drift(app) == []
    assert _version(app) == HEAD
    with app.app_context():
        upgrade()  # running it again changes nothing
    assert _version(app) == HEAD


def test_upgrading_a_database_holding_data_loses_nothing(tmp_path, database):
    app = _app_on(tmp_path, database)
    with app.app_context():
        upgrade(revision="0001")  # the first release's schema, with its data
        db.session.execute(
            text(
                "INSERT INTO organizations (id, name, slug, created_at) "
                "VALUES ('org_1', 'Acme', 'acme', CURRENT_TIMESTAMP)"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO users (id, organization_id, email, name, password_hash, role, "
                "created_at) VALUES ('usr_1', 'org_1', 'o@acme.example', 'Olive', 'x', 'owner', "
                "CURRENT_TIMESTAMP)"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO approvals (id, organization_id, requested_by_id, title, customer, "
                "currency, status, created_at, updated_at) VALUES ('apr_1', 'org_1', NULL, "
                "'Deal', 'Initech', 'USD', 'draft', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        db.session.commit()
        upgrade()
        organization = db.session.get(Organization, "org_1")
        assert (organization.name, organization.auto_approve_threshold_bps) == ("Acme", 500)
        assert organization.default_validity_days == 30
        approval = db.session.execute(select(Approval)).scalar_one()
        assert (approval.id, approval.title, approval.requested_by_id) == ("apr_1", "Deal", "usr_1")
        assert (approval.amount, approval.metadata_, approval.round) == (0, {}, 0)
        assert [member.email for member in organization.members] == ["o@acme.example"]
    assert _drift(app) == []


def test_a_database_created_before_migrations_is_adopted(tmp_path):
    """The first releases' ``init-db`` ran create_all: such a database is stamped, then upgraded."""
    app = _app_on(tmp_path, f"sqlite:///{tmp_path / 'old.sqlite'}")
    with app.app_context():
        upgrade(revision="0002")  # the tables the last release's create_all made…
        db.session.execute(text("DROP TABLE alembic_version"))  # …which it did not version
        db.session.execute(
            text(
                "INSERT INTO organizations (id, name, slug, created_at, updated_at, "
                "auto_approve_threshold_bps, default_validity_days) VALUES "
                "('org_1', 'Acme', 'acme', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 700, 10)"
            )
        )
        db.session.commit()
        upgrade()
        indexes = {index["name"] for index in inspect(db.engine).get_indexes("approvals")}
        assert "ix_approvals_organization_status_valid" in indexes
        assert db.session.get(Organization, "org_1").auto_approve_threshold_bps == 700
    assert _version(app) == HEAD


def test_a_database_made_by_create_all_today_is_adopted_at_the_head(tmp_path):
    app = make_app(tmp_path)  # create_all, as the test suite does
    runner = app.test_cli_runner()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert _version(app) == HEAD


def test_four_eyes_holds_for_rounds_open_before_the_upgrade(tmp_path, database):
    """0004 reads the audit trail: who created, edited or submitted each undecided approval's
    current round (since its last request for changes or recall) may not decide it."""
    app = _app_on(tmp_path, database)
    with app.app_context():
        upgrade(revision="0003")
        statements = [
            "INSERT INTO organizations (id, name, slug, created_at, updated_at, "
            "auto_approve_threshold_bps, default_validity_days) VALUES "
            "('org_1', 'Acme', 'acme', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 500, 30)",
        ]
        for user in ("usr_owner", "usr_rep", "usr_admin", "usr_old"):
            statements.append(
                "INSERT INTO users (id, organization_id, email, name, password_hash, role, "
                f"created_at) VALUES ('{user}', 'org_1', '{user}@acme.example', '', 'x', "
                f"'{'owner' if user == 'usr_owner' else 'member'}', CURRENT_TIMESTAMP)"
            )
        for approval, status in (("apr_open", "pending"), ("apr_done", "approved")):
            statements.append(
                "INSERT INTO approvals (id, organization_id, requested_by_id, title, customer, "
                "deal_reference, currency, justification, metadata, status, list_amount, amount, "
                "max_line_discount_bps, round, created_at, updated_at) VALUES "
                f"('{approval}', 'org_1', 'usr_rep', 'Deal', 'Initech', '', 'USD', '', '{{}}', "
                f"'{status}', 0, 0, 0, 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        trail = [  # (approval, type, actor): the old round ends with the request for changes
            ("apr_open", "approval.created", "usr_rep"),
            ("apr_open", "approval.updated", "usr_old"),
            ("apr_open", "approval.submitted", "usr_rep"),
            ("apr_open", "approval.changes_requested", "usr_owner"),
            ("apr_open", "approval.updated", "usr_admin"),
            ("apr_open", "approval.submitted", "usr_rep"),
            ("apr_done", "approval.updated", "usr_admin"),
        ]
        for number, (approval, kind, actor) in enumerate(trail):
            statements.append(
                "INSERT INTO events (id, organization_id, approval_id, type, actor_type, "
                "actor_user_id, api_key_id, surface, data, created_at) VALUES "
                f"('evt_{number}', 'org_1', '{approval}', '{kind}', 'user', '{actor}', NULL, "
                f"'api', '{{}}', '2026-01-01 00:00:0{number}')"
            )
        for statement in statements:
            db.session.execute(text(statement))
        db.session.commit()
        upgrade()
        rows = db.session.execute(
            text("SELECT approval_id, user_id FROM approval_participants ORDER BY user_id")
        ).all()
        assert [tuple(row) for row in rows] == [("apr_open", "usr_admin"), ("apr_open", "usr_rep")]
    assert _drift(app) == []


def test_typed_list_prices_become_custom_lines_and_custom_lines_stay_allowed(tmp_path, database):
    """0006: line items saved before the price book keep their typed list price, as custom
    lines naming no product; every existing organization allows custom lines."""
    app = _app_on(tmp_path, database)
    with app.app_context():
        upgrade(revision="0005")
        for statement in (
            "INSERT INTO organizations (id, name, slug, created_at, updated_at, "
            "auto_approve_threshold_bps, default_validity_days) VALUES "
            "('org_1', 'Acme', 'acme', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 500, 30)",
            "INSERT INTO users (id, organization_id, email, name, password_hash, role, "
            "created_at) VALUES ('usr_rep', 'org_1', 'rep@acme.example', '', 'x', 'owner', "
            "CURRENT_TIMESTAMP)",
            "INSERT INTO approvals (id, organization_id, requested_by_id, title, customer, "
            "deal_reference, currency, justification, metadata, status, list_amount, amount, "
            "max_line_discount_bps, round, created_at, updated_at) VALUES "
            "('apr_1', 'org_1', 'usr_rep', 'Deal', 'Initech', '', 'USD', '', '{}', 'approved', "
            "630000, 600000, 476, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO approval_line_items (id, approval_id, position, sku, description, "
            "quantity, unit_list_price, unit_price) VALUES "
            "('li_1', 'apr_1', 1, 'SEAT-PRO', 'Pro seat', 100, 6300, 6000)",
        ):
            db.session.execute(text(statement))
        db.session.commit()
        upgrade()
        line = db.session.execute(
            text(
                "SELECT sku, description, quantity, unit_list_price, unit_price, product_id, "
                "custom FROM approval_line_items"
            )
        ).one()
        assert tuple(line) == ("SEAT-PRO", "Pro seat", 100, 6300, 6000, None, True)
        organization = db.session.get(Organization, "org_1")
        assert organization.custom_line_items == "allowed"
    assert _drift(app) == []
    with app.app_context():
        from discountflow.actors import Actor
        from discountflow.approvals import queries
        from discountflow.approvals.schemas import ApprovalOut

        owner = Actor.for_cli(organization)
        shaped = ApprovalOut.of(queries.get_approval(owner, "apr_1")).model_dump()
        (item,) = shaped["line_items"]
        assert (item["custom"], item["product"], item["unit_list_price"]) == (True, None, 6300)

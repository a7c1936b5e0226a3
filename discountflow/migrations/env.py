"""Alembic's environment for DiscountFlow (Flask-Migrate's, plus two things of ours).

* On SQLite, foreign keys are off while migrations run: batch mode rebuilds a table by copying
  it and dropping the original, and with foreign keys on, dropping a table deletes (cascades to)
  every row that refers to it. They are checked before the transaction commits.
* A database created before migrations existed (``flask init-db`` of the first releases ran
  ``create_all``) is adopted: it is stamped with the revision its tables match, then upgraded.
"""

import logging
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from flask import current_app

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
    except AttributeError:
        return str(get_engine().url).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # on the driver's connection: outside any transaction, or it does nothing
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        adopt_database_created_before_migrations(connection)
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            transactional_ddl=True,  # SQLite and PostgreSQL both roll back DDL on failure
            **conf_args,
        )

        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        if sqlite:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _revision_of_unversioned(inspector) -> str:
    """The newest revision whose schema an unversioned database has, by what it holds."""
    tables = set(inspector.get_table_names())
    users = inspector.get_columns("users") if "users" in tables else []
    if any(column["name"] == "removed_at" for column in users):
        return "0015"
    preferences = (
        inspector.get_columns("notification_preferences")
        if "notification_preferences" in tables
        else []
    )
    if any(column["name"] == "digest_hour" for column in preferences):
        return "0014"
    steps = inspector.get_columns("approval_steps") if "approval_steps" in tables else []
    if any(column["name"] == "started_at" for column in steps):
        return "0013"
    if "notification_destinations" in tables:
        return "0012"
    if "notification_preferences" in tables:
        return "0011"
    organizations = inspector.get_columns("organizations") if "organizations" in tables else []
    if any(column["name"] == "reminder_interval_hours" for column in organizations):
        return "0010"
    if "notifications" in tables:
        return "0009"
    claims = inspector.get_columns("idempotency_keys") if "idempotency_keys" in tables else []
    if any(column["name"] == "work_committed_at" for column in claims):
        return "0008"
    if "webhook_deliveries" in tables:
        return "0007"
    if "products" in tables:
        return "0006"
    if "dashboard_sessions" in tables:
        return "0005"
    if "approval_participants" in tables:
        return "0004"
    if "approval_levels" in tables:
        indexes = {index["name"] for index in inspector.get_indexes("approvals")}
        return "0003" if "ix_approvals_organization_status_valid" in indexes else "0002"
    return "0001"


def adopt_database_created_before_migrations(connection):
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    if "alembic_version" in tables or "organizations" not in tables:
        return
    revision = _revision_of_unversioned(inspector)
    logger.info("Adopting a database created before migrations, at revision %s", revision)
    connection.exec_driver_sql(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
    )
    connection.execute(
        sa.text("INSERT INTO alembic_version (version_num) VALUES (:revision)"),
        {"revision": revision},
    )


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Configuration as an operator sets it: environment variables, instance folder, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from discountflow import create_app
from discountflow.config import ConfigurationError, database_url

ENV_VARS = [
    "DISCOUNTFLOW_ENV",
    "DATABASE_URL",
    "SECRET_KEY",
    "RATELIMIT_STORAGE_URI",
    "API_RATE_LIMIT",
    "AUTH_FAILURE_LIMIT",
    "BCRYPT_ROUNDS",
]


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """A clean process environment, and an instance folder of our own."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path / "i"))
    return monkeypatch


def test_embedded_defaults(environ, tmp_path):
    app = create_app()
    assert app.config["DISCOUNTFLOW_ENV"] == "staging"
    assert (
        app.config["SQLALCHEMY_DATABASE_URI"]
        == f"sqlite:///{tmp_path / 'i' / 'discountflow.sqlite'}"
    )
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert app.config["API_RATE_LIMIT"] == "500 per minute"
    assert app.config["BCRYPT_ROUNDS"] == 12
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_staging_secret_is_generated_once_and_kept(environ, tmp_path):
    first = create_app().config["SECRET_KEY"]
    assert len(first) == 64
    assert (tmp_path / "i" / "secret_key").read_text() == first
    assert (tmp_path / "i" / "secret_key").stat().st_mode & 0o077 == 0
    assert create_app().config["SECRET_KEY"] == first


def test_production_refuses_to_start_without_a_secret(environ):
    environ.setenv("DISCOUNTFLOW_ENV", "production")
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app()
    environ.setenv("SECRET_KEY", "s" * 40)
    app = create_app()
    assert app.config["API_RATE_LIMIT"] == "1000 per minute"
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_environment_variables(environ, tmp_path):
    environ.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'other.sqlite'}")
    environ.setenv("API_RATE_LIMIT", "50 per second")
    environ.setenv("BCRYPT_ROUNDS", "10")
    environ.setenv("AUTH_FAILURE_LIMIT", "5 per minute")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("other.sqlite")
    assert app.config["API_RATE_LIMIT"] == "50 per second"
    assert app.config["BCRYPT_ROUNDS"] == 10
    assert app.config["AUTH_FAILURE_LIMIT"] == "5 per minute"


def test_instance_config_file(environ, tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "config.py").write_text('API_RATE_LIMIT = "42 per minute"\n')
    assert create_app().config["API_RATE_LIMIT"] == "42 per minute"
    environ.setenv("API_RATE_LIMIT", "43 per minute")  # the environment wins
    assert create_app().config["API_RATE_LIMIT"] == "43 per minute"


def test_dotenv_file(environ, tmp_path):
    Path(".env").write_text("API_RATE_LIMIT=44 per minute\n")
    assert create_app().config["API_RATE_LIMIT"] == "44 per minute"


@pytest.mark.parametrize(
    "name, value",
    [("DISCOUNTFLOW_ENV", "prod"), ("BCRYPT_ROUNDS", "many"), ("BCRYPT_ROUNDS", "3")],
)
def test_invalid_values_are_refused(environ, name, value):
    environ.setenv(name, value)
    with pytest.raises(ConfigurationError):
        create_app()


def test_heroku_database_url_is_accepted():
    # Heroku's scheme, and the plain one, get the driver we ship (psycopg 3)
    assert (
        database_url("postgres://u:p@h:5432/d", Path("/x")) == "postgresql+psycopg://u:p@h:5432/d"
    )
    assert database_url("postgresql://u@h/d", Path("/x")) == "postgresql+psycopg://u@h/d"
    assert database_url("postgresql+psycopg2://u@h/d", Path("/x")) == "postgresql+psycopg2://u@h/d"

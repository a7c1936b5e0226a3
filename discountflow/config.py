"""Configuration: defaults, then ``instance/config.py``, then environment variables, then tests.

Every setting read here is listed, with its default, in the README's configuration table.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, find_dotenv
from flask import Flask

ENVIRONMENTS = ("staging", "production")
DEFAULT_API_RATE_LIMITS = {"staging": "500 per minute", "production": "1000 per minute"}

DEFAULTS: dict[str, Any] = {
    "DISCOUNTFLOW_ENV": "staging",
    "SQLALCHEMY_DATABASE_URI": None,  # an SQLite file in the instance folder
    "SQLALCHEMY_ENGINE_OPTIONS": {},  # pool_pre_ping is turned on for server databases
    "BCRYPT_ROUNDS": 12,
    "API_RATE_LIMIT": None,  # per API key; by environment unless overridden
    "AUTH_FAILURE_LIMIT": "20 per minute",  # failed API authentications per client IP
    "LAST_USED_RESOLUTION_SECONDS": 60,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "PAGE_CACHE_MB": 32,  # rendered pages of approvals remembered per process; 0 turns it off
    "ACCESS_LOG": True,  # one JSON line per request on stdout
    "TRUSTED_PROXY_COUNT": 0,  # proxies in front whose X-Forwarded-* headers are trusted
    # The dashboard's session cookie (SESSION_COOKIE_SECURE follows the environment, below).
    "SESSION_COOKIE_NAME": "discountflow_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,  # seconds; signed-in sessions end after 12 hours
    "WTF_CSRF_CHECK_DEFAULT": False,  # checked for the dashboard only (dashboard/__init__.py)
    "WTF_CSRF_TIME_LIMIT": None,  # a form's token lives as long as the session
    "SIGN_IN_LIMIT_PER_ADDRESS": "10 per minute",  # failed sign-ins per client address
    "SIGN_IN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",  # failed sign-ins per email address
    # Flask-Limiter keeps settings on its module-level object between apps built in one
    # process, so every RATELIMIT_* key we rely on is set here, explicitly.
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_STORAGE_OPTIONS": {},
    "RATELIMIT_STRATEGY": "moving-window",
    "RATELIMIT_HEADERS_ENABLED": True,
    "RATELIMIT_HEADER_RETRY_AFTER_VALUE": "delta-seconds",
    "RATELIMIT_KEY_PREFIX": "discountflow",
    "RATELIMIT_SWALLOW_ERRORS": False,
    "RATELIMIT_FAIL_ON_FIRST_BREACH": True,
}


def _boolean(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


# Environment variable → config key, and how to read its text.
_ENVIRONMENT_VARIABLES: dict[str, tuple[str, Any]] = {
    "DISCOUNTFLOW_ENV": ("DISCOUNTFLOW_ENV", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "SECRET_KEY": ("SECRET_KEY", str),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "API_RATE_LIMIT": ("API_RATE_LIMIT", str),
    "AUTH_FAILURE_LIMIT": ("AUTH_FAILURE_LIMIT", str),
    "BCRYPT_ROUNDS": ("BCRYPT_ROUNDS", int),
    "PAGE_CACHE_MB": ("PAGE_CACHE_MB", int),
    "ACCESS_LOG": ("ACCESS_LOG", _boolean),
    "TRUSTED_PROXY_COUNT": ("TRUSTED_PROXY_COUNT", int),
    "SESSION_LIFETIME_SECONDS": ("PERMANENT_SESSION_LIFETIME", int),
    "SIGN_IN_LIMIT_PER_ADDRESS": ("SIGN_IN_LIMIT_PER_ADDRESS", str),
    "SIGN_IN_LIMIT_PER_ACCOUNT": ("SIGN_IN_LIMIT_PER_ACCOUNT", str),
}


class ConfigurationError(RuntimeError):
    """The service refuses to start with this configuration."""


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment and ``test_config``."""
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        # A .env file in the working directory fills in what the real environment leaves out.
        environ = {**dotenv_values(find_dotenv(usecwd=True)), **os.environ}
        for variable, (key, convert) in _ENVIRONMENT_VARIABLES.items():
            value = environ.get(variable)
            if value not in (None, ""):
                try:
                    app.config[key] = convert(value)
                except ValueError as error:
                    raise ConfigurationError(f"{variable}={value!r} is not valid") from error
    else:
        app.config.from_mapping(test_config)
    _finish(app)


def _finish(app: Flask) -> None:
    config = app.config
    environment = config["DISCOUNTFLOW_ENV"]
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"DISCOUNTFLOW_ENV must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}"
        )
    if not 4 <= int(config["BCRYPT_ROUNDS"]) <= 31:
        raise ConfigurationError("BCRYPT_ROUNDS must be between 4 and 31")
    if int(config["PAGE_CACHE_MB"]) < 0:
        raise ConfigurationError("PAGE_CACHE_MB must be 0 or more")
    config["API_RATE_LIMIT"] = config["API_RATE_LIMIT"] or DEFAULT_API_RATE_LIMITS[environment]
    config["SQLALCHEMY_DATABASE_URI"] = database_url(
        config["SQLALCHEMY_DATABASE_URI"], Path(app.instance_path)
    )
    if not config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A server database may restart under us: test a pooled connection before using it,
        # so the first request after an outage does not fail on a dead connection.
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            **config["SQLALCHEMY_ENGINE_OPTIONS"],
        }
    if not config.get("SECRET_KEY"):
        if environment == "production":
            raise ConfigurationError("SECRET_KEY must be set in production")
        config["SECRET_KEY"] = _instance_secret_key(Path(app.instance_path))
    config["SESSION_COOKIE_SECURE"] = environment == "production"


def database_url(url: str | None, instance_path: Path) -> str:
    """Return the SQLAlchemy URL: an instance-folder SQLite file by default; Heroku's form fixed."""
    if not url:
        instance_path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{instance_path / 'discountflow.sqlite'}"
    for scheme in ("postgres://", "postgresql://"):  # Heroku's form; psycopg 3 as the driver
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _instance_secret_key(instance_path: Path) -> str:
    """Return the staging secret kept in the instance folder, creating it on first start."""
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / "secret_key"
    if not path.exists():
        # Write aside, then link into place: two processes starting at once agree on one key.
        draft = instance_path / f".secret_key.{os.getpid()}"
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()

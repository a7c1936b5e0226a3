"""Configuration: defaults, then ``instance/config.py``, then environment variables, then tests.

Every setting is known by its documented name (``SETTINGS``), the same in the environment, in a
``.env`` file and in ``instance/config.py``; each is listed, with its default, in the table of
``docs/guides/configuration.md`` (``tests/test_config.py`` compares the two).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dotenv import dotenv_values, find_dotenv
from flask import Config, Flask
from sqlalchemy.engine import make_url

ENVIRONMENTS = ("staging", "production")
# Rate-limit storages that count in the web process (every other one is shared, like Redis).
IN_PROCESS_STORAGES = ("process://", "memory://")
DEFAULT_API_RATE_LIMITS = {"staging": "500 per minute", "production": "1000 per minute"}
MIN_SECRET_KEY_BYTES = 32
# A production key is random: a key of few different characters (40 × "a") or a short pattern
# repeated (0123456789abcdef twice) is long enough and guessable all the same.
MIN_SECRET_KEY_CHARACTERS = 10  # different characters
MAX_SECRET_KEY_PATTERN = 16  # a pattern this long or shorter, repeated, is refused
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
INSTANCE_MODE = 0o700  # the instance folder holds the database and the secret key
PRIVATE_FILES = 0o077  # umask: files the service creates are its own (0600)

# Flask's and the extensions' settings that every app sets, not the operator.
DEFAULTS: dict[str, Any] = {
    "SQLALCHEMY_ENGINE_OPTIONS": {},  # pool_pre_ping is turned on for server databases
    # The dashboard's session cookie (SESSION_COOKIE_SECURE follows the environment, below).
    "SESSION_COOKIE_NAME": "discountflow_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_CHECK_DEFAULT": False,  # checked for the dashboard only (dashboard/__init__.py)
    "WTF_CSRF_TIME_LIMIT": None,  # a form's token lives as long as the session
    # Flask-Limiter keeps settings on its module-level object between apps built in one
    # process, so every RATELIMIT_* key we rely on is set here, explicitly.
    "RATELIMIT_ENABLED": True,
    # A storage that does not answer raises limits' own StorageError (ratelimit.py).
    "RATELIMIT_STORAGE_OPTIONS": {"wrap_exceptions": True},
    "RATELIMIT_STRATEGY": "moving-window",
    # The documented X-RateLimit-* headers are written by api.py from the limit Flask-Limiter
    # counted (its own would also send Retry-After on every answer).
    "RATELIMIT_HEADERS_ENABLED": False,
    "RATELIMIT_KEY_PREFIX": "discountflow",
    # The API fails open while a shared storage is away (ratelimit.py says why).
    "RATELIMIT_SWALLOW_ERRORS": True,
    "RATELIMIT_FAIL_ON_FIRST_BREACH": True,
}


def _boolean(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _hosts(text: str) -> list[str]:
    return [host.strip() for host in text.split(",") if host.strip()]


@dataclass(frozen=True)
class Setting:
    """A documented setting: the config key it fills, how to read its text, its default."""

    key: str
    read: Callable[[str], Any]
    default: Any


SETTINGS: dict[str, Setting] = {
    "DISCOUNTFLOW_ENV": Setting("DISCOUNTFLOW_ENV", str, "staging"),
    "PUBLIC_URL": Setting("PUBLIC_URL", str, None),  # else each request's own scheme and host
    "DATABASE_URL": Setting("SQLALCHEMY_DATABASE_URI", str, None),  # SQLite in the instance
    "SECRET_KEY": Setting("SECRET_KEY", str, None),  # generated in staging; required in prod
    "RATELIMIT_STORAGE_URI": Setting("RATELIMIT_STORAGE_URI", str, "process://"),
    "API_RATE_LIMIT": Setting("API_RATE_LIMIT", str, None),  # by environment unless set
    "AUTH_FAILURE_LIMIT": Setting("AUTH_FAILURE_LIMIT", str, "20 per minute"),
    "BCRYPT_ROUNDS": Setting("BCRYPT_ROUNDS", int, 12),
    "SESSION_LIFETIME_SECONDS": Setting("PERMANENT_SESSION_LIFETIME", int, 12 * 3600),
    "SIGN_IN_LIMIT_PER_ADDRESS": Setting("SIGN_IN_LIMIT_PER_ADDRESS", str, "10 per minute"),
    "SIGN_IN_LIMIT_PER_ACCOUNT": Setting("SIGN_IN_LIMIT_PER_ACCOUNT", str, "5 per 15 minutes"),
    "ACCESS_LOG": Setting("ACCESS_LOG", _boolean, True),
    "TRUSTED_PROXY_COUNT": Setting("TRUSTED_PROXY_COUNT", int, 0),
    "TRUSTED_HOSTS": Setting("TRUSTED_HOSTS", _hosts, None),  # Flask: any Host is accepted
    "LAST_USED_RESOLUTION_SECONDS": Setting("LAST_USED_RESOLUTION_SECONDS", int, 60),
    "MAX_CONTENT_LENGTH": Setting("MAX_CONTENT_LENGTH", int, 1024 * 1024),
    # Webhooks: private destinations allowed in staging, refused in production unless set.
    "WEBHOOK_ALLOW_PRIVATE": Setting("WEBHOOK_ALLOW_PRIVATE", _boolean, None),
    "WEBHOOK_TIMEOUT_SECONDS": Setting("WEBHOOK_TIMEOUT_SECONDS", float, 10.0),
    "WEBHOOK_POLL_SECONDS": Setting("WEBHOOK_POLL_SECONDS", float, 1.0),
    "WEBHOOK_LEASE_SECONDS": Setting("WEBHOOK_LEASE_SECONDS", float, 60.0),
    "WEBHOOK_CONCURRENCY": Setting("WEBHOOK_CONCURRENCY", int, 16),
    # GET /metrics: off unless a scrape token is set or loopback scrapes are allowed.
    "METRICS_TOKEN": Setting("METRICS_TOKEN", str, None),
    "METRICS_ALLOW_LOOPBACK": Setting("METRICS_ALLOW_LOOPBACK", _boolean, False),
    # Email notifications: the SMTP server (None: each email is written to the log instead).
    "MAIL_URL": Setting("MAIL_URL", str, None),
}
MIN_METRICS_TOKEN_LENGTH = 16


# The service's version: pyproject.toml's, shown in /v2/openapi.json, the GraphQL schema, the
# docs and ``flask --app app version``; CHANGELOG.md says what each one changed.
VERSION: str = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
    "version"
]


class ConfigurationError(RuntimeError):
    """The service refuses to start with this configuration."""


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment and ``test_config``."""
    keep_files_private(Path(app.instance_path))
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping({setting.key: setting.default for setting in SETTINGS.values()})
    if test_config is None:
        # instance/config.py may set any documented setting by its documented name (or, as
        # Python, by the key it fills); a .env file in the working directory fills in what the
        # real environment leaves out; the environment wins.
        from_file = Config(app.instance_path)
        from_file.from_pyfile("config.py", silent=True)
        environ = {**dotenv_values(find_dotenv(usecwd=True)), **os.environ}
        for name, value in from_file.items():
            setting = SETTINGS.get(name)
            app.config[setting.key if setting else name] = value
        for name, setting in SETTINGS.items():
            value = environ.get(name)
            if value not in (None, ""):
                try:
                    app.config[setting.key] = setting.read(value)
                except ValueError as error:
                    raise ConfigurationError(f"{name}={value!r} is not valid") from error
    else:
        app.config.from_mapping(test_config)
    _finish(app)


# libpq's own settings for a PostgreSQL connection (seconds; tcp_user_timeout in ms), and the
# server's for its session: a statement waits at most 5 s for a row another transaction holds
# (as SQLite's busy timeout), and a session left idle inside a transaction for 15 s is ended,
# its locks with it. The fault run found why: a network cut leaves the server's side of a
# connection open, its transaction holding its row locks until TCP gives up (hours), and
# every request needing those rows waited for them, past gunicorn's SIGTERM.
SERVER_TIMEOUTS = {
    "connect_timeout": 5,
    "tcp_user_timeout": 15_000,
    # A query waiting for its answer across a network that went silent: probed after 10 s idle,
    # given up within tcp_user_timeout (libpq's keepalives; the OS default waits 2 hours).
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
SERVER_SESSION_OPTIONS = "-c lock_timeout=5000 -c idle_in_transaction_session_timeout=15000"


def _finish(app: Flask) -> None:
    config = app.config
    environment = config["DISCOUNTFLOW_ENV"]
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"DISCOUNTFLOW_ENV must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}"
        )
    if not 4 <= int(config["BCRYPT_ROUNDS"]) <= 31:
        raise ConfigurationError("BCRYPT_ROUNDS must be between 4 and 31")
    token = config["METRICS_TOKEN"]
    if token is not None and len(str(token)) < MIN_METRICS_TOKEN_LENGTH:
        raise ConfigurationError(
            f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters long"
        )
    config["API_RATE_LIMIT"] = config["API_RATE_LIMIT"] or DEFAULT_API_RATE_LIMITS[environment]
    public_url = config["PUBLIC_URL"]
    if public_url:
        parts = urlsplit(str(public_url))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigurationError(
                f"PUBLIC_URL must be the service's address, like https://approvals.example.com, "
                f"not {public_url!r}"
            )
    config["SQLALCHEMY_DATABASE_URI"] = database_url(
        config["SQLALCHEMY_DATABASE_URI"], Path(app.instance_path)
    )
    if not config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A server database may restart under us: test a pooled connection before using it,
        # so the first request after an outage does not fail on a dead connection.
        # And never wait for ever on a network that drops packets instead of refusing them:
        # connecting gives up after 5 s, and an unanswered write on an open connection after
        # 15 s (libpq's tcp_user_timeout), so a request ends with the documented 503.
        options = {"pool_pre_ping": True, **config["SQLALCHEMY_ENGINE_OPTIONS"]}
        if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            defaults = dict(SERVER_TIMEOUTS)
            if "options" not in make_url(config["SQLALCHEMY_DATABASE_URI"]).query:
                defaults["options"] = SERVER_SESSION_OPTIONS  # (the URL's own options win)
            options["connect_args"] = {**defaults, **options.get("connect_args", {})}
        config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if str(config["RATELIMIT_STORAGE_URI"]).startswith(("redis", "rediss")):
        # The limiter fails open while Redis is away (ratelimit.py); a Redis that does not
        # answer at all must not hold the request either.
        config["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_timeout": 0.5,
            "socket_connect_timeout": 0.5,
            **config["RATELIMIT_STORAGE_OPTIONS"],
        }
    if not config.get("SECRET_KEY"):
        if environment == "production":
            raise ConfigurationError(f"SECRET_KEY must be set in production: {MAKE_SECRET_KEY}")
        config["SECRET_KEY"] = _instance_secret_key(Path(app.instance_path))
    if environment == "production":
        weakness = secret_key_weakness(config["SECRET_KEY"])
        if weakness:
            raise ConfigurationError(
                f"SECRET_KEY {weakness}; production needs a random key of at least "
                f"{MIN_SECRET_KEY_BYTES} bytes. Make one with: {MAKE_SECRET_KEY}"
            )
    config["SESSION_COOKIE_SECURE"] = environment == "production"
    if config["WEBHOOK_ALLOW_PRIVATE"] is None:
        config["WEBHOOK_ALLOW_PRIVATE"] = environment != "production"
    timeout, lease = (
        float(config["WEBHOOK_TIMEOUT_SECONDS"]),
        float(config["WEBHOOK_LEASE_SECONDS"]),
    )
    if not 0 < timeout <= 60:
        raise ConfigurationError("WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 60")
    if lease < 2 * timeout:
        raise ConfigurationError(
            "WEBHOOK_LEASE_SECONDS must be at least twice WEBHOOK_TIMEOUT_SECONDS (a claim must "
            "outlast the delivery it covers)"
        )
    if not 1 <= int(config["WEBHOOK_CONCURRENCY"]) <= 256:
        raise ConfigurationError("WEBHOOK_CONCURRENCY must be from 1 to 256")
    if config["MAIL_URL"]:
        mail_server(str(config["MAIL_URL"]), environment)  # refuses a bad one now, not at send
        if environment == "production" and not public_url:
            raise ConfigurationError(
                "MAIL_URL is set: set PUBLIC_URL too, the address the emails link to "
                "(like https://approvals.example.com)"
            )


MAIL_SCHEMES = {"smtp": 587, "smtps": 465}  # the scheme's default port
PLAIN_SMTP_PORT = 25  # the relay port: plain text, to a loopback host or in staging only
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


@dataclass(frozen=True)
class MailServer:
    """Where and how emails are sent, read from ``MAIL_URL``.

    ``security`` is ``tls`` (``smtps://``: TLS from the first byte), ``starttls`` (``smtp://``,
    required: a server that does not offer it is not sent to) or ``plain`` (``smtp://`` to a
    loopback host, whose traffic never leaves the machine, or to port 25 in staging).
    """

    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    sender: str  # the From address, as written (``Approvals <approvals@example.com>``)

    @property
    def shown(self) -> str:
        """The server as logs and messages name it: never the password."""
        scheme = "smtps" if self.security == "tls" else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port} ({self.security})"


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mail_server(url: str, environment: str) -> MailServer:
    """Read ``MAIL_URL``; ``ConfigurationError`` (which never shows the password) if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError:
        parts, port, host = None, None, ""
    shown = _without_password(url, parts)
    example = "smtp://user:password@mail.example.com:587/?from=approvals@example.com"
    if parts is None or parts.scheme not in MAIL_SCHEMES or not host:
        raise ConfigurationError(f"MAIL_URL must look like {example}, not {shown!r}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"MAIL_URL has a path or fragment it cannot use: {shown!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"from"})
    if unknown:
        raise ConfigurationError(
            f"MAIL_URL takes only ?from=…, not {', '.join(unknown)} (in {shown!r})"
        )
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    sender = query.get("from", [""])[-1].strip()
    if not sender and "@" in username:
        sender = username
    _name, address = parseaddr(sender)
    if not sender or "@" not in address or any(c in sender for c in "\r\n"):
        raise ConfigurationError(
            f"MAIL_URL needs the sender's address: add ?from=approvals@example.com to {shown!r}"
        )
    port = port or MAIL_SCHEMES[parts.scheme]
    if parts.scheme == "smtps":
        security = "tls"
    elif _is_loopback(host):
        security = "plain"
    elif port == PLAIN_SMTP_PORT:
        if environment == "production":
            raise ConfigurationError(
                f"MAIL_URL {shown!r} would send in plain text across the network: in "
                "production use port 587 (STARTTLS) or smtps:// (port 465); plain port 25 "
                "is for a loopback host or staging"
            )
        security = "plain"
    else:
        security = "starttls"
    return MailServer(host, port, security, username, password, sender)


def _without_password(url: str, parts: Any) -> str:
    """``url`` with its password, if any, as ``***``."""
    if parts is None:
        return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)
    if parts.password is None:
        return url
    user, server = parts.netloc.rsplit("@", 1)
    rest = url.split(parts.netloc, 1)[1]
    return f"{parts.scheme}://{user.split(':', 1)[0]}:***@{server}{rest}"


def secret_key_weakness(secret: str | bytes) -> str:
    """What makes ``secret`` a guessable production key ("" if nothing does)."""
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size < MIN_SECRET_KEY_BYTES:
        return f"is {size} bytes"
    different = len(set(secret))
    if different < MIN_SECRET_KEY_CHARACTERS:
        characters = "character" if different == 1 else "characters"
        return (
            f"has only {different} different {characters} (of at least {MIN_SECRET_KEY_CHARACTERS})"
        )
    codes = [ord(each) for each in secret] if isinstance(secret, str) else list(secret)
    steps = [after - before for before, after in zip(codes, codes[1:], strict=False)]
    lengths = range(1, MAX_SECRET_KEY_PATTERN + 1)
    repeated = next((length for length in lengths if _mostly_repeats(codes, length)), None)
    if repeated:
        return f"repeats a pattern of {repeated} characters"
    if any(_mostly_repeats(steps, length) for length in lengths):
        return "runs through characters in order (such as 0123456789abcdefghij)"
    return ""


def _mostly_repeats(values: list[int], length: int) -> bool:
    """Whether three in four values equal the one ``length`` places before (a pattern that is
    repeated, perhaps with a character changed or added here and there)."""
    pairs = len(values) - length
    if pairs < length:
        return False  # not even twice
    same = sum(values[index] == values[index + length] for index in range(pairs))
    return 4 * same >= 3 * pairs


def keep_files_private(instance_path: Path) -> None:
    """Make what the service creates its own: files 0600 (umask), the instance folder 0700."""
    os.umask(PRIVATE_FILES)
    instance_path.mkdir(parents=True, exist_ok=True, mode=INSTANCE_MODE)
    if instance_path.stat().st_mode & 0o777 != INSTANCE_MODE:
        instance_path.chmod(INSTANCE_MODE)


def database_url(url: str | None, instance_path: Path) -> str:
    """Return the SQLAlchemy URL: an instance-folder SQLite file by default; Heroku's form fixed."""
    if not url:
        return f"sqlite:///{instance_path / 'discountflow.sqlite'}"
    for scheme in ("postgres://", "postgresql://"):  # Heroku's form; psycopg 3 as the driver
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _instance_secret_key(instance_path: Path) -> str:
    """Return the staging secret kept in the instance folder, creating it on first start."""
    path = instance_path / "secret_key"
    if not path.exists():
        # Write aside (0600 from the start), then link into place: two processes starting at
        # once agree on one key.
        draft = instance_path / f".secret_key.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()

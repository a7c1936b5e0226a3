"""Configuration as an operator sets it: environment variables, instance folder, refusals."""

from __future__ import annotations

import re
import secrets
import stat
from pathlib import Path

import pytest

from discountflow import create_app
from discountflow.config import SETTINGS, ConfigurationError, database_url

ROOT = Path(__file__).resolve().parents[1]
ENV_VARS = list(SETTINGS)
GOOD_KEY = "Zq8v3LmX0bT7nR4wK1yH6cJ9pF2sD5gAe0Uo"  # (production's rules: tests below)
GUNICORN_VARS = [
    "PORT",
    "HOST",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
    "MALLOC_ARENA_MAX",  # read by glibc as the process starts; gunicorn.conf.py logs it
    "PROMETHEUS_MULTIPROC_DIR",
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
    assert app.config["RATELIMIT_STORAGE_URI"] == "process://"
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
    environ.setenv("SECRET_KEY", GOOD_KEY)
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
    [
        ("DISCOUNTFLOW_ENV", "prod"),
        ("BCRYPT_ROUNDS", "many"),
        ("BCRYPT_ROUNDS", "3"),
        ("METRICS_TOKEN", "short"),
        ("METRICS_ALLOW_LOOPBACK", "maybe"),
    ],
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


# Each documented setting, a valid value as text, and what the config then holds.
SAMPLES = {
    "DISCOUNTFLOW_ENV": ("staging", "DISCOUNTFLOW_ENV", "staging"),
    "PUBLIC_URL": (
        "https://approvals.example.com",
        "PUBLIC_URL",
        "https://approvals.example.com",
    ),
    "DATABASE_URL": (
        "sqlite:////tmp/elsewhere.sqlite",
        "SQLALCHEMY_DATABASE_URI",
        "sqlite:////tmp/elsewhere.sqlite",
    ),
    "SECRET_KEY": ("k" * 40, "SECRET_KEY", "k" * 40),
    "RATELIMIT_STORAGE_URI": ("memory://", "RATELIMIT_STORAGE_URI", "memory://"),
    "API_RATE_LIMIT": ("42 per minute", "API_RATE_LIMIT", "42 per minute"),
    "AUTH_FAILURE_LIMIT": ("7 per minute", "AUTH_FAILURE_LIMIT", "7 per minute"),
    "BCRYPT_ROUNDS": ("5", "BCRYPT_ROUNDS", 5),
    "SESSION_LIFETIME_SECONDS": ("600", "PERMANENT_SESSION_LIFETIME", 600),
    "SIGN_IN_LIMIT_PER_ADDRESS": ("3 per minute", "SIGN_IN_LIMIT_PER_ADDRESS", "3 per minute"),
    "SIGN_IN_LIMIT_PER_ACCOUNT": ("2 per hour", "SIGN_IN_LIMIT_PER_ACCOUNT", "2 per hour"),
    "ACCESS_LOG": ("false", "ACCESS_LOG", False),
    "TRUSTED_PROXY_COUNT": ("1", "TRUSTED_PROXY_COUNT", 1),
    "TRUSTED_HOSTS": ("api.example, localhost", "TRUSTED_HOSTS", ["api.example", "localhost"]),
    "LAST_USED_RESOLUTION_SECONDS": ("5", "LAST_USED_RESOLUTION_SECONDS", 5),
    "MAX_CONTENT_LENGTH": ("2048", "MAX_CONTENT_LENGTH", 2048),
    "WEBHOOK_ALLOW_PRIVATE": ("false", "WEBHOOK_ALLOW_PRIVATE", False),
    "WEBHOOK_TIMEOUT_SECONDS": ("5", "WEBHOOK_TIMEOUT_SECONDS", 5.0),
    "WEBHOOK_POLL_SECONDS": ("0.5", "WEBHOOK_POLL_SECONDS", 0.5),
    "WEBHOOK_LEASE_SECONDS": ("120", "WEBHOOK_LEASE_SECONDS", 120.0),
    "WEBHOOK_CONCURRENCY": ("4", "WEBHOOK_CONCURRENCY", 4),
    "METRICS_TOKEN": ("t" * 32, "METRICS_TOKEN", "t" * 32),
    "METRICS_ALLOW_LOOPBACK": ("true", "METRICS_ALLOW_LOOPBACK", True),
    "MAIL_URL": (
        "smtp://mailer:secret@mail.example.com:587/?from=approvals@example.com",
        "MAIL_URL",
        "smtp://mailer:secret@mail.example.com:587/?from=approvals@example.com",
    ),
}


def test_every_setting_has_a_sample():
    assert set(SAMPLES) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_documented_setting_works_from_the_environment(environ, name):
    text, key, expected = SAMPLES[name]
    environ.setenv(name, text)
    assert create_app().config[key] == expected


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_documented_setting_works_from_the_instance_file(environ, tmp_path, name):
    _, key, expected = SAMPLES[name]
    (tmp_path / "i").mkdir(exist_ok=True)
    (tmp_path / "i" / "config.py").write_text(f"{name} = {expected!r}\n")
    assert create_app().config[key] == expected


def _documented_settings() -> set[str]:
    page = (ROOT / "docs" / "guides" / "configuration.md").read_text()
    table = page.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE))


def test_the_configuration_page_names_every_setting_the_service_reads():
    documented = _documented_settings()
    read = set(SETTINGS) | set(GUNICORN_VARS)
    assert documented == read, (
        f"docs/guides/configuration.md's table: add {sorted(read - documented)}, "
        f"remove {sorted(documented - read)}"
    )
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text()
    for name in GUNICORN_VARS:
        assert f"'{name}'" in gunicorn_conf or f'"{name}"' in gunicorn_conf, name


def test_production_refuses_a_short_secret(environ):
    environ.setenv("DISCOUNTFLOW_ENV", "production")
    environ.setenv("SECRET_KEY", "abc")
    with pytest.raises(ConfigurationError, match="at least 32"):
        create_app()
    environ.setenv("SECRET_KEY", GOOD_KEY[:32])
    assert create_app().config["SESSION_COOKIE_SECURE"] is True


MAKE_ONE = 'Make one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


@pytest.mark.parametrize(
    "secret, weakness",
    [
        ("a" * 40, "has only 1 different character (of at least 10)"),
        ("0123456789abcdef0123456789abcdef", "repeats a pattern of 16 characters"),
        ("0123456789abcdef0123456789abcdef!", "repeats a pattern of 16 characters"),
        ("test-secret-" + "0" * 32, "has only 7 different characters (of at least 10)"),
        ("correct-horse-" * 3, "has only 8 different characters (of at least 10)"),
        (
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "runs through characters in order (such as 0123456789abcdefghij)",
        ),
    ],
)
def test_production_refuses_a_guessable_secret(environ, secret, weakness):
    environ.setenv("DISCOUNTFLOW_ENV", "production")
    environ.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigurationError) as refused:
        create_app()
    assert str(refused.value) == (
        f"SECRET_KEY {weakness}; production needs a random key of at least 32 bytes. {MAKE_ONE}"
    )


def test_production_says_how_to_make_a_missing_secret(environ):
    environ.setenv("DISCOUNTFLOW_ENV", "production")
    with pytest.raises(ConfigurationError) as refused:
        create_app()
    assert str(refused.value) == (
        'SECRET_KEY must be set in production: python -c "import secrets; '
        'print(secrets.token_urlsafe(48))"'
    )


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(48), lambda: secrets.token_hex(32)])
def test_production_starts_with_a_random_secret(environ, make):
    environ.setenv("DISCOUNTFLOW_ENV", "production")
    secret = make()
    environ.setenv("SECRET_KEY", secret)
    assert create_app().config["SECRET_KEY"] == secret


def test_staging_takes_any_secret_as_before(environ):
    environ.setenv("SECRET_KEY", "a" * 40)
    assert create_app().config["SECRET_KEY"] == "a" * 40


def test_the_files_the_service_makes_are_private(environ, tmp_path):
    from discountflow.database import backup_sqlite
    from discountflow.extensions import db

    (tmp_path / "i").mkdir(mode=0o755)  # an instance folder made by hand, readable by all
    app = create_app()
    with app.app_context():
        db.create_all()
        db.session.execute(db.text("CREATE TABLE IF NOT EXISTS t (x)"))  # opens the WAL
        db.session.commit()
        database = Path(db.engine.url.database)
        folder = database.parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        created = [database, folder / "secret_key"]
        created += [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm")]
        for path in created:
            assert path.exists(), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        backup = tmp_path / "backup.sqlite"
        backup_sqlite(str(database), str(backup))
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_trusted_hosts_refuse_another_host(environ):
    environ.setenv("TRUSTED_HOSTS", "api.example")
    client = create_app().test_client()
    assert client.get("/healthz", headers={"Host": "api.example"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400

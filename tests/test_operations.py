"""Health checks, request ids, the access log, trusted proxies, and a rate-limit storage that
is down (the API fails open with a log line; the dashboard's sign-in fails closed)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from discountflow.operations import JsonLines

from .conftest import bearer, create_org, database_url_for, generate_key, make_app
from .dashboard import sign_in

DOWN_REDIS = "redis://127.0.0.1:9/0"  # the discard port: nothing answers there


def access_lines(caplog) -> list[dict]:
    """What each access line of the request says (its JSON: ``operations.JsonLines``)."""
    return [
        json.loads(JsonLines().format(record))
        for record in caplog.records
        if record.name == "discountflow.access"
    ]


def test_healthz_needs_no_key_and_is_never_limited(app):
    client = app.test_client()
    for _ in range(30):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_storage(app):
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "database": "ok",
        "rate_limit_storage": "ok",
    }


def test_readyz_says_which_dependency_is_down(tmp_path):
    app = make_app(tmp_path, RATELIMIT_STORAGE_URI=DOWN_REDIS)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "database": "ok",
        "rate_limit_storage": "unreachable",
    }


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v2/me", "key", 200),
        ("/v2/me", None, 401),
        ("/v2/nowhere", "key", 404),
        ("/sign-in", None, 200),
        ("/healthz", None, 200),
    ],
)
def test_every_response_has_a_request_id(client, key, path, headers, status):
    response = client.get(path, headers=bearer(key) if headers else {})
    assert response.status_code == status
    assert response.headers["Request-Id"].startswith("req_")
    assert len(response.headers["Request-Id"]) == 28


def test_a_sane_request_id_from_the_client_is_kept(client, key):
    kept = client.get("/v2/me", headers={**bearer(key), "Request-Id": "lb-1234.abc"})
    assert kept.headers["Request-Id"] == "lb-1234.abc"
    forwarded = client.get("/healthz", headers={"X-Request-Id": "edge:42"})
    assert forwarded.headers["Request-Id"] == "edge:42"
    for insane in ("with space", "x" * 200, "new\\nline", "ünicode"):
        replaced = client.get("/healthz", headers={"Request-Id": insane})
        assert replaced.headers["Request-Id"].startswith("req_"), insane


def test_the_access_log_is_one_json_line_per_request_without_secrets(client, key, caplog):
    caplog.set_level(logging.INFO, logger="discountflow.access")
    response = client.get("/v2/approvals?limit=3&customer=secret-ish", headers=bearer(key))
    client.get("/v2/me", headers=bearer(key + "x"))
    lines = access_lines(caplog)
    assert len(lines) == 2
    ok, refused = lines
    assert ok["request_id"] == response.headers["Request-Id"]
    assert (ok["method"], ok["path"], ok["status"]) == ("GET", "/v2/approvals", 200)
    assert ok["api_key"] == "key_" + key.split("_")[2]  # the public lookup id
    assert isinstance(ok["duration_ms"], float) and ok["remote_addr"] == "127.0.0.1"
    assert (refused["status"], refused["api_key"]) == (401, None)
    text = caplog.text
    assert key not in text and key.split("_")[3] not in text  # never a key, nor its secret
    assert "secret-ish" not in text  # never the query string


def test_trusted_proxies_give_the_client_address(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="discountflow.access")
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    plain = make_app(tmp_path).test_client()
    plain.get("/healthz", headers=forwarded)
    behind = make_app(tmp_path, TRUSTED_PROXY_COUNT=1).test_client()
    behind.get("/healthz", headers=forwarded)
    assert [line["remote_addr"] for line in access_lines(caplog)] == [
        "127.0.0.1",
        "203.0.113.7",
    ]


def test_the_access_log_can_be_turned_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="discountflow.access")
    make_app(tmp_path, ACCESS_LOG=False).test_client().get("/healthz")
    assert access_lines(caplog) == []


# A process of its own: exactly what the service writes on stdout, with no test harness listening.
REQUESTS = textwrap.dedent(
    """
    import json, sys
    from discountflow import create_app

    database, key = sys.argv[1], sys.argv[2]
    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 40, "SQLALCHEMY_DATABASE_URI": database,
                      "BCRYPT_ROUNDS": 4, "TRUSTED_PROXY_COUNT": 1})
    client = app.test_client()
    bearer = {"Authorization": "Bearer " + key}
    statuses = [
        client.get("/v2/me", headers={**bearer, "X-Forwarded-For": "203.0.113.7"}).status_code,
        client.get("/v2/caf\\u00e9\\"quoted\\\\?customer=secret-ish", headers={
            **bearer, "Request-Id": "lb-1.2", "X-Forwarded-For": "198.51.100.9"}).status_code,
        client.get("/v2/me", headers={"Authorization": "Bearer " + key + "x"}).status_code,
    ]
    print(json.dumps(statuses), file=sys.stderr)
    """
)


def test_access_lines_on_stdout_are_exactly_json_dumps_lines(tmp_path):
    app = make_app(tmp_path)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    done = subprocess.run(
        [sys.executable, "-c", REQUESTS, database_url_for(tmp_path), key],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [200, 404, 401]
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    records = [json.loads(line) for line in lines]
    for line, record in zip(lines, records, strict=True):
        assert line == json.dumps(record, separators=(",", ":"))  # byte for byte, ASCII-escaped
        assert list(record) == [
            "request_id",
            "method",
            "path",
            "status",
            "duration_ms",
            "remote_addr",
            "api_key",
        ]
        assert isinstance(record["duration_ms"], float)
    me, odd, refused = records
    key_id = "key_" + key.split("_")[2]
    assert (me["method"], me["path"], me["status"]) == ("GET", "/v2/me", 200)
    assert (me["remote_addr"], me["api_key"]) == ("203.0.113.7", key_id)
    assert me["request_id"].startswith("req_") and len(me["request_id"]) == 28
    assert (odd["path"], odd["status"], odd["request_id"]) == ('/v2/café"quoted\\', 404, "lb-1.2")
    assert (odd["remote_addr"], odd["api_key"]) == ("198.51.100.9", key_id)
    assert (refused["status"], refused["api_key"]) == (401, None)
    assert key not in done.stdout and key.split("_")[3] not in done.stdout
    assert "secret-ish" not in done.stdout


def test_the_api_fails_open_when_the_limit_storage_is_down(tmp_path, caplog):
    from .conftest import create_org, generate_key

    app = make_app(tmp_path, RATELIMIT_STORAGE_URI=DOWN_REDIS)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    client = app.test_client()
    caplog.set_level(logging.WARNING, logger="discountflow.ratelimit")
    for _ in range(3):
        response = client.get("/v2/me", headers=bearer(key))
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers  # nothing was counted
    refused = client.get("/v2/me", headers=bearer("sk_test_nope"))
    assert refused.status_code == 401  # authentication still holds
    warnings = [r for r in caplog.records if r.name == "discountflow.ratelimit"]
    assert len(warnings) == 1  # one line, not one per request
    assert "serving the API without limits" in warnings[0].getMessage()


def test_sign_in_fails_closed_when_the_limit_storage_is_down(tmp_path):
    from .conftest import create_org

    app = make_app(tmp_path, RATELIMIT_STORAGE_URI=DOWN_REDIS)
    create_org(app)
    response = sign_in(app.test_client(), "owner@acme.example")
    assert response.status_code == 503
    assert "Sign-in is paused" in response.text
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/approvals?starting_after=%00",
        "/v2/events?ending_before=%00&limit=1",
        "/v2/approvals/apr_%00",
        "/v2/approval_levels/%00x",
        "/v2/members/%00",
    ],
)
def test_nul_bytes_in_ids_get_a_4xx_on_every_database(api, path):
    response = api("GET", path)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert set(response.get_json()) >= {"error", "message"}


# --- a database that fails as a request's session is closed ----------------------------------


class FailingRollback:
    """The next rollback on the database fails as one on a connection a cut has reset does
    (``OperationalError: consuming input failed``), once armed; every other one works.

    ``cut()`` fails the next query and every rollback until the session is gone, as a
    connection reset in the middle of a request does (not one the driver knows to be lost).
    """

    def __init__(self, app, monkeypatch) -> None:
        from discountflow.extensions import db

        with app.app_context():
            self.dialect = db.engine.dialect
        self.armed = False
        self.failed = 0
        self.shots = 1  # requests whose closing session fails (after_the_view)
        self.queries = 0  # queries still to fail
        self.rollbacks = 0  # rollbacks still to fail, after the one armed
        real = self.dialect.do_rollback
        real_execute = self.dialect.do_execute
        error = self.dialect.loaded_dbapi.OperationalError

        def do_rollback(dbapi_connection):
            if self.armed or self.rollbacks:
                if self.armed:
                    self.armed = False
                else:
                    self.rollbacks -= 1
                self.failed += 1
                raise error("consuming input failed")
            return real(dbapi_connection)

        def do_execute(cursor, statement, parameters, context=None):
            if self.queries:
                self.queries -= 1
                raise error("consuming input failed")
            return real_execute(cursor, statement, parameters, context)

        monkeypatch.setattr(self.dialect, "do_rollback", do_rollback)
        monkeypatch.setattr(self.dialect, "do_execute", do_execute)

    def cut(self, *, queries: int = 0, rollbacks: int = 3) -> None:
        self.queries, self.rollbacks = queries, rollbacks

    def before_the_view(self, app, path: str, **cut) -> None:
        """Cut the connection of ``path``'s request once its view is about to run."""
        from sqlalchemy import text

        from discountflow.extensions import db

        @app.before_request
        def arm():
            from flask_login import current_user

            if request_path() == path and self.shots:
                self.shots -= 1
                current_user.is_authenticated  # noqa: B018 - the view has read its member
                db.session.execute(text("SELECT 1"))  # a transaction open, as a view's
                self.cut(**cut)

    def after_the_view(self, app, path: str) -> None:
        """Arm it once the view of ``path`` has answered, with a transaction still open (what the
        view read), as Flask's hooks start to run."""
        from sqlalchemy import text

        from discountflow.extensions import db

        @app.after_request
        def arm(response):
            if request_path() == path and self.shots:
                self.shots -= 1
                db.session.execute(text("SELECT 1"))
                self.armed = True
            return response


def request_path() -> str:
    from flask import request

    return request.path


def metric(client, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    for family in text_string_to_metric_families(scrape.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


REQUESTS_TOTAL = "discountflow_http_requests_total"
BACKEND_ERRORS = "discountflow_backend_errors_total"
UNREACHABLE = {
    "error": "service_unavailable",
    "message": "The database is not reachable just now. Try again shortly.",
}


def test_a_rollback_failing_as_the_session_closes_is_a_logged_and_counted_503(
    tmp_path, monkeypatch, caplog
):
    """Found by the fault run: the view of ``GET /v2/approvals`` had answered, then the
    rollback of Flask-SQLAlchemy's teardown failed on a connection the cut had reset, and the
    error escaped Flask as gunicorn's 500, with no access line."""
    app = make_app(tmp_path, METRICS_ALLOW_LOOPBACK=True)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    fault = FailingRollback(app, monkeypatch)
    fault.after_the_view(app, "/v2/approvals")
    client = app.test_client()
    route = {"route": "/v2/approvals", "method": "GET", "status": "503"}
    before = (
        metric(client, REQUESTS_TOTAL, **route),
        metric(client, BACKEND_ERRORS, backend="database"),
    )
    caplog.set_level(logging.INFO, logger="discountflow.access")

    response = client.get("/v2/approvals", headers=bearer(key))

    assert fault.failed == 1
    assert response.status_code == 503
    assert response.get_json() == UNREACHABLE
    assert response.headers["Retry-After"] == "5"
    assert response.headers["X-RateLimit-Limit"] == "500"  # the quota counted it all the same
    [line] = [each for each in access_lines(caplog) if each["path"] == "/v2/approvals"]
    assert (line["method"], line["status"], line["request_id"]) == (
        "GET",
        503,
        response.headers["Request-Id"],
    )
    assert any(
        record.name == "discountflow.operations"
        and record.levelname == "ERROR"
        and "database unavailable on GET /v2/approvals" in record.getMessage()
        for record in caplog.records
    )
    after = (
        metric(client, REQUESTS_TOTAL, **route),
        metric(client, BACKEND_ERRORS, backend="database"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    # The connection is back in the pool (or dropped): the next request is served.
    assert client.get("/v2/approvals", headers=bearer(key)).status_code == 200


def test_a_dashboard_page_whose_session_fails_to_close_is_the_503_page(tmp_path, monkeypatch):
    app = make_app(tmp_path)
    create_org(app)
    fault = FailingRollback(app, monkeypatch)
    fault.after_the_view(app, "/inbox")
    client = app.test_client()
    assert sign_in(client, "owner@acme.example").status_code == 303

    page = client.get("/inbox")

    assert fault.failed == 1
    assert page.status_code == 503
    assert "The database is not reachable just now" in page.text
    assert page.headers["Retry-After"] == "5"
    assert page.headers["Cache-Control"] == "no-store"  # a page's headers stay
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert client.get("/inbox").status_code == 200


MISSING = "/approvals/apr_0Vd7zzzzzzzzzzzzzzzzzz"


def test_a_refusal_whose_rollback_fails_is_still_answered(tmp_path, monkeypatch, caplog):
    """Found by the fault run: a refusal's handler rolls back what the request did, and on a
    connection the cut had reset that rollback failed in turn; the error escaped Flask and
    gunicorn answered its bare 500. The refusal stands, the failure is logged and counted."""
    app = make_app(tmp_path, METRICS_ALLOW_LOOPBACK=True)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    fault = FailingRollback(app, monkeypatch)
    fault.shots = 2
    fault.before_the_view(app, "/v2" + MISSING)
    fault.before_the_view(app, MISSING)
    client = app.test_client()
    before = metric(client, BACKEND_ERRORS, backend="database")
    assert sign_in(client, "owner@acme.example").status_code == 303

    api = client.get("/v2" + MISSING, headers=bearer(key))
    page = client.get(MISSING)

    assert fault.failed >= 2
    assert api.status_code == 404
    assert api.get_json()["error"] == "resource_missing"
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    assert metric(client, BACKEND_ERRORS, backend="database") - before == 2
    assert any(
        "the database failed as the work of GET /v2/approvals/" in record.getMessage()
        for record in caplog.records
    )
    fault.cut(rollbacks=0)  # the database is back
    assert client.get("/v2/approvals", headers=bearer(key)).status_code == 200
    assert client.get("/inbox").status_code == 200


@pytest.mark.parametrize("path", ["/v2/approvals", "/inbox"])
@pytest.mark.parametrize(
    "cut",
    [{"queries": 1}, {"queries": 1000, "rollbacks": 0}],
    ids=["rollbacks-fail", "database-gone"],
)
def test_a_query_cut_is_the_503_whatever_fails_after_it(tmp_path, monkeypatch, path, cut):
    """The view's query fails on the cut connection; then every rollback fails too, or the
    database refuses every query after it (the page must not read its member again): the 503
    that says the database is away, never gunicorn's 500. Found by the fault run, on a page."""
    app = make_app(tmp_path)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    fault = FailingRollback(app, monkeypatch)
    fault.before_the_view(app, path, **cut)
    client = app.test_client()
    assert sign_in(client, "owner@acme.example").status_code == 303

    response = client.get(path, headers=bearer(key) if path.startswith("/v2") else {})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    if path.startswith("/v2"):
        assert response.get_json() == UNREACHABLE
    else:
        assert "The database is not reachable just now" in response.text
    fault.cut(queries=0, rollbacks=0)  # the database is back
    assert client.get(path, headers=bearer(key)).status_code == 200


def test_readyz_on_a_cut_connection_whose_rollback_fails_too_says_unavailable(
    tmp_path, monkeypatch
):
    app = make_app(tmp_path)
    fault = FailingRollback(app, monkeypatch)
    client = app.test_client()
    fault.cut(queries=1)

    response = client.get("/readyz")

    assert fault.failed >= 1
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
    fault.cut(rollbacks=0)  # the database is back
    assert client.get("/readyz").status_code == 200


def test_a_write_whose_work_committed_keeps_its_answer(tmp_path, monkeypatch, caplog):
    """The rollback that failed is that of what the write read after its commit: a 503 would
    have its client create the product a second time."""
    from sqlalchemy import func, select

    from discountflow.extensions import db
    from discountflow.products.models import Product

    app = make_app(tmp_path)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    fault = FailingRollback(app, monkeypatch)
    fault.after_the_view(app, "/v2/products")
    body = {"sku": "SEAT", "name": "Seat", "prices": [{"currency": "USD", "unit_list_price": 100}]}
    caplog.set_level(logging.INFO)

    created = app.test_client().post("/v2/products", json=body, headers=bearer(key))

    assert fault.failed == 1
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["sku"] == "SEAT"
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Product)).scalar_one() == 1
    assert [line["status"] for line in access_lines(caplog)] == [201]
    assert any(
        record.levelname == "ERROR" and "(its 201 stands)" in record.getMessage()
        for record in caplog.records
    )


def test_a_session_that_fails_to_close_outside_a_request_raises_nothing(
    tmp_path, monkeypatch, caplog
):
    """The teardown of any app context (a command, the webhook worker) logs the failure."""
    from sqlalchemy import text

    from discountflow.extensions import db

    app = make_app(tmp_path)
    fault = FailingRollback(app, monkeypatch)
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        fault.armed = True
    assert fault.failed == 1
    assert any(
        record.name == "discountflow.database"
        and "the database failed as its session was closed" in record.getMessage()
        for record in caplog.records
    )
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar_one() == 1

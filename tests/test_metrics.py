"""GET /metrics: Prometheus's text, only for a scraper holding the token or on loopback, counting
what the service does — requests by route template, refusals, bcrypt, the page cache, webhooks,
backend errors — without ever holding a key; and every gunicorn worker counted in one scrape."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from discountflow.auth.keys import CHECKSUM_LENGTH, checksum
from discountflow.extensions import db

from .conftest import PASSWORD, bearer, create_org, generate_key, make_app
from .test_gunicorn import start_gunicorn, stop
from .test_scale_out import redis_url, wait_until_serving  # noqa: F401 - a fixture

TOKEN = "scrape-token-" + "x" * 20


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: (name, sorted labels) → value."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(body: bytes, name: str, **labels) -> float:
    return samples(body).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> bytes:
    response = client.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200, response.data
    return response.data


@pytest.fixture
def metered(tmp_path):
    return make_app(tmp_path, METRICS_TOKEN=TOKEN)


@pytest.fixture
def client(metered):
    return metered.test_client()


def test_without_a_token_or_loopback_metrics_do_not_exist(app):
    client = app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.data == client.get("/no-such-page").data  # the same page as any unknown URL


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_the_token_is_required(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == {
        "error": "invalid_metrics_token",
        "message": "Send the metrics token as a Bearer token.",
    }


def test_an_api_key_is_not_a_metrics_token(metered, client):
    _, owner = create_org(metered)
    key = generate_key(metered, owner)
    assert client.get("/metrics", headers=bearer(key)).status_code == 401


def test_the_scrape_is_prometheus_text(client):
    response = client.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(response.data.decode())}
    assert {
        "discountflow_http_requests",
        "discountflow_http_request_duration_seconds",
        "discountflow_authentication_failures",
        "discountflow_rate_limit_refusals",
        "discountflow_bcrypt_verifications",
        "discountflow_webhook_delivery_attempts",
        "discountflow_backend_errors",
        "discountflow_webhook_outbox_pending",
        "discountflow_webhook_outbox_oldest_due_seconds",
    } <= names


def test_loopback_scrapes_when_allowed(tmp_path):
    app = make_app(tmp_path, METRICS_ALLOW_LOOPBACK=True)
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    ipv6 = client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"})
    assert ipv6.status_code == 200
    for outside in ("10.0.0.7", "192.0.2.1", "::ffff:8.8.8.8"):
        response = client.get("/metrics", environ_base={"REMOTE_ADDR": outside})
        assert response.status_code == 404, outside
    # A proxy on this box relays somebody else's request: not a loopback scrape.
    relayed = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert relayed.status_code == 404
    relayed = client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"})
    assert relayed.status_code == 404


def test_the_scrape_counts_against_no_budget_and_needs_no_key(tmp_path):
    app = make_app(tmp_path, METRICS_TOKEN=TOKEN, API_RATE_LIMIT="2 per minute")
    client = app.test_client()
    for _ in range(5):
        response = client.get("/metrics", headers=bearer(TOKEN))
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


def test_requests_are_counted_by_route_template_method_and_status(metered, client):
    _, owner = create_org(metered)
    key = generate_key(metered, owner)
    before = scrape(client)
    for _ in range(3):
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    assert client.get("/v2/approvals/apr_doesnotexist", headers=bearer(key)).status_code == 404
    assert client.get("/v2/approvals/apr_another", headers=bearer(key)).status_code == 404
    assert client.get("/no/such/page/apr_secret").status_code == 404
    assert client.open("/v2/me", method="BREW", headers=bearer(key)).status_code == 405
    after = scrape(client)

    def grew(**labels) -> float:
        name = "discountflow_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(route="/v2/me", method="GET", status="200") == 3
    assert grew(route="/v2/approvals/<approval_id>", method="GET", status="404") == 2
    assert grew(route="<unmatched>", method="GET", status="404") == 1
    assert grew(route="<unmatched>", method="OTHER", status="405") == 1
    text = after.decode()
    assert "apr_doesnotexist" not in text and "apr_secret" not in text and "BREW" not in text
    count = "discountflow_http_request_duration_seconds_count"
    assert value(after, count, route="/v2/me") - value(before, count, route="/v2/me") == 3
    bucket = "discountflow_http_request_duration_seconds_bucket"
    buckets = value(after, bucket, route="/v2/me", le="+Inf")
    assert buckets >= 3


def test_refused_keys_rate_limits_and_bcrypt_are_counted_without_key_text(tmp_path):
    app = make_app(tmp_path, METRICS_TOKEN=TOKEN, API_RATE_LIMIT="3 per minute")
    client = app.test_client()
    _, owner = create_org(app)
    key = generate_key(app, owner)
    body = key[: -CHECKSUM_LENGTH - 1] + ("A" if key[-CHECKSUM_LENGTH - 1] != "A" else "B")
    wrong = body + checksum(body)  # well-formed, the right lookup id, the wrong secret
    before = scrape(client)
    assert client.get("/v2/me", headers=bearer("sk_test_nonsense")).status_code == 401
    assert client.get("/v2/me", headers=bearer(wrong)).status_code == 401
    for _ in range(3):
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    assert client.get("/v2/me", headers=bearer(key)).status_code == 429
    after = scrape(client)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("discountflow_authentication_failures_total", kind="api_key") == 2
    assert grew("discountflow_rate_limit_refusals_total", limit="api_key") == 1
    # The wrong key and the right one were each checked once; the rest came from memory.
    assert grew("discountflow_bcrypt_verifications_total", kind="api_key") == 2
    text = after.decode()
    assert key not in text and wrong not in text and key.split("_")[2][:12] not in text


def test_failed_sign_ins_are_counted(tmp_path):
    from .dashboard import sign_in

    app = make_app(tmp_path, METRICS_TOKEN=TOKEN)
    create_org(app)
    client = app.test_client()
    before = scrape(client)
    assert sign_in(client, "owner@acme.example", "not the password").status_code == 401
    assert sign_in(client, "owner@acme.example", PASSWORD).status_code in (302, 303)
    after = scrape(client)
    name = "discountflow_authentication_failures_total"
    assert value(after, name, kind="sign_in") - value(before, name, kind="sign_in") == 1
    checks = "discountflow_bcrypt_verifications_total"
    assert value(after, checks, kind="sign_in") - value(before, checks, kind="sign_in") == 2
    assert "owner@acme.example" not in after.decode()


def test_the_outbox_backlog_is_read_at_each_scrape(metered, client):
    _, owner = create_org(metered)
    key = generate_key(metered, owner)
    created = client.post(
        "/v2/webhook_endpoints",
        json={"url": "https://hooks.example/in", "events": ["*"]},
        headers=bearer(key),
    )
    assert created.status_code == 201, created.data
    body = scrape(client)
    pending = value(body, "discountflow_webhook_outbox_pending", state="due")
    # A new read-only key is an event of the organization: one delivery waits for the worker.
    generate_key(metered, owner, read_only=True)
    body = scrape(client)
    assert value(body, "discountflow_webhook_outbox_pending", state="due") == pending + 1
    assert value(body, "discountflow_webhook_outbox_oldest_due_seconds") >= 0


def test_a_database_outage_is_counted_and_the_scrape_still_answers(metered, client, monkeypatch):
    from discountflow import operations

    def unreachable(now):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(operations, "outbox_backlog", unreachable)
    before = scrape(client)
    body = scrape(client)
    name = "discountflow_backend_errors_total"
    assert value(body, name, backend="database") - value(before, name, backend="database") == 1
    assert ("discountflow_webhook_outbox_pending", (("state", "due"),)) not in samples(body)
    with metered.app_context():
        db.session.remove()


def test_a_rate_limit_storage_error_is_counted(metered, client, monkeypatch):
    from discountflow import ratelimit

    monkeypatch.setattr(ratelimit, "_last_warning", ratelimit._last_warning)  # restored after
    before = scrape(client)
    ratelimit.storage_unavailable(ConnectionError("redis is away"))
    after = scrape(client)
    name = "discountflow_backend_errors_total"
    assert value(after, name, backend="redis") - value(before, name, backend="redis") == 1


def test_metrics_are_off_the_request_path_unless_enabled(app):
    from discountflow import operations

    assert operations._measure not in app.after_request_funcs[None]


@pytest.mark.slow
def test_every_gunicorn_worker_is_counted_in_one_scrape(tmp_path, redis_url):  # noqa: F811
    app = make_app(tmp_path)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999999.db").write_bytes(b"stale")  # a process long gone
    process, port = start_gunicorn(
        tmp_path,
        environ={
            "RATELIMIT_STORAGE_URI": redis_url,
            "WEB_CONCURRENCY": "3",
            "METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
        },
    )
    try:
        wait_until_serving(process, port)
        assert not (folder / "counter_999999999.db").exists()

        def me(_):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/me", headers=bearer(key))
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status

        with ThreadPoolExecutor(12) as pool:
            assert set(pool.map(me, range(300))) == {200}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=bearer(TOKEN))
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
    finally:
        stop(process)
    name = "discountflow_http_requests_total"
    assert value(body, name, route="/v2/me", method="GET", status="200") == 300
    files = {path.name.split("_")[-1] for path in folder.glob("counter_*.db")}
    assert len(files) >= 2  # more than one worker answered, and the scrape added them up

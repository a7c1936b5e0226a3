"""Per-key rate limits: the documented numbers, the 429, its headers and their independence."""

from __future__ import annotations

import time

import pytest

from .conftest import bearer, create_org, generate_key, make_app


def exhaust(client, key, count, path="/v2/me"):
    for number in range(count):
        response = client.get(path, headers=bearer(key))
        assert response.status_code == 200, number
    return response


@pytest.mark.parametrize("environment, limit", [("staging", 500), ("production", 1000)])
def test_documented_limit_then_429(tmp_path, environment, limit):
    app = make_app(tmp_path, DISCOUNTFLOW_ENV=environment)
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    client = app.test_client()

    last = exhaust(client, key, limit)
    assert last.headers["X-RateLimit-Limit"] == str(limit)
    assert last.headers["X-RateLimit-Remaining"] == "0"

    refused = client.get("/v2/approvals", headers=bearer(key))
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["error"] == "rate_limit_exceeded"
    assert set(body) == {"error", "message"} and body["message"]
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_every_authenticated_response_carries_the_headers(client, key):
    for path, remaining in (("/v2/me", "499"), ("/v2/approvals", "498")):
        response = client.get(path, headers=bearer(key))
        assert response.headers["X-RateLimit-Limit"] == "500"
        assert response.headers["X-RateLimit-Remaining"] == remaining
        assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    # A refused parameter is still an authenticated, counted request.
    response = client.get("/v2/approvals?limit=0", headers=bearer(key))
    assert response.status_code == 400
    assert response.headers["X-RateLimit-Remaining"] == "497"


def test_unauthenticated_requests_do_not_spend_a_keys_budget(tmp_path):
    app = make_app(tmp_path, API_RATE_LIMIT="3 per minute")
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    client = app.test_client()
    for _ in range(10):
        assert client.get("/v2/me", headers=bearer(key[:-1])).status_code == 401
    exhaust(client, key, 3)
    assert client.get("/v2/me", headers=bearer(key)).status_code == 429


def test_each_key_has_its_own_budget(tmp_path):
    app = make_app(tmp_path, API_RATE_LIMIT="5 per minute")
    _, acme_owner = create_org(app, "acme")
    _, globex_owner = create_org(app, "globex")
    acme_key = generate_key(app, acme_owner)
    acme_read_only = generate_key(app, acme_owner, read_only=True)
    globex_key = generate_key(app, globex_owner)
    client = app.test_client()

    exhaust(client, acme_key, 5)
    assert client.get("/v2/me", headers=bearer(acme_key)).status_code == 429
    for other in (acme_read_only, globex_key):
        response = client.get("/v2/me", headers=bearer(other))
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == "4"


def test_a_new_key_starts_with_a_fresh_budget(tmp_path):
    app = make_app(tmp_path, API_RATE_LIMIT="2 per minute")
    _, owner_id = create_org(app)
    old = generate_key(app, owner_id)
    client = app.test_client()
    exhaust(client, old, 2)
    new = generate_key(app, owner_id)
    assert client.get("/v2/me", headers=bearer(new)).status_code == 200


def test_moving_window_has_no_burst_at_window_edges(tmp_path, monkeypatch):
    """With a fixed window, a client could send 2× the limit around a minute boundary."""
    import limits.storage.memory

    now = [1_800_000_000.0 + 59.0]  # one second before a minute boundary
    monkeypatch.setattr(limits.storage.memory.time, "time", lambda: now[0])
    app = make_app(tmp_path, API_RATE_LIMIT="10 per minute")
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    client = app.test_client()

    exhaust(client, key, 10)
    now[0] += 2  # the next fixed window would have started one second ago
    assert client.get("/v2/me", headers=bearer(key)).status_code == 429
    now[0] += 58.5  # just over 60 seconds after the burst, the budget is back
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200


def test_rate_limit_override(tmp_path):
    app = make_app(tmp_path, API_RATE_LIMIT="7 per second")
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    response = app.test_client().get("/v2/me", headers=bearer(key))
    assert response.headers["X-RateLimit-Limit"] == "7"
    assert response.get_json()["rate_limit"] == {"limit": 7, "window_seconds": 1}

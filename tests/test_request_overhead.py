"""What an API request does on its cheap path is what it did before: the access line on stdout
(written straight to the stream), and the per-key rate limit counted in one storage call."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from .conftest import create_org, database_url_for, generate_key, make_app

ROOT = Path(__file__).resolve().parents[1]

# A process of its own, so that nothing but the service listens to the access log (pytest's
# log capture would add its handler and send every line through ``logging``).
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
        cwd=ROOT,
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


# --- the per-key limit in one storage call -------------------------------------------------------

# Steps between requests (seconds): bursts, pauses, a request exactly one window after another.
STEPS = [0.0] * 7 + [0.5, 1.5, 0.25, 3.0, 0.0, 4.0, 10.0, 0.1, 2.0] * 4 + [9.99, 0.01, 20.0, 0.0]


class FrozenTime:
    def __init__(self, monkeypatch) -> None:
        self.now = 1_800_000_000.25
        monkeypatch.setattr(time, "time", lambda: self.now)  # limits reads time.time too


def compare_with_the_library(monkeypatch, storage_a, storage_b, hit=None) -> None:
    """The library's two calls on storage A, the one call on storage B: the same answers."""
    from limits import parse
    from limits.strategies import MovingWindowRateLimiter

    from discountflow.ratelimit import hit_moving_window

    hit = hit or hit_moving_window
    clock = FrozenTime(monkeypatch)
    library, ours = MovingWindowRateLimiter(storage_a), MovingWindowRateLimiter(storage_b)

    def refuse(*args, **kwargs):
        raise AssertionError("took two storage calls")

    monkeypatch.setattr(storage_b, "acquire_entry", refuse)
    monkeypatch.setattr(storage_b, "get_moving_window", refuse)
    item = parse("5 per 10 seconds")
    refusals = 0
    for number, step in enumerate(STEPS):
        clock.now += step
        allowed = library.hit(item, "api-key", "key_1")
        expected = (allowed, *library.get_window_stats(item, "api-key", "key_1"))
        answer = hit(ours, item, "api-key", "key_1")
        assert answer == pytest.approx(expected, abs=1e-3), number  # Redis keeps 14 digits
        assert answer[0] is expected[0] and answer[2] == expected[2], number
        refusals += not answer[0]
    assert refusals >= 5  # the sequence does reach the limit


def test_one_call_in_memory_answers_as_the_library_does(monkeypatch):
    from limits.storage import MemoryStorage

    from discountflow.ratelimit import sweep_from_one_thread

    library, ours = MemoryStorage(), MemoryStorage()
    sweep_from_one_thread(ours)  # as ratelimit.init_app does for the app's storage
    compare_with_the_library(monkeypatch, library, ours)


def test_one_call_in_redis_answers_as_the_library_does(monkeypatch):
    from limits.storage import RedisStorage

    from .servers import require_redis

    url = require_redis()
    prefix = f"discountflow-test-{uuid.uuid4().hex}"
    library = RedisStorage(url, key_prefix=prefix + "-library")
    ours = RedisStorage(url, key_prefix=prefix + "-ours")
    try:
        compare_with_the_library(monkeypatch, library, ours)
    finally:
        for storage in (library, ours):
            storage.reset()


def test_one_call_in_redis_that_also_reads_a_counter_answers_as_the_library_does(monkeypatch):
    """The script that also reads the key revision (api.py) counts exactly as the library
    does, and reads the counter as RedisCounters would (started at a random value once)."""
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter

    from discountflow.ratelimit import hit_and_read

    from .servers import require_redis

    url = require_redis()
    prefix = f"discountflow-test-{uuid.uuid4().hex}"
    library = RedisStorage(url, key_prefix=prefix + "-library")
    ours = RedisStorage(url, key_prefix=prefix + "-ours")
    counter = f"{prefix}:key-revision"
    revisions = []

    def hit(strategy, item, *identifiers):
        window, values = hit_and_read(strategy, item, identifiers, [counter])
        revisions.append(values[0])
        return window

    try:
        compare_with_the_library(monkeypatch, library, ours, hit)
        assert len(set(revisions)) == 1 and 0 <= revisions[0] < 2**48  # read, never bumped
        ours.get_connection().incr(counter)
        assert hit(MovingWindowRateLimiter(ours), parse("5 per second"), "x")[0] is True
        assert revisions[-1] == revisions[0] + 1
    finally:
        for storage in (library, ours):
            storage.reset()
        library.get_connection().delete(counter)


# --- Flask-Limiter's per-request hooks -----------------------------------------------------------


def test_flask_limiters_hooks_run_off_the_api_only(app, key, monkeypatch):
    """Below /v2 the API counts its own limit: Flask-Limiter's per-request context is never
    built there (its hooks are skipped); the dashboard's requests still go through them."""
    import flask_limiter
    from flask import request

    from .conftest import bearer

    touched = []
    context = flask_limiter.Limiter.context

    def recording(limiter):
        touched.append(request.path)
        return context.fget(limiter)

    monkeypatch.setattr(flask_limiter.Limiter, "context", property(recording))
    client = app.test_client()
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    assert client.get("/v2/nowhere", headers=bearer(key)).status_code == 404
    assert client.get("/v2/me").status_code == 401
    assert touched == []
    assert client.get("/sign-in").status_code == 200
    assert touched and set(touched) == {"/sign-in"}

"""The shipped gunicorn configuration: one process on process://, the warnings, recycling, a real
server."""

from __future__ import annotations

import os
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import create_org, database_url_for, generate_key, make_app

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def load_config(monkeypatch, **environ):
    for name in (
        "RATELIMIT_STORAGE_URI",
        "WEB_CONCURRENCY",
        "PORT",
        "GUNICORN_MAX_REQUESTS",
        "GUNICORN_MAX_REQUESTS_JITTER",
        "MALLOC_ARENA_MAX",
    ):
        monkeypatch.delenv(name, raising=False)
    # The file sets PROMETHEUS_MULTIPROC_DIR in the environment when it is empty: put back after
    # the test, or every server the suite starts later would share this one folder.
    monkeypatch.setitem(os.environ, "PROMETHEUS_MULTIPROC_DIR", "")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_memory_storage_runs_one_process_with_threads(monkeypatch):
    config = load_config(monkeypatch, WEB_CONCURRENCY="4")
    assert config["workers"] == 1
    assert config["worker_class"] == "discountflow.server.JsonErrorWorker"
    assert config["threads"] >= 4
    assert config["bind"] == "0.0.0.0:8000"


def test_shared_storage_follows_web_concurrency(monkeypatch):
    config = load_config(
        monkeypatch,
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379",
        WEB_CONCURRENCY="4",
        PORT="5001",
    )
    assert config["workers"] == 4
    assert config["bind"] == "0.0.0.0:5001"


def test_workers_are_recycled_where_counts_outlive_them_and_others_serve_meanwhile(monkeypatch):
    on_memory = load_config(monkeypatch)
    assert on_memory["max_requests"] == 0  # the counts live in the one worker
    shared = load_config(monkeypatch, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379")
    assert (shared["max_requests"], shared["max_requests_jitter"]) == (500_000, 50_000)
    alone = load_config(
        monkeypatch, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379", WEB_CONCURRENCY="1"
    )
    assert alone["max_requests"] == 0  # nobody would serve while it restarts
    chosen = load_config(
        monkeypatch, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379", GUNICORN_MAX_REQUESTS="1000"
    )
    assert (chosen["max_requests"], chosen["max_requests_jitter"]) == (1000, 100)
    jitter = load_config(
        monkeypatch, GUNICORN_MAX_REQUESTS="1000", GUNICORN_MAX_REQUESTS_JITTER="0"
    )
    assert (jitter["max_requests"], jitter["max_requests_jitter"]) == (1000, 0)


def lines_when_ready(config) -> list[str]:
    """What gunicorn logs when it is ready to serve with this configuration."""
    lines = []

    def log(message, *args):
        lines.append(message % args)

    settings = SimpleNamespace(workers=config["workers"], max_requests=config["max_requests"])
    config["when_ready"](SimpleNamespace(cfg=settings, log=SimpleNamespace(info=log, warning=log)))
    return lines


def test_recycling_on_memory_storage_is_warned_about(monkeypatch):
    lines = lines_when_ready(load_config(monkeypatch))
    assert lines == [
        "workers' malloc arenas: MALLOC_ARENA_MAX=unset (glibc's default: up to 8 per core)"
    ]
    config = load_config(monkeypatch, GUNICORN_MAX_REQUESTS="5000", MALLOC_ARENA_MAX="2")
    info, warning = lines_when_ready(config)
    assert info == "workers' malloc arenas: MALLOC_ARENA_MAX=2"
    assert warning.startswith(
        "WARNING: workers are recycled every 5000 requests with RATELIMIT_STORAGE_URI=process://"
    )
    assert "a key can get up to twice its limit" in warning
    shared = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379", "GUNICORN_MAX_REQUESTS": "5000"}
    assert len(lines_when_ready(load_config(monkeypatch, **shared))) == 1  # no warning


def test_two_servers_sharing_a_metrics_folder_start_together(monkeypatch, tmp_path):
    """Both clean the folder's stale files as they start: the file one lists, the other may
    have removed already (the two-instance test's 'gunicorn exited')."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999998.db").write_bytes(b"stale")
    config = load_config(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(folder))
    listed = os.listdir(folder) + ["counter_999999999.db"]  # gone by the time it is removed
    monkeypatch.setattr(os, "listdir", lambda path: listed)
    logged = []
    server = type("Server", (), {"log": type("Log", (), {"info": lambda *a: logged.append(a)})})
    config["on_starting"](server)
    assert not (folder / "counter_999999998.db").exists()
    assert logged[0][-1] == 1  # one stale file removed by this server


def start_gunicorn(tmp_path, *extra, environ=None, module="app:app"):
    inherited = {name: value for name, value in os.environ.items() if name != "WEB_CONCURRENCY"}
    env = {
        **inherited,
        "DATABASE_URL": database_url_for(tmp_path),
        "SECRET_KEY": "test-secret-9f4c2e7a1b8d3f6e0a5c9b2d7e4f1a8c",
        "BCRYPT_ROUNDS": "4",
        "RATELIMIT_STORAGE_URI": "process://",
        **(environ or {}),
    }
    # The listening socket is bound here and handed to gunicorn (``fd://``): a port only probed
    # for being free could be taken, by the next server a test starts, before gunicorn binds it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    # Output goes to a file: a pipe nobody reads would fill up with the access log and stall
    # the server.
    output = open(tmp_path / f"gunicorn-{port}.log", "w+")  # noqa: SIM115 - closed by stop()
    with listener:
        process = subprocess.Popen(
            [GUNICORN, "-c", "gunicorn.conf.py", "-b", f"fd://{listener.fileno()}", *extra, module],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=(listener.fileno(),),
        )
    process.output = output
    return process, port


def stop(process) -> None:
    """Stop a server this test started; one that outlives SIGTERM by 20 s is killed (a test
    about something else must not leave it, and its open log, to fail a later test)."""
    try:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
    finally:
        process.output.close()


def output_of(process) -> str:
    with open(process.output.name) as output:
        return output.read()


def wait_for_line(process, needle, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = output_of(process)
        if needle in seen:
            return seen
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen in:\n{output_of(process)}")


@pytest.mark.slow
def test_warning_when_several_processes_share_nothing(tmp_path):
    process, _ = start_gunicorn(tmp_path, "-w", "2")
    try:
        output = wait_for_line(process, "WARNING: 2 worker processes")
        assert "RATELIMIT_STORAGE_URI=process://" in output
    finally:
        stop(process)


def get(port, path, key):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.mark.slow
def test_real_server_enforces_the_documented_limit(tmp_path):
    app = make_app(tmp_path)
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    process, port = start_gunicorn(tmp_path)
    try:
        wait_for_line(process, "Booting worker")
        deadline = time.monotonic() + 10
        while True:
            try:
                status, headers = get(port, "/v2/me", key)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200
        for _ in range(499):
            status, headers = get(port, "/v2/approvals", key)
            assert status == 200
        assert headers["X-RateLimit-Remaining"] == "0"
        status, headers = get(port, "/v2/me", key)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        # A key revoked by another process (the CLI) is refused on the very next request.
        runner = app.test_cli_runner()
        assert runner.invoke(args=["keys", "revoke", "--org", "acme", "--yes"]).exit_code == 0
        assert get(port, "/v2/me", key)[0] == 401
    finally:
        stop(process)


def wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def status_of(port: int, path: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_after_an_unhandled_error_each_access_line_is_written_once(tmp_path):
    make_app(tmp_path)  # the schema
    process, port = start_gunicorn(tmp_path, module="tests.broken_app:app")
    try:
        wait_until_serving(port)
        assert status_of(port, "/broken", {"Request-Id": "req-the-failure"}) == 500
        assert status_of(port, "/healthz", {"Request-Id": "req-after-it"}) == 200
        output = wait_for_line(process, "req-after-it")
        time.sleep(0.2)
        output = output_of(process)
        assert output.count("req-after-it") == 1, output
        assert output.count('"request_id":"req-the-failure"') == 1, output
        assert "RuntimeError: a bug" in output  # the error itself is logged, once
    finally:
        stop(process)


def raw(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes; return the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.slow
def test_the_servers_own_refusals_are_json(tmp_path):
    import json

    make_app(tmp_path)
    process, port = start_gunicorn(tmp_path)
    try:
        wait_until_serving(port)
        long_url = b"GET /v2/approvals?customer=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
        big_header = b"GET /v2/me HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n"
        cases = [
            (long_url, 414, "request_too_large"),
            (big_header, 431, "request_too_large"),
            (b"GARBAGE\r\n\r\n", 400, "parameter_invalid"),
            (b"GET /v2/me HTTP/9.9\r\nHost: a\r\n\r\n", 400, "parameter_invalid"),
        ]
        for request, status, code in cases:
            answered, headers, body = raw(port, request)
            assert answered == status, body
            assert headers["Content-Type"] == "application/json"
            refusal = json.loads(body)
            assert set(refusal) == {"error", "message"} and refusal["error"] == code
            assert b"xxx" not in body and b"GARBAGE" not in body  # nothing echoed
        assert status_of(port, "/healthz") == 200  # and the worker serves on
    finally:
        stop(process)


@pytest.mark.slow
def test_a_worker_is_recycled_after_max_requests_and_the_master_replaces_it(tmp_path):
    make_app(tmp_path)
    environ = {"GUNICORN_MAX_REQUESTS": "20", "GUNICORN_MAX_REQUESTS_JITTER": "0"}
    process, port = start_gunicorn(tmp_path, environ=environ)
    try:
        wait_until_serving(port)
        # Each request on its own connection: every one is counted, none waits on keep-alive.
        statuses = [status_of(port, "/healthz") for _ in range(30)]
        output = wait_for_line(process, "Autorestarting worker after current request.")
        assert statuses == [200] * 30  # the requests around the restart waited, none failed
        output = wait_for_line(process, "Booting worker with pid", timeout=1)
        booted = re.findall(r"Booting worker with pid: (\d+)", output)
        assert len(booted) == 2 and booted[0] != booted[1], output
        assert output.count("Autorestarting worker after current request.") == 1, output
        assert "recycled every 20 requests with RATELIMIT_STORAGE_URI=process://" in output
    finally:
        stop(process)

"""The Procfile run locally with honcho: web and webhook worker up on ``$PORT``, the worker's
counters on the web's ``/metrics``, and everything gone after SIGTERM."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .approvals_world import build_world, create
from .conftest import bearer, make_app
from .receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# What the README documents, run as written in an activated virtualenv, after
# `flask --app app db upgrade`. Only web and worker: honcho stops everything when one process
# exits, and release: exits once the migrations are done. honcho hands each process a PORT
# (its own default is 5000), so gunicorn's default of 8000 has to be asked for here.
LOCAL_COMMAND = 'honcho start -p "${PORT:-8000}" web worker'
TOKEN = "procfile-metrics-" + "x" * 20


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(re.fullmatch(r"(\w+):\s*(.+)", line).groups() for line in lines if line)


def test_web_and_worker_count_in_one_metrics_folder_and_release_migrates():
    processes = procfile()
    assert processes["release"] == "flask --app app db upgrade"
    folders = {
        name: re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", processes[name]).group(1)
        for name in ("web", "worker")
    }
    assert folders["web"] == folders["worker"] == "${PROMETHEUS_MULTIPROC_DIR:-instance/metrics}"


def free_port() -> int:
    # Probed, then given up for honcho to hand to gunicorn: another process could take it in
    # between (unlike tests/test_gunicorn.py's fd://, which the Procfile's command cannot use).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def deliveries_counted(body: bytes, outcome: str) -> float:
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "discountflow_webhook_delivery_attempts_total" and (
                sample.labels == {"outcome": outcome}
            ):
                return sample.value
    return 0.0


def processes_marked(marker: str) -> list[int]:
    """The processes whose environment holds ``marker``: honcho and all it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone meanwhile, or not ours
                continue
            if marker.encode() in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.sqlite_only  # it serves its own SQLite box: the PostgreSQL run would repeat it
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes left in /proc")
def test_the_documented_local_command_runs_web_and_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'procfile.sqlite'}"
    marker = f"DISCOUNTFLOW_PROCFILE_TEST={secrets.token_hex(8)}"
    port = free_port()
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "PORT"}
        and not name.startswith(("DATABASE", "WEBHOOK_", "GUNICORN_"))
    }
    env = {
        **inherited,
        # What `. .venv/bin/activate` does: the Procfile calls flask and gunicorn by name.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret-9f4c2e7a1b8d3f6e0a5c9b2d7e4f1a8c",
        "DISCOUNTFLOW_ENV": "staging",
        "BCRYPT_ROUNDS": "4",
        "RATELIMIT_STORAGE_URI": "process://",
        "METRICS_TOKEN": TOKEN,
        "WEBHOOK_POLL_SECONDS": "0.1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        marker.split("=")[0]: marker.split("=")[1],
    }
    upgrade = subprocess.run(
        "flask --app app db upgrade", shell=True, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=url)
    world = build_world(app)
    with Receiver() as receiver:
        created = app.test_client().post(
            "/v2/webhook_endpoints",
            json={"url": receiver.url, "events": ["approval.submitted"]},
            headers=bearer(world.key),
        )
        assert created.status_code == 201, created.get_json()
        create(world, "rep", 20, submit=True)  # one delivery, waiting for the worker

        output = open(tmp_path / "honcho.log", "w+")  # noqa: SIM115 - closed below
        honcho = subprocess.Popen(
            ["sh", "-c", LOCAL_COMMAND],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop as a terminal's Ctrl-C would
        )

        def printed() -> str:
            return (tmp_path / "honcho.log").read_text()

        try:
            deadline = time.monotonic() + 30
            while True:
                assert honcho.poll() is None, printed()
                try:
                    if get(port, "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, printed()
                time.sleep(0.1)
            receiver.wait_for(1, timeout=30)  # the worker is up and delivering
            deadline = time.monotonic() + 10
            while True:  # the attempt is counted once the receiver's answer is recorded
                status, body = get(port, "/metrics", bearer(TOKEN))
                assert status == 200, body
                if deliveries_counted(body, "succeeded") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert deliveries_counted(body, "succeeded") == 1, body.decode()
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(30)
                # The shell may end before honcho, which then still writes what its processes
                # print as they stop: read the log once every process of the run is gone (CI
                # once read it a moment after the shell ended, without the worker's last line).
                deadline = time.monotonic() + 30
                while left := processes_marked(marker):
                    assert time.monotonic() < deadline, f"still running: {left}\n{printed()}"
                    time.sleep(0.1)
            finally:
                output.close()
    seen = printed()
    assert f"Listening at: http://127.0.0.1:{port}" in seen, seen
    assert "metrics: counting in instance/metrics" in seen, seen
    assert "release" not in seen, seen
    assert "SIGTERM received" in seen, seen
    assert "webhook worker: stopping after the deliveries in hand" in seen, seen

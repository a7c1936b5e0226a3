"""The webhook worker as it runs: a separate process, killed with SIGKILL mid-delivery (nothing
is lost), two of them on PostgreSQL sharing 1,000 deliveries (each delivered exactly once), its
log lines, and the commands around it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from discountflow.database import utcnow
from discountflow.extensions import db
from discountflow.products.csv_files import COLUMNS, import_products
from discountflow.webhooks.models import WebhookDelivery
from discountflow.webhooks.pacing import Due, Pacer

from .approvals_world import build_world, create
from .conftest import bearer, make_app
from .receiver import Answer, Receiver
from .servers import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[1]


def _worker(app, *args: str, **settings: str) -> subprocess.Popen:
    """``flask --app app webhooks work`` as its own process, on the test's database."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "DATABASE"))},
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "DISCOUNTFLOW_ENV": "staging",
        "WEBHOOK_POLL_SECONDS": "0.1",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "webhooks", "work", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _endpoint(app, world, receiver, events: list[str]) -> dict:
    client = app.test_client()
    created = client.post(
        "/v2/webhook_endpoints",
        json={"url": receiver.url, "events": events},
        headers=bearer(world.key),
    ).get_json()
    receiver.secrets.append(created["secret"])
    return created


def _deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.execute(select(WebhookDelivery)).scalars())


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_nothing(tmp_path):
    app = make_app(tmp_path)
    world = build_world(app)
    hold = threading.Event()
    with Receiver() as receiver:
        receiver.answers = lambda n: Answer(200, hold=hold) if n == 1 else Answer(200)
        _endpoint(app, world, receiver, ["approval.submitted"])
        create(world, "rep", 20, submit=True)
        settings = {"WEBHOOK_TIMEOUT_SECONDS": "1", "WEBHOOK_LEASE_SECONDS": "2"}
        first = _worker(app, **settings)
        try:
            (arrived,) = receiver.wait_for(1, timeout=60)
            os.kill(first.pid, signal.SIGKILL)  # mid-delivery: the receiver has not answered
        finally:
            hold.set()
            first.kill()
            first.communicate(timeout=10)
        (delivery,) = _deliveries(app)
        assert (delivery.status, delivery.attempts) == ("pending", 0)  # not recorded as sent
        assert delivery.claim is not None  # claimed, until the lease ends
        second = _worker(app, **settings)
        try:
            again = receiver.wait_for(2, timeout=60)[1]
        finally:
            second.send_signal(signal.SIGTERM)  # finishes the delivery in hand, then stops
            out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert again.id == arrived.id  # the same event: receivers dedupe by webhook-id
        assert again.verified_with == receiver.secrets
        time.sleep(0.2)
        (delivery,) = _deliveries(app)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "succeeded",
            1,
            200,
        )
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert lines[-1]["delivery"] == delivery.id and lines[-1]["result"] == "succeeded"
        assert set(lines[-1]) == {
            "delivery",
            "endpoint",
            "event_type",
            "attempt",
            "result",
            "status",
            "error",
            "duration_ms",
        }
        assert receiver.secrets[0] not in out + err and arrived.body not in out + err


@pytest.mark.slow
@pytest.mark.postgresql_only
def test_two_workers_on_postgresql_deliver_1000_events_exactly_once(tmp_path):
    with fresh_postgres_database() as url:
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=url)
        world = build_world(app)
        with Receiver() as receiver:
            _endpoint(app, world, receiver, ["product.created"])
            rows = [f"P-{n:04d},Product {n},,USD,{n + 1}.00,true" for n in range(1000)]
            with app.app_context():
                text = io.StringIO(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
                import_products(world.actor("admin"), text)
            assert len(_deliveries(app)) == 1000
            workers = [_worker(app, "--burst") for _ in range(2)]
            outputs = [worker.communicate(timeout=300) for worker in workers]
            for worker, (_, err) in zip(workers, outputs, strict=True):
                assert worker.returncode == 0, err
            received = receiver.received
            ids = [each.id for each in received]
            assert len(ids) == 1000 and len(set(ids)) == 1000  # each exactly once
            assert all(each.verified_with for each in received)
            per_worker = [
                sum(1 for line in out.splitlines() if '"result":"succeeded"' in line)
                for out, _ in outputs
            ]
            assert sum(per_worker) == 1000 and min(per_worker) > 0  # both took a share
            deliveries = _deliveries(app)
            assert {(d.status, d.attempts) for d in deliveries} == {("succeeded", 1)}
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_status_command_prints_the_backlog(app, world, runner):
    with Receiver() as receiver:
        _endpoint(app, world, receiver, ["approval.*"])
        create(world, "rep", 20, submit=True)
        result = runner.invoke(args=["webhooks", "status"])
        assert result.exit_code == 0, result.output
        assert "due now:             2" in result.output
        burst = runner.invoke(args=["webhooks", "work", "--burst"])
        assert burst.exit_code == 0, burst.output
        assert len(receiver.received) == 2
        result = runner.invoke(args=["webhooks", "status"])
        assert "due now:             0" in result.output
        assert "succeeded, last 24h: 2" in result.output


STARTED = re.compile(r"^\S+ \S+ INFO discountflow\.webhooks\.worker: (webhook worker: started.*)$")


def test_the_worker_says_once_that_it_started_with_its_settings(app):
    worker = _worker(app, WEBHOOK_CONCURRENCY="8", WEBHOOK_POLL_SECONDS="1")
    try:
        first = worker.stderr.readline().rstrip("\n")  # it waits for work: the line came first
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert STARTED.match(first).group(1) == (
        "webhook worker: started; 8 deliveries at a time, polling every 1 s "
        "(Ctrl+C or SIGTERM to stop)"
    )
    assert out == ""  # stdout holds the deliveries' JSON lines only
    assert [line for line in err.splitlines() if "started" in line] == []  # said once
    assert err.splitlines()[-1].endswith("webhook worker: stopping after the deliveries in hand")


def test_a_burst_worker_says_when_it_stops(app):
    worker = _worker(app, "--burst")  # WEBHOOK_POLL_SECONDS=0.1, and the default concurrency
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    lines = err.splitlines()
    assert STARTED.match(lines[0]).group(1) == (
        "webhook worker: started; 16 deliveries at a time, polling every 0.1 s "
        "(until nothing is due)"
    )
    assert lines[1:] == ["Made 0 delivery attempts."]
    assert out == ""


# --- no receiver holds anyone else's deliveries -------------------------------------------------


class Tarpit:
    """A receiver that accepts every connection, reads the request and never answers; it
    counts the requests it holds at once, by path (``/t0`` …: one per endpoint)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.held: Counter[str] = Counter()
        self.most: Counter[str] = Counter()  # the most held at once, by path
        self.most_in_all = 0
        self.changed = threading.Condition()
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            self.connections.append(connection)
            thread = threading.Thread(target=self._hold, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _hold(self, connection: socket.socket) -> None:
        head, path = b"", None
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break  # the sender gave up
                head += chunk
                if path is None and b"\r\n" in head:
                    path = head.split(b" ", 2)[1].decode()
                    with self.changed:
                        self.held[path] += 1
                        self.most[path] = max(self.most[path], self.held[path])
                        self.most_in_all = max(self.most_in_all, sum(self.held.values()))
                        self.changed.notify_all()
        except OSError:
            pass
        finally:
            if path is not None:
                with self.changed:
                    self.held[path] -= 1

    def wait_for_held(self, count: int, timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: sum(self.held.values()) >= count, timeout):
                raise AssertionError(f"the tarpit held {sum(self.held.values())} of {count}")

    def __enter__(self) -> Tarpit:
        thread = threading.Thread(target=self._accept, daemon=True)
        self.threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.threads[0].join(5)
        self.server.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self.threads:
            thread.join(5)


@pytest.mark.slow
def test_six_tarpit_endpoints_do_not_hold_another_organizations_delivery(tmp_path):
    """The finding: one organization's endpoints at a receiver that never answers (any public
    https host can be one) held every other organization's deliveries for minutes."""
    app = make_app(tmp_path)
    attacker = build_world(app)
    victim = build_world(app, "globex")
    client = app.test_client()
    with Tarpit() as tarpit, Receiver() as receiver:
        for number in range(6):
            created = client.post(
                "/v2/webhook_endpoints",
                json={"url": f"{tarpit.url}/t{number}", "events": ["*"]},
                headers=bearer(attacker.key),
            )
            assert created.status_code == 201
        create(attacker, "rep", 20, submit=True)
        assert len(_deliveries(app)) == 15 + 12  # the endpoints' own creations, the approval's
        hook = _endpoint(app, victim, receiver, ["product.*"])
        # The shipped timeout (10 s) and poll (1 s).
        worker = _worker(app, WEBHOOK_POLL_SECONDS="1", WEBHOOK_TIMEOUT_SECONDS="10")
        try:
            tarpit.wait_for_held(1, timeout=60)  # the worker is at the tarpit
            # Queued just after the worker last looked (it looks every poll, 1 s, from the
            # moment it started these): the longest wait there is.
            time.sleep(1.1)
            queued = time.monotonic()
            test = client.post(
                f"/v2/webhook_endpoints/{hook['id']}/test", headers=bearer(victim.key)
            )
            assert test.status_code == 201
            (ping,) = receiver.wait_for(1, timeout=5)
            waited = time.monotonic() - queued
        finally:
            worker.kill()
            worker.communicate(timeout=30)
        assert ping.json["type"] == "ping" and ping.verified_with == receiver.secrets
        print(f"another organization's delivery sent {waited:.2f} s after it was due")
        assert waited <= 2.0, f"sent {waited:.2f} s after it was due"
        # Shared out: at most 2 at once to one endpoint, 8 (half the slots) for one organization.
        assert max(tarpit.most.values()) == 2 and tarpit.most_in_all == 8
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- the pacer: how one worker shares its slots out ------------------------------------------


def test_the_pacer_takes_organizations_in_turn_within_every_limit():
    now = utcnow()
    pacer = Pacer(6)  # 3 per organization
    due = [Due(f"d{n}", f"e{n % 3}", "tarpit") for n in range(12)] + [Due("v1", "ev", "victim")]
    assert [each.delivery_id for each in pacer.pick(due, now)] == ["d0", "v1", "d1", "d2"]
    one_endpoint = [Due(f"d{n}", "e0", "org") for n in range(10)]
    assert [each.delivery_id for each in Pacer(16).pick(one_endpoint, now)] == ["d0", "d1"]
    for each in pacer.pick(due, now):
        pacer.started(each)
    assert pacer.free() == 2
    assert pacer.held_back(now) == ([], ["tarpit"])
    more = [Due("d12", "e0", "tarpit"), Due("v2", "ev", "victim"), Due("v3", "ev", "victim")]
    assert [each.delivery_id for each in pacer.pick(more, now)] == ["v2"]  # 2 to ev at most


def test_the_pacer_pauses_an_endpoint_after_5_failures_then_tries_it_once():
    now = utcnow()
    pacer = Pacer(16)
    attempt = Due("d", "e0", "org")
    ends = []
    for _ in range(5):
        pacer.started(attempt)
        ends.append(pacer.finished(attempt, False, now))
    assert ends == [None, None, None, None, now + timedelta(seconds=30)]
    assert pacer.room("e0", now) == 0 and pacer.held_back(now) == (["e0"], [])
    later = now + timedelta(seconds=30)
    assert pacer.room("e0", later) == 1  # half-open
    pacer.started(attempt)
    assert pacer.finished(attempt, False, later) == later + timedelta(seconds=60)
    pacer.started(attempt)
    assert pacer.finished(attempt, True, later + timedelta(seconds=60)) is None
    assert pacer.room("e0", later) == 2 and pacer.circuits == {}
    assert pacer.free() == 16

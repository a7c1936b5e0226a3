"""The webhook worker as it runs: a separate process, killed with SIGKILL mid-delivery (nothing
is lost), two of them on PostgreSQL sharing 1,000 deliveries (each delivered exactly once), its
log lines, and the commands around it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from discountflow.extensions import db
from discountflow.products.csv_files import COLUMNS, import_products
from discountflow.webhooks.models import WebhookDelivery

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

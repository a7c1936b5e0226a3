"""The notification worker as it runs: a separate process (``flask --app app webhooks work``),
killed with SIGKILL mid-batch. What the mail server had accepted is not sent again, what it had
not is sent after the restart, and each email arrives exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from discountflow.extensions import db
from discountflow.notifications.models import Notification

from .approvals_world import create
from .conftest import mailing_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox)


def _worker(app) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "DATABASE"))},
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "DISCOUNTFLOW_ENV": "staging",
        "MAIL_URL": app.config["MAIL_URL"],
        "PUBLIC_URL": app.config["PUBLIC_URL"],
        "WEBHOOK_POLL_SECONDS": "0.1",
        # The SMTP timeout outlasts any delay before the kill (a busy machine), and the lease
        # (at least twice the timeout) is what the restarted worker waits out.
        "WEBHOOK_LEASE_SECONDS": "10",
        "WEBHOOK_TIMEOUT_SECONDS": "5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "webhooks", "work"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(app) -> list[Notification]:
    with app.app_context():
        return list(db.session.execute(select(Notification)).scalars())


def _wait_until(condition, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.sqlite_only  # the process and its claims are the same on PostgreSQL
def test_a_worker_killed_mid_batch_sends_the_rest_and_nothing_twice(app, world, mailbox):
    for discount in (20, 21, 22):
        create(world, "rep", discount, submit=True)  # each: the two managers
    assert len(_rows(app)) == 6
    release = threading.Event()
    mailbox.stall = {3: release}  # the third email: the server has not accepted it yet
    first = _worker(app)
    try:
        assert mailbox.stalled.wait(60)
        os.kill(first.pid, signal.SIGKILL)  # mid-batch, mid-send
    finally:
        first.kill()
        first.communicate(timeout=10)
        release.set()
    before = [each.message["Message-ID"] for each in mailbox.received]
    assert len(before) == 2
    statuses = Counter(each.status for each in _rows(app))
    assert statuses == {"sent": 2, "pending": 4}  # recorded one by one, as they were accepted
    second = _worker(app)
    try:
        _wait_until(lambda: len(mailbox.received) >= 6)
        _wait_until(lambda: Counter(each.status for each in _rows(app)) == {"sent": 6})
    finally:
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    ids = [each.message["Message-ID"] for each in mailbox.received]
    assert len(ids) == len(set(ids)) == 6  # each email exactly once
    assert ids[:2] == before
    by_recipient = Counter(address for each in mailbox.received for address in each.rcpt_tos)
    assert by_recipient == {"manager@acme.example": 3, "manager2@acme.example": 3}
    assert sorted(each.attempts for each in _rows(app)) == [1] * 6

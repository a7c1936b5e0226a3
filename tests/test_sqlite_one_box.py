"""One box on SQLite: several processes writing at once, a process killed mid-write, and an
online backup while the service writes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from discountflow.approvals.models import Approval, Comment

from .approvals_world import build_world
from .conftest import make_app

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

# A worker process: creates approvals, comments on each (read, then write) and submits it
# (read, then write), printing each approval's id once its last write is committed.
WORKER = textwrap.dedent(
    """
    import sys
    from discountflow import create_app
    from discountflow.approvals import services
    from discountflow.approvals.schemas import ApprovalCreate
    from discountflow.actors import Actor, Surface
    from discountflow.organizations.models import User
    from discountflow.extensions import db

    database, user_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": database,
                      "BCRYPT_ROUNDS": 4, "ACCESS_LOG": False})
    body = {"title": "Deal", "customer": "Initech", "currency": "USD", "line_items": [
        {"description": "Seats", "quantity": 2, "unit_list_price": 10000, "unit_price": 9000}]}
    with app.app_context():
        n = 0
        while count == 0 or n < count:
            actor = Actor.for_user(db.session.get(User, user_id), Surface.CLI)
            view = services.create_approval(actor, ApprovalCreate.model_validate(body))
            services.add_comment(actor, view.approval.id, "Please")
            services.submit(actor, view.approval.id)
            print(view.approval.id, flush=True)
            db.session.remove()
            n += 1
    """
)


def _worker(database: str, user_id: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, database, user_id, str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _counts(app) -> tuple[int, int, int]:
    from discountflow.extensions import db

    with app.app_context():
        approvals = db.session.scalar(select(func.count()).select_from(Approval))
        pending = db.session.scalar(
            select(func.count()).select_from(Approval).where(Approval.status == "pending")
        )
        comments = db.session.scalar(select(func.count()).select_from(Comment))
        return approvals, pending, comments


def test_four_processes_read_then_write_at_once_without_locks_or_lost_writes(tmp_path):
    app = make_app(tmp_path)
    world = build_world(app)
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    workers = [_worker(database, world.people[who], 25) for who in ("rep", "rep2", "cfo", "vp")]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "database is locked" not in err
        assert len(out.split()) == 25
    assert _counts(app) == (100, 100, 100)


def test_a_process_killed_mid_write_leaves_a_sound_database_with_every_acknowledged_write(
    tmp_path,
):
    app = make_app(tmp_path)
    world = build_world(app)
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    worker = _worker(database, world.people["rep"], 0)  # writes until killed
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 15 and time.monotonic() < deadline:
        line = worker.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate()
    assert len(acknowledged) == 15, worker.stderr
    path = database.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        stored = {row[0] for row in connection.execute("SELECT id FROM approvals")}
    finally:
        connection.close()
    assert set(acknowledged) <= stored


def test_an_online_backup_is_consistent_while_the_service_writes(tmp_path):
    app = make_app(tmp_path)
    world = build_world(app)
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    worker = _worker(database, world.people["rep"], 0)
    try:
        while len(worker.stdout.readline().split()) == 0:  # writing has begun
            pass
        target = tmp_path / "backup.sqlite"
        result = app.test_cli_runner().invoke(args=["backup", str(target)])
        assert result.exit_code == 0, result.output
        assert "Backed up" in result.output
    finally:
        worker.kill()
        worker.communicate()
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        approvals = copy.execute("SELECT count(*) FROM approvals").fetchone()[0]
        # every approval in the copy is whole: its line items and comment came with it
        assert copy.execute("SELECT count(*) FROM approval_line_items").fetchone()[0] == approvals
        assert approvals >= 1
    finally:
        copy.close()
    restored = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{target}")
    assert _counts(restored)[0] == approvals


def test_backup_refuses_a_database_that_is_not_an_sqlite_file(tmp_path):
    app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI="sqlite://")
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "x.sqlite")])
    assert result.exit_code != 0
    assert "pg_dump" in result.output

"""What webhooks cost: the outbox on the request path, and the worker's delivery rate.

Run from the repository root:
``python bench/webhooks.py [--seconds 3] [--pairs 7] [--json PATH]``

1. ``POST /v2/approvals/{id}/approve`` through the shipped gunicorn configuration (SQLite), for
   an organization with 3 enabled endpoints subscribed to everything, against the same for an
   organization with none — alternating pairs (``bench/harness.py``), each request approving
   another pending approval (each approve writes two events: six deliveries with the
   endpoints). Target ≥ 0.90: the outbox costs the request almost nothing.
2. The worker (``flask --app app webhooks work --burst``, one process, as on SQLite) sending
   pending deliveries to a receiver on loopback: deliveries per second, several rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.approvals_list import RATE_LIMIT  # noqa: E402
from bench.auth_overhead import organization_with_keys  # noqa: E402

TARGET = harness.Target(0.90)
ENDPOINTS = 3
NAME = f"approve with {ENDPOINTS} webhook endpoints vs none"
MARGIN = 64  # ids skipped after each run: requests wrk sent but had not counted when it stopped

WRK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do ids[#ids + 1] = line end
local key = os.getenv("BENCH_KEY")
local n = tonumber(os.getenv("BENCH_OFFSET"))
request = function()
  n = n + 1
  local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
  return wrk.format("POST", "/v2/approvals/" .. ids[n] .. "/approve", headers, "{}")
end
"""


def seed(env: dict[str, str], approvals: int, receiver_url: str) -> dict:
    """Two organizations with ``approvals`` pending approvals each (the owner decides their one
    step); one has 3 endpoints. Return their keys and approval ids."""
    os.environ.update(env)
    from sqlalchemy import insert, update

    from discountflow import create_app
    from discountflow.actors import Actor
    from discountflow.approvals import levels
    from discountflow.approvals.models import Approval, LineItem, Participant, Step
    from discountflow.approvals.schemas import LevelCreate
    from discountflow.database import new_id, utcnow
    from discountflow.extensions import db
    from discountflow.organizations import services as organizations
    from discountflow.organizations.models import Organization, User
    from discountflow.webhooks import services as webhooks
    from discountflow.webhooks.schemas import EndpointCreate

    app = create_app()
    sides = {}
    with app.app_context():
        db.create_all()
        app.config["BCRYPT_ROUNDS"] = 4
        for side, endpoints in (("with", ENDPOINTS), ("without", 0)):
            organization_id, key = organization_with_keys(f"Hooks {side}", f"o@{side}.example")
            owner = Actor.for_cli(db.session.get(Organization, organization_id))
            level = levels.create_level(
                owner, LevelCreate(name="Manager", rank=1, max_discount_percent=50)
            )
            db.session.execute(
                update(User).where(User.id == owner.user.id).values(approval_level_id=level.id)
            )
            db.session.commit()
            rep = organizations.add_member(
                owner, email=f"rep@{side}.example", password="bench-password"
            )
            for _ in range(endpoints):
                webhooks.create_endpoint(owner, EndpointCreate(url=receiver_url))
            now = utcnow()
            ids = [new_id("apr") for _ in range(approvals)]
            approvals_rows, lines, steps, participants = [], [], [], []
            for number, approval_id in enumerate(ids):
                created = now - timedelta(seconds=approvals - number)
                approvals_rows.append(
                    {
                        "id": approval_id,
                        "organization_id": organization_id,
                        "requested_by_id": rep.id,
                        "title": f"Deal {number}",
                        "customer": "Initech",
                        "deal_reference": "",
                        "currency": "USD",
                        "justification": "",
                        "metadata": {},
                        "status": "pending",
                        "list_amount": 100_000,
                        "amount": 80_000,
                        "max_line_discount_bps": 2000,
                        "round": 1,
                        "required_level_id": level.id,
                        "awaiting_level_id": level.id,
                        "submitted_at": created,
                        "created_at": created,
                        "updated_at": created,
                    }
                )
                lines.append(
                    {
                        "id": new_id("li"),
                        "approval_id": approval_id,
                        "position": 1,
                        "product_id": None,
                        "custom": True,
                        "sku": "",
                        "description": "Seats",
                        "quantity": 10,
                        "unit_list_price": 10_000,
                        "unit_price": 8_000,
                    }
                )
                steps.append(
                    {
                        "id": new_id("stp"),
                        "approval_id": approval_id,
                        "round": 1,
                        "position": 1,
                        "approval_level_id": level.id,
                        "level_name": "Manager",
                        "level_rank": 1,
                        "status": "pending",
                    }
                )
                participants.append({"approval_id": approval_id, "user_id": rep.id})
            db.session.execute(insert(Approval.__table__), approvals_rows)
            db.session.execute(insert(LineItem), lines)
            db.session.execute(insert(Step), steps)
            db.session.execute(insert(Participant), participants)
            db.session.commit()
            sides[side] = {"key": key, "ids": ids, "offset": 0}
    return sides


def approve_throughput(port: int, side: dict, seconds: float, on_cores) -> float:
    """Approvals per second for one side, each request approving the next pending approval."""
    out = harness.run_wrk(
        port,
        WRK_SCRIPT,
        {"BENCH_IDS_FILE": "\n".join(side["ids"]) + "\n"},
        {"BENCH_KEY": side["key"], "BENCH_OFFSET": str(side["offset"])},
        seconds,
        on_cores,
        8,
        "approve",
    )
    done = int(re.search(r"(\d+) requests in", out).group(1))
    side["offset"] += done + MARGIN
    if side["offset"] >= len(side["ids"]):
        raise SystemExit("the run used up its pending approvals: seed more (--approvals)")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


class _Quick(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def delivery_rate(env: dict[str, str], rounds: int, per_round: int) -> list[float]:
    """Deliveries per second of one worker process to a loopback receiver, ``rounds`` times
    (each round queues ``per_round`` deliveries: comments, one delivery per endpoint)."""
    from sqlalchemy import select

    from discountflow import create_app
    from discountflow.actors import Actor
    from discountflow.approvals.models import Approval
    from discountflow.approvals.services import add_comment
    from discountflow.extensions import db
    from discountflow.organizations.models import Organization

    app = create_app()
    comments = per_round // ENDPOINTS
    rates = []
    for _ in range(rounds):
        with app.app_context():
            organization = db.session.execute(
                select(Organization).where(Organization.slug == "hooks-with")
            ).scalar_one()
            owner = Actor.for_cli(organization)
            approval_id = db.session.execute(
                select(Approval.id).where(Approval.organization_id == organization.id).limit(1)
            ).scalar_one()
            for _ in range(comments):
                add_comment(owner, approval_id, "Noted.")
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "webhooks", "work", "--burst"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        rates.append(comments * ENDPOINTS / (time.monotonic() - started))
    return rates


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--approvals", type=int, default=0, help="per side (default: enough)")
    parser.add_argument("--deliveries", type=int, default=1500, help="per worker round")
    parser.add_argument("--rounds", type=int, default=3, help="worker rounds")
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_port}/hooks"
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-webhooks-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SECRET_KEY": "bench-" + "0" * 40,
        "API_RATE_LIMIT": RATE_LIMIT,
        "BCRYPT_ROUNDS": "4",
        "DISCOUNTFLOW_ENV": "staging",
        "ACCESS_LOG": "false",
    }
    approvals = args.approvals or int(args.pairs * args.seconds * 1500) + 2000
    print(f"Seeding {approvals:,} pending approvals per side… ({pinning})", flush=True)
    sides = seed(env, approvals, receiver_url)
    process, port = harness.serve("app:app", env, server_cores)
    try:
        for side in sides.values():  # the key's one bcrypt check, and warm code paths
            approve_throughput(port, side, 1, load_cores)
        ratio = harness.paired(
            lambda: approve_throughput(port, sides["with"], args.seconds, load_cores),
            lambda: approve_throughput(port, sides["without"], args.seconds, load_cores),
            args.pairs,
        )
    finally:
        harness.stop(process)
    figures = {NAME: harness.Figure(ratio, TARGET)}
    print(figures[NAME].line(NAME), flush=True)
    # The deliveries the approvals above queued would be sent too: drop them first.
    os.environ.update(env)
    from discountflow import create_app
    from discountflow.extensions import db
    from discountflow.webhooks.models import WebhookDelivery

    app = create_app()
    with app.app_context():
        db.session.query(WebhookDelivery).delete()
        db.session.commit()
    rates = delivery_rate(env, args.rounds, args.deliveries)
    print(
        f"worker deliveries per second (1 process, loopback receiver): "
        f"{statistics.median(rates):,.0f} (min {min(rates):,.0f}, max {max(rates):,.0f}, "
        f"{len(rates)} rounds of {args.deliveries // ENDPOINTS * ENDPOINTS})"
    )
    receiver.shutdown()
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()

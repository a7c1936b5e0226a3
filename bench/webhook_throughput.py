"""Webhook deliveries one worker sends a second to a fast loopback receiver.

Run from the repository root:
``python bench/webhook_throughput.py [--seconds 3] [--pairs 7] [--json PATH]``

One SQLite database made by DiscountFlow's own commands (``bench/seeding.py``): 4
organizations, each with 2 endpoints subscribed to ``product.*`` at one receiver — a plain
HTTP/1.1 server answering 204 at once, in a process of its own on the load cores. A round
imports products in each organization (through the service, so the outbox writes one
delivery per product and endpoint, all due at once), then times one worker, in this process
pinned to the server core and at the shipped settings (``WEBHOOK_CONCURRENCY`` 16, at most 2 in
flight per endpoint), sending them all (``Worker.run`` with ``burst``: from its start until
nothing is due and nothing in flight), and checks that every one succeeded. A round holds
about ``--seconds`` of work at the target; ``--pairs`` is the number of rounds.

The figure: deliveries a second, the median of the rounds with their min–max (target ≥ 100),
its sides the median and the target. Beside it, reported not judged: the same with one
endpoint only (2 in flight at most).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402

TARGET = 100.0  # deliveries a second
ORGANIZATIONS, ENDPOINTS = 4, 2  # endpoints per organization
NAME = "webhook deliveries a second, 1 worker, 8 endpoints in 4 organizations"
ONE_ENDPOINT = "webhook deliveries a second, 1 worker, 1 endpoint (2 in flight)"

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_port, flush=True)
server.serve_forever()
"""


def start_receiver(on_cores: set[int] | None) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, on_cores)) if on_cores else None,
    )
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/hooks"


class World:
    """The organizations and their endpoints, on an app configured by the environment."""

    def __init__(self, database: Path, url: str) -> None:
        commands = seeding.Commands(database)
        commands.init_db()
        slugs = [commands.organization(number, "hooks") for number in range(ORGANIZATIONS)]
        commands.close()
        env = seeding.server_env(
            database, DISCOUNTFLOW_ENV="staging", WEBHOOK_ALLOW_PRIVATE="true", BCRYPT_ROUNDS="4"
        )
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            from discountflow import create_app

            self.app = create_app()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.round = 0
        with self.app.app_context():
            from sqlalchemy import select

            from discountflow.actors import Actor, owner_of
            from discountflow.extensions import db
            from discountflow.organizations.models import Organization, User
            from discountflow.webhooks import services
            from discountflow.webhooks.schemas import EndpointCreate

            ids = db.session.execute(
                select(Organization.id).where(Organization.slug.in_(slugs))
            ).scalars()
            self.owners = [owner_of(each).id for each in ids]
            self.endpoints = []
            for owner in self.owners:
                actor = Actor.for_user(db.session.get(User, owner), "cli")
                for _ in range(ENDPOINTS):
                    endpoint, _secret = services.create_endpoint(
                        actor, EndpointCreate(url=url, events=["product.*"])
                    )
                    self.endpoints.append(endpoint.id)

    def queue(self, count: int, organizations: int, endpoints: int = ENDPOINTS) -> int:
        """Import products in the first ``organizations`` (each with ``endpoints`` enabled) so
        that about ``count`` deliveries are due; return how many there are."""
        from sqlalchemy import func, select

        from discountflow.actors import Actor
        from discountflow.extensions import db
        from discountflow.organizations.models import User
        from discountflow.products.csv_files import COLUMNS, import_products
        from discountflow.webhooks.models import WebhookDelivery

        self.round += 1
        each = math.ceil(count / (organizations * endpoints))
        with self.app.app_context():
            for owner in self.owners[:organizations]:
                actor = Actor.for_user(db.session.get(User, owner), "cli")
                rows = [
                    f"R{self.round}-{n:05d},Product {n},,USD,{n + 1}.00,true" for n in range(each)
                ]
                import_products(actor, io.StringIO(",".join(COLUMNS) + "\n" + "\n".join(rows)))
            return db.session.execute(
                select(func.count()).where(WebhookDelivery.status == "pending")
            ).scalar_one()

    def send_all(self) -> tuple[int, float]:
        """One worker sends every due delivery; return how many it sent and in how long."""
        from sqlalchemy import func, select

        from discountflow.extensions import db
        from discountflow.webhooks.models import WebhookDelivery
        from discountflow.webhooks.worker import Worker

        with self.app.app_context():
            worker = Worker()
            started = time.perf_counter()
            sent = worker.run(threading.Event(), poll=0.05, burst=True)
            seconds = time.perf_counter() - started
            failed = db.session.execute(
                select(func.count()).where(WebhookDelivery.status != "succeeded")
            ).scalar_one()
        if failed:
            raise SystemExit(f"{failed} deliveries did not succeed: see the receiver")
        return sent, seconds

    def disable_all_but_one(self) -> None:
        from sqlalchemy import update

        from discountflow.extensions import db
        from discountflow.webhooks.models import WebhookEndpoint

        with self.app.app_context():
            db.session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id != self.endpoints[0])
                .values(enabled=False)
            )
            db.session.commit()


def rounds(world: World, count: int, organizations: int, endpoints: int, pairs: int) -> list[float]:
    per_second = []
    for number in range(pairs):
        queued = world.queue(count, organizations, endpoints)
        sent, seconds = world.send_all()
        if sent != queued:
            raise SystemExit(f"round {number + 1}: {queued} queued, {sent} sent")
        per_second.append(sent / seconds)
        print(f"  round {number + 1}: {sent} deliveries in {seconds:.2f} s", flush=True)
    return per_second


def figure(per_second: list[float], target: harness.Target | None, note: str) -> harness.Figure:
    median = statistics.median(per_second)
    ratio = harness.Ratio(median, min(per_second), max(per_second), median, TARGET, len(per_second))
    return harness.Figure(ratio, target, unit="deliveries/s", note=note)


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    count = max(200, round(TARGET * args.seconds * 1.5))
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-hooks-"))
    receiver, url = start_receiver(load_cores)
    try:
        if server_cores:
            os.sched_setaffinity(0, server_cores)  # this process: the worker and its threads
        print(f"Making {ORGANIZATIONS} organizations… ({pinning})", flush=True)
        world = World(workdir / "discountflow.sqlite", url)
        world.queue(100, ORGANIZATIONS)  # warm: imports, claims, connections
        world.send_all()
        print(f"{args.pairs} rounds of ~{count} deliveries, 8 endpoints:", flush=True)
        spread = rounds(world, count, ORGANIZATIONS, ENDPOINTS, args.pairs)
        world.disable_all_but_one()
        print(f"{args.pairs} rounds of ~{count // 2} deliveries, 1 endpoint:", flush=True)
        single = rounds(world, count // 2, 1, 1, args.pairs)
    finally:
        receiver.kill()
        receiver.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    note = (
        f"median and min–max of {args.pairs} rounds of ~{count}; sides: the median vs the "
        f"target; SQLite, WEBHOOK_CONCURRENCY 16"
    )
    figures = {
        NAME: figure(spread, harness.Target(TARGET), note),
        ONE_ENDPOINT: figure(single, None, "at most 2 in flight to one endpoint"),
    }
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()

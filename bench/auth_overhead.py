"""What authentication and rate limits cost ``GET /v2/me``, against a bare Flask baseline.

Run from the repository root:
``python bench/auth_overhead.py [--seconds 3] [--pairs 7] [--keys N] [--only-metrics]``

The one-box defaults with the production limits: SQLite, the ``memory://`` limiter,
``DISCOUNTFLOW_ENV=production`` (the documented 1,000 requests per minute per key), one gunicorn
process (the shipped configuration; the access log on, to a discarded stdout). Every figure
is measured the way ``bench/harness.py`` says: both sides in alternating pairs (A B, B A …),
each pair's ratio, the median of the ratios with their min–max; the servers pinned to one core
and ``wrk`` (``apt-get install wrk``) to the others, the output saying which. It prints:

* authenticated, rate-limited ``GET /v2/me`` against the bare Flask route of
  ``bench/bare_app.py`` (target ≥ 0.85);
* the same while 100 requests per second arrive with invalid keys — well-formed keys with a real
  lookup id and a wrong secret, the kind only bcrypt (at the production cost, 12) can refuse —
  against the same server undisturbed (target ≥ 0.90). Each client address may fail 20 checks a
  minute (``AUTH_FAILURE_LIMIT``), then gets 429 without a check: the pair in which a minute's
  checks land is the figure's min;
* the in-process CPU per request of ``GET /v2/me`` (``time.process_time`` over 2,000 requests
  through the WSGI app, no network; 40 keys) over the bare route, each side in a fresh process,
  alternating (target ≤ 1.5);
* the cost of the Prometheus metrics (``METRICS_TOKEN`` set: every request counted and timed in
  gunicorn's multiprocess mode): ``GET /v2/me`` with metrics over without, in throughput
  (target ≥ 0.95: at most 5 % slower) and in CPU per request (target ≤ 1.05). With
  ``--only-metrics``, only these.

The load spreads over enough keys (organizations with a full-access and a read-only key each,
at least 200) that no key passes its 1,000 per minute however fast the server is — as with many
integrations each inside its budget — so the limits do all their work but never refuse.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

ME = harness.Request("GET", "/v2/me")
# The fastest a server could plausibly answer GET /v2/me on one core: the number of keys is
# chosen so that even at this rate no key passes 500 requests in a minute.
CEILING = 4000
PER_KEY = 800  # requests per minute per key at most: under the documented 1,000 (production)
FLOOD = 100  # invalid-key requests per second
CPU_KEYS = 40

FIGURES = {
    "me": ("GET /v2/me, 1 process, vs bare Flask route", harness.Target(0.85)),
    "flood": ("GET /v2/me under 100 invalid-key req/s vs undisturbed", harness.Target(0.90)),
    "cpu": (
        "CPU per request GET /v2/me over bare route",
        harness.Target(1.5, at_least=False),
    ),
    "metrics": ("GET /v2/me with metrics vs without", harness.Target(0.95)),
    "metrics_cpu": (
        "CPU per request with metrics vs without",
        harness.Target(1.05, at_least=False),
    ),
}


class Flood:
    """Requests with distinct bad keys (a real lookup id, a wrong secret), ``per_second`` of
    them sent on schedule whatever their answers take (open loop, up to ``IN_FLIGHT`` at once),
    from threads pinned beside the load generator."""

    IN_FLIGHT = 64

    def __init__(self, port: int, key: str, per_second: int, on_cores: set[int] | None) -> None:
        self.port, self.per_second, self.on_cores = port, per_second, on_cores
        self.prefix = key[: -6 - 22]
        self.statuses: Counter = Counter()
        self.sent, self.seconds = 0, 0.0
        self._local = threading.local()
        self._lock = threading.Lock()

    def _pin(self) -> None:
        if self.on_cores:
            os.sched_setaffinity(0, self.on_cores)  # the calling thread only

    def _send(self, number: int) -> None:
        from discountflow.auth.keys import checksum

        secret = f"{number:022d}"
        bad = self.prefix + secret + checksum(self.prefix + secret)
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self._local.connection = connection
        try:
            connection.request("GET", "/v2/me", headers={"Authorization": f"Bearer {bad}"})
            response = connection.getresponse()
            response.read()
            status: int | str = response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            status = type(error).__name__
        with self._lock:
            self.statuses[status] += 1

    def during(self, measure: Callable[[], float]) -> float:
        """Flood while ``measure`` runs; return what it returns."""
        from concurrent.futures import ThreadPoolExecutor

        stop = threading.Event()
        pool = ThreadPoolExecutor(self.IN_FLIGHT, initializer=self._pin)

        def schedule() -> None:
            self._pin()
            next_at = time.monotonic()
            while not stop.is_set():
                pool.submit(self._send, self.sent)
                self.sent += 1
                next_at += 1 / self.per_second
                time.sleep(max(0.0, next_at - time.monotonic()))

        scheduler = threading.Thread(target=schedule, daemon=True)
        started = time.monotonic()
        scheduler.start()
        try:
            return measure()
        finally:
            stop.set()
            scheduler.join()
            self.seconds += time.monotonic() - started
            pool.shutdown(wait=True)  # the answers still owed are part of the flood


def organization_with_keys(name: str, email: str, *, read_only: bool = False) -> tuple[str, ...]:
    """Create an organization (inside an app context); return its id and its new keys."""
    from discountflow.actors import Actor
    from discountflow.auth.services import generate_key
    from discountflow.organizations.services import create_organization

    organization = create_organization(name, owner_email=email, owner_password="bench-password")
    owner = Actor.for_cli(organization)
    keys = [generate_key(owner)[1]]
    if read_only:
        keys.append(generate_key(owner, read_only=True)[1])
    return organization.id, *keys


def prepare_keys(env: dict[str, str], count: int) -> tuple[list[str], str]:
    """Create organizations with ``count`` keys for the load, and one key to flood with bad ones.

    The load's keys are hashed at bcrypt cost 4 so that each server's one check per key stays
    short (it is not what is measured); the flood's target is hashed at the production cost, 12.
    """
    os.environ.update(env)
    from discountflow import create_app
    from discountflow.extensions import db

    app = create_app()
    with app.app_context():
        db.create_all()
        app.config["BCRYPT_ROUNDS"] = 4
        keys = []
        for number in range((count + 1) // 2):
            keys += organization_with_keys(
                f"Bench {number}", f"owner{number}@bench.example", read_only=True
            )[1:]
        app.config["BCRYPT_ROUNDS"] = 12
        _, target = organization_with_keys("Flood target", "owner@flood.example")
        db.session.remove()
        db.engine.dispose()
    return keys[:count], target


def keys_needed(seconds: float, pairs: int) -> int:
    """Enough keys that none passes ``PER_KEY`` requests in any minute at ``CEILING`` req/s,
    the flood figure loading one server for both sides of every pair."""
    loaded = min(60.0, 2 * pairs * (max(1, round(seconds)) + 1) + 10)
    return max(200, math.ceil(CEILING * loaded / PER_KEY))


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--keys", type=int, help="API keys for the load (default: enough)")
    parser.add_argument(
        "--only-metrics", action="store_true", help="measure only the metrics' cost"
    )
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()

    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-auth-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SECRET_KEY": "bench-" + "0" * 64,
        "RATELIMIT_STORAGE_URI": "memory://",
        "BCRYPT_ROUNDS": "12",
        "DISCOUNTFLOW_ENV": "production",
    }
    for variable in (
        "WEB_CONCURRENCY",
        "API_RATE_LIMIT",
        "AUTH_FAILURE_LIMIT",
        "PAGE_CACHE_MB",
        "ACCESS_LOG",
        "METRICS_TOKEN",
        "METRICS_ALLOW_LOOPBACK",
    ):
        env.pop(variable, None)
    count = args.keys or keys_needed(args.seconds, args.pairs)
    print(f"Making {count} API keys… ({pinning})", flush=True)
    keys, target = prepare_keys(env, count)
    figures: dict[str, harness.Figure] = {}
    try:
        if not args.only_metrics:
            figures.update(overhead(env, keys, target, args, server_cores, load_cores))
        figures.update(metrics_cost(env, keys, args, server_cores, load_cores))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    harness.save(args.json, figures, pinning)
    return figures


def overhead(
    env: dict[str, str],
    keys: list[str],
    target: str,
    args: argparse.Namespace,
    server_cores: set[int] | None,
    load_cores: set[int] | None,
) -> dict[str, harness.Figure]:
    """The app against the bare route; the app under a flood against it undisturbed; CPU."""
    figures = {}

    def report(name: str, figure: harness.Figure) -> None:
        figures[name] = figure
        print(figure.line(name), flush=True)

    bare, bare_port = harness.serve("bench.bare_app:app", env, server_cores)
    app, app_port = harness.serve("app:app", env, server_cores)
    try:
        for port in (bare_port, app_port):
            harness.warm(port, keys, ME)  # each key's one bcrypt check in the app
            harness.throughput(port, keys, ME, 1, load_cores)  # warm code paths, discarded
        name, goal = FIGURES["me"]
        report(
            name,
            harness.Figure(
                harness.paired(
                    lambda: harness.throughput(app_port, keys, ME, args.seconds, load_cores),
                    lambda: harness.throughput(bare_port, keys, ME, args.seconds, load_cores),
                    args.pairs,
                ),
                goal,
            ),
        )
        harness.stop(bare)
        bare = None

        flood = Flood(app_port, target, FLOOD, load_cores)
        name, goal = FIGURES["flood"]
        ratio = harness.paired(
            lambda: flood.during(
                lambda: harness.throughput(app_port, keys, ME, args.seconds, load_cores)
            ),
            lambda: harness.throughput(app_port, keys, ME, args.seconds, load_cores),
            args.pairs,
        )
        answered = dict(sorted(flood.statuses.items(), key=str))
        note = (
            f"{flood.sent / flood.seconds:.0f} invalid-key req/s sent; answers by status "
            f"{answered} (each 401 a bcrypt check at cost 12)"
        )
        report(name, harness.Figure(ratio, goal, note=note))
    finally:
        if bare is not None:
            harness.stop(bare)
        harness.stop(app)

    name, goal = FIGURES["cpu"]
    cpu_env = {**env, "BCRYPT_ROUNDS": "4"}
    ratio = harness.cpu_paired(
        harness.CpuSide(cpu_env, ME),
        harness.CpuSide(cpu_env, ME, bare=True),
        keys[:CPU_KEYS],
        args.pairs,
        server_cores,
    )
    report(name, harness.Figure(ratio, goal, unit="µs"))
    return figures


def metrics_cost(
    env: dict[str, str],
    keys: list[str],
    args: argparse.Namespace,
    server_cores: set[int] | None,
    load_cores: set[int] | None,
) -> dict[str, harness.Figure]:
    """``GET /v2/me`` with the metrics on against the same app with them off, paired."""
    figures = {}
    metered_env = {**env, "METRICS_TOKEN": "bench-metrics-token-0123456789"}
    plain, plain_port = harness.serve("app:app", env, server_cores)
    metered, metered_port = harness.serve("app:app", metered_env, server_cores)
    try:
        for port in (plain_port, metered_port):
            harness.warm(port, keys, ME)
            harness.throughput(port, keys, ME, 1, load_cores)
        ratio = harness.paired(
            lambda: harness.throughput(metered_port, keys, ME, args.seconds, load_cores),
            lambda: harness.throughput(plain_port, keys, ME, args.seconds, load_cores),
            args.pairs,
        )
    finally:
        harness.stop(plain)
        harness.stop(metered)
    name, goal = FIGURES["metrics"]
    figures[name] = harness.Figure(ratio, goal)
    print(figures[name].line(name), flush=True)

    metrics_dir = tempfile.mkdtemp(prefix="discountflow-bench-metrics-")
    try:
        # Metrics are chosen when a process starts: each side is its own process.
        ratio = harness.cpu_paired(
            harness.CpuSide(
                {**metered_env, "BCRYPT_ROUNDS": "4", "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
                ME,
            ),
            harness.CpuSide({**env, "BCRYPT_ROUNDS": "4"}, ME),
            keys[:CPU_KEYS],
            args.pairs,
            server_cores,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    name, goal = FIGURES["metrics_cpu"]
    figures[name] = harness.Figure(ratio, goal, unit="µs")
    print(figures[name].line(name), flush=True)
    return figures


if __name__ == "__main__":
    main()

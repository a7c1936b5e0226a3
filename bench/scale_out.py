"""Authenticated ``GET /v2/me`` on PostgreSQL and Redis at 2 worker processes, against the bare
Flask baseline at 2 workers, and what a request spends in Redis and in the database.

Run from the repository root, with PostgreSQL and Redis running:
``python bench/scale_out.py [--seconds 3] [--pairs 7] [--keys 200]``
(``BENCH_POSTGRES_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, names the
server; a scratch database is created and dropped. ``BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/14``, is flushed.) Where either does not answer, the figures are
skipped, saying so.

Both apps run under the shipped ``gunicorn.conf.py`` with ``WEB_CONCURRENCY=2`` (a shared storage
lets gunicorn run several workers), both pinned to the same core, the load generator to the
others (``bench/harness.py``; PostgreSQL and Redis are not ours to pin). The two are measured in
alternating pairs, and the figure is the median of the per-pair ratios (target ≥ 0.60). The
per-key limit still counts every request in Redis; ``API_RATE_LIMIT`` is raised so that the
load is never refused.

Beside it: the CPU per request in the app's own process (``time.process_time`` over 2,000
requests through the WSGI app, against the bare route, alternating fresh processes; what
PostgreSQL and Redis spend in their own processes is not in it), and a breakdown of a request's
wall time from the Flask test client in this process: the time of each SQL statement
(SQLAlchemy's cursor events) and of each Redis command (the per-key limit, the key revision).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.auth_overhead import prepare_keys  # noqa: E402

ME = harness.Request("GET", "/v2/me")
NAME = "GET /v2/me, 2 workers, PostgreSQL + Redis, vs bare at 2 workers"
CPU_NAME = "CPU per request GET /v2/me (PostgreSQL + Redis) over bare route"
TARGET = harness.Target(0.60)
CPU_KEYS = 40


def breakdown(keys: list[str], requests: int = 2000) -> dict[str, float]:
    """Milliseconds per request in total, in SQL statements and in Redis commands (every one:
    the per-key limit, the key revision), timed from the Flask test client in this process."""
    import redis
    from sqlalchemy import event

    from discountflow import create_app
    from discountflow.extensions import db

    app = create_app()
    app.config["ACCESS_LOG"] = False
    spent = {"database": 0.0, "redis": 0.0}
    with app.app_context():
        engine = db.engine

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        spent["database"] += time.perf_counter() - conn.info.pop("bench_started")

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    original = redis.Redis.execute_command  # scripts, pipelines aside, come through here

    def timed(self, *args, **options):
        started = time.perf_counter()
        try:
            return original(self, *args, **options)
        finally:
            spent["redis"] += time.perf_counter() - started

    redis.Redis.execute_command = timed
    try:
        client = app.test_client()
        headers = [{"Authorization": f"Bearer {key}"} for key in keys]
        for header in headers:  # each key's one bcrypt check, before measuring
            client.get("/v2/me", headers=header)
        spent.update(database=0.0, redis=0.0)
        started = time.perf_counter()
        for n in range(requests):
            assert client.get("/v2/me", headers=headers[n % len(headers)]).status_code == 200
        total = time.perf_counter() - started
    finally:
        redis.Redis.execute_command = original
        with app.app_context():
            db.engine.dispose()
    return {name: seconds / requests * 1000 for name, seconds in {**spent, "total": total}.items()}


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--keys", type=int, default=200, help="API keys the load takes in turn")
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    reason = harness.unreachable()
    if reason:
        figures = {
            NAME: harness.skipped(reason, TARGET),
            CPU_NAME: harness.skipped(reason, unit="µs"),
        }
        for name, figure in figures.items():
            print(figure.line(name))
        harness.save(args.json, figures, pinning)
        return figures

    figures: dict[str, harness.Figure] = {}
    with harness.ScratchPostgres() as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "RATELIMIT_STORAGE_URI": harness.REDIS,
            "WEB_CONCURRENCY": "2",
            "SECRET_KEY": "bench",
            "BCRYPT_ROUNDS": "12",
            "DISCOUNTFLOW_ENV": "staging",
            "API_RATE_LIMIT": "1000000 per minute",
        }
        env.pop("METRICS_TOKEN", None)
        print(f"Making {args.keys} API keys on PostgreSQL… ({pinning})", flush=True)
        keys, _ = prepare_keys(env, args.keys)
        bare, bare_port = harness.serve("bench.bare_app:app", env, server_cores)
        app, app_port = harness.serve("app:app", env, server_cores)
        try:
            for port in (bare_port, app_port):
                harness.warm(port, keys, ME)
                # 16 connections over both workers: each worker's one bcrypt check per key.
                harness.throughput(port, keys, ME, 2, load_cores)
            ratio = harness.paired(
                lambda: harness.throughput(app_port, keys, ME, args.seconds, load_cores),
                lambda: harness.throughput(bare_port, keys, ME, args.seconds, load_cores),
                args.pairs,
            )
        finally:
            harness.stop(bare)
            harness.stop(app)
        figures[NAME] = harness.Figure(ratio, TARGET)
        print(figures[NAME].line(NAME), flush=True)

        cpu_env = {**env, "BCRYPT_ROUNDS": "4"}
        ratio = harness.cpu_paired(
            harness.CpuSide(cpu_env, ME),
            harness.CpuSide(cpu_env, ME, bare=True),
            keys[:CPU_KEYS],
            args.pairs,
            server_cores,
        )
        figures[CPU_NAME] = harness.Figure(
            ratio, unit="µs", note="the app's process only: not PostgreSQL's or Redis's"
        )
        print(figures[CPU_NAME].line(CPU_NAME), flush=True)
        costs = breakdown(keys)
    print(
        f"wall time per request, in-process (test client, unpinned): {costs['total']:.3f} ms "
        f"in all, {costs['database']:.3f} ms in PostgreSQL, {costs['redis']:.3f} ms in Redis"
    )
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()
